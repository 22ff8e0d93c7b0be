//! One-vs-rest linear probes trained by minibatch Adam, as SAEBench's absorption eval trains its first-letter
//! probes (`evals/absorption/probing.py: train_multi_probe`):
//!
//! ```text
//! logits = W x + b                                   W: classes × d, init U(±1/√d) like torch's nn.Linear
//! loss   = mean over batch × classes of  −pₖ yₖ log σ(zₖ) − (1 − yₖ) log(1 − σ(zₖ))
//!          + l1 · mean over classes of Σⱼ |Wₖⱼ|       (the k-sparse probe's L1 term; 0 for the letter probe)
//! pₖ     = negatives / positives of class k on the training set (BCEWithLogitsLoss's pos_weight)
//! ```
//! Adam (β = 0.9, 0.999, ε = 1e-8) with `weight_decay` added to every gradient (torch's Adam, on W and b),
//! the rows reshuffled every epoch into batches of `batch` (the last one short), the learning rate decayed
//! once per epoch by γ = (end_lr / lr)^(1/epochs). The objective is SAEBench's; the draws (init, shuffles)
//! are ChaCha8's from `seed`, so a probe equals SAEBench's only in distribution — the absorption check
//! measures how far two SAEBench seeds already differ.

use crate::probing::Features;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a probe is trained (SAEBench's values are in `absorption`).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub batch: usize,
    pub epochs: usize,
    pub lr: f64,
    pub end_lr: f64,
    pub weight_decay: f64,
    pub l1: f64,
    pub seed: u64,
}

/// `classes` linear probes over `d` features; `w` is `d × classes` (feature-major, so one feature's weights
/// for every class are adjacent).
#[derive(Clone, Debug)]
pub struct MultiProbe {
    pub d: usize,
    pub classes: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl MultiProbe {
    /// Every class's logit for one row.
    pub fn logits(&self, row: &[(u32, f32)]) -> Vec<f32> {
        let mut z = self.b.clone();
        for &(j, v) in row {
            let wj = &self.w[j as usize * self.classes..(j as usize + 1) * self.classes];
            for (zk, &wk) in z.iter_mut().zip(wj) {
                *zk += wk * v;
            }
        }
        z
    }

    /// Class `k`'s weight vector (`d` entries).
    pub fn class_weights(&self, k: usize) -> Vec<f32> {
        (0..self.d).map(|j| self.w[j * self.classes + k]).collect()
    }
}

/// Adam's moments for one parameter tensor.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One torch-style Adam step at step `t` (1-based) with learning rate `lr`.
    fn step(&mut self, p: &mut [f32], g: &[f64], t: i32, lr: f64, weight_decay: f64) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for i in 0..p.len() {
            let gi = g[i] + weight_decay * p[i] as f64;
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * gi;
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * gi * gi;
            let denom = (self.v[i] / c2).sqrt() + eps;
            p[i] -= (lr / c1 * self.m[i] / denom) as f32;
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Trains one probe per class on `x`'s rows with labels `y` (each row's class).
pub fn train(x: &dyn Features, y: &[usize], classes: usize, cfg: &TrainConfig) -> MultiProbe {
    let d = x.width();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let bound = 1.0 / (d as f32).sqrt();
    let mut probe = MultiProbe {
        d,
        classes,
        w: (0..d * classes)
            .map(|_| rng.random_range(-bound..bound))
            .collect(),
        b: (0..classes)
            .map(|_| rng.random_range(-bound..bound))
            .collect(),
    };
    let mut positives = vec![0usize; classes];
    for &c in y {
        positives[c] += 1;
    }
    // A class with no positive row keeps weight 1 (SAEBench would divide by zero).
    let pos_weight: Vec<f64> = positives
        .iter()
        .map(|&p| match p {
            0 => 1.0,
            p => (y.len() - p) as f64 / p as f64,
        })
        .collect();
    let (mut adam_w, mut adam_b) = (Adam::new(d * classes), Adam::new(classes));
    let gamma = (cfg.end_lr / cfg.lr).ln() / cfg.epochs as f64;
    let mut order: Vec<usize> = (0..y.len()).collect();
    let mut t = 0;
    for epoch in 0..cfg.epochs {
        let lr = cfg.lr * (gamma * epoch as f64).exp();
        order.shuffle(&mut rng);
        for batch in order.chunks(cfg.batch.max(1)) {
            t += 1;
            let (gw, gb) = gradients(&probe, x, y, batch, &pos_weight, cfg.l1);
            adam_w.step(&mut probe.w, &gw, t, lr, cfg.weight_decay);
            adam_b.step(&mut probe.b, &gb, t, lr, cfg.weight_decay);
        }
    }
    probe
}

/// The loss's gradient on one batch (without weight decay, which Adam adds).
fn gradients(
    probe: &MultiProbe,
    x: &dyn Features,
    y: &[usize],
    batch: &[usize],
    pos_weight: &[f64],
    l1: f64,
) -> (Vec<f64>, Vec<f64>) {
    let k = probe.classes;
    let scale = 1.0 / (batch.len() * k) as f64;
    let (mut gw, mut gb) = (vec![0f64; probe.w.len()], vec![0f64; k]);
    let mut dz = vec![0f64; k];
    for &i in batch {
        let row = x.row(i);
        let z = probe.logits(&row);
        for c in 0..k {
            let s = sigmoid(z[c] as f64);
            // d/dz of −p·y·log σ(z) − (1 − y)·log(1 − σ(z))
            dz[c] = scale
                * if y[i] == c {
                    -pos_weight[c] * (1.0 - s)
                } else {
                    s
                };
            gb[c] += dz[c];
        }
        for &(j, v) in &row {
            let g = &mut gw[j as usize * k..(j as usize + 1) * k];
            for (gc, &dc) in g.iter_mut().zip(&dz) {
                *gc += dc * v as f64;
            }
        }
    }
    if l1 > 0.0 {
        // l1 · mean over classes of Σ|W|: its subgradient is l1 · sign(W) / classes (sign(0) = 0, as torch).
        for (g, &w) in gw.iter_mut().zip(&probe.w) {
            if w != 0.0 {
                *g += l1 * (w as f64).signum() / k as f64;
            }
        }
    }
    (gw, gb)
}

/// scikit-learn's binary F1 of `predicted` against `truth` (0 when there is no positive either way).
pub fn f1(predicted: &[bool], truth: &[bool]) -> f64 {
    let mut tp = 0usize;
    let mut wrong = 0usize;
    for (&p, &t) in predicted.iter().zip(truth) {
        match (p, t) {
            (true, true) => tp += 1,
            (true, false) | (false, true) => wrong += 1,
            _ => {}
        }
    }
    match 2 * tp + wrong {
        0 => 0.0,
        n => 2.0 * tp as f64 / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finite differences of the loss against [`gradients`].
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn gradients_match_finite_differences() {
        let rows: Vec<Vec<f32>> = (0..12)
            .map(|i| {
                (0..5)
                    .map(|j| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0)
                    .collect()
            })
            .collect();
        let y: Vec<usize> = (0..12).map(|i| i % 3).collect();
        let x = (rows.as_slice(), 5usize);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let probe = MultiProbe {
            d: 5,
            classes: 3,
            w: (0..15).map(|_| rng.random_range(-1.0..1.0)).collect(),
            b: (0..3).map(|_| rng.random_range(-1.0..1.0)).collect(),
        };
        let pos_weight = [2.0, 2.0, 2.0];
        let batch: Vec<usize> = (0..12).collect();
        let loss = |p: &MultiProbe| {
            let mut l = 0.0;
            for i in 0..12 {
                let z = p.logits(&x.row(i));
                for c in 0..3 {
                    let s = sigmoid(z[c] as f64);
                    l -= if y[i] == c {
                        pos_weight[c] * s.ln()
                    } else {
                        (1.0 - s).ln()
                    };
                }
            }
            l / 36.0 + 0.01 * p.w.iter().map(|w| w.abs() as f64).sum::<f64>() / 3.0
        };
        let (gw, gb) = gradients(&probe, &x, &y, &batch, &pos_weight, 0.01);
        let h = 1e-3f32;
        for i in 0..15 {
            let (mut up, mut down) = (probe.clone(), probe.clone());
            up.w[i] += h;
            down.w[i] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!((fd - gw[i]).abs() < 1e-3, "w[{i}]: {fd} vs {}", gw[i]);
        }
        for c in 0..3 {
            let (mut up, mut down) = (probe.clone(), probe.clone());
            up.b[c] += h;
            down.b[c] -= h;
            let fd = (loss(&up) - loss(&down)) / (2.0 * h as f64);
            assert!((fd - gb[c]).abs() < 1e-3, "b[{c}]: {fd} vs {}", gb[c]);
        }
    }

    /// Separable classes are learnt: every training row predicted as its class.
    #[test]
    fn learns_separable_classes() {
        let rows: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                let mut r = vec![0.1f32; 4];
                r[i % 3] = 2.0 + (i as f32 * 0.37).sin();
                r
            })
            .collect();
        let y: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let cfg = TrainConfig {
            batch: 8,
            epochs: 50,
            lr: 1e-1,
            end_lr: 1e-3,
            weight_decay: 1e-4,
            l1: 0.0,
            seed: 3,
        };
        let x = (rows.as_slice(), 4usize);
        let probe = train(&x, &y, 3, &cfg);
        for c in 0..3 {
            let pred: Vec<bool> = (0..60).map(|i| probe.logits(&x.row(i))[c] > 0.0).collect();
            let truth: Vec<bool> = y.iter().map(|&t| t == c).collect();
            assert_eq!(f1(&pred, &truth), 1.0, "class {c}");
        }
    }

    #[test]
    fn f1_as_scikit_learn() {
        // tp 2, fp 1, fn 1 → 2·2 / (4 + 2)
        let p = [true, true, true, false, false];
        let t = [true, true, false, true, false];
        assert!((f1(&p, &t) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(f1(&[false; 3], &[false; 3]), 0.0);
    }
}
