//! L2-regularised binary logistic regression, the probe of SAEBench's sparse probing and absorption, fitted as
//! scikit-learn's `LogisticRegression` defines it:
//!
//! ```text
//! minimise  ½‖w‖² + C · Σᵢ sᵢ · log(1 + exp(−yᵢ (w·xᵢ + b)))      yᵢ ∈ {−1, +1}, the intercept b unpenalised
//! sᵢ = 1, or n / (2 · n_{class of i}) for class_weight = "balanced"
//! ```
//! The objective is strictly convex in w, so its minimiser is unique and every exact solver (sklearn's lbfgs,
//! newton-cholesky) reaches the same coefficients to its tolerance. Here: Newton's method in f64 on the
//! (d + 1)-dimensional problem, the Hessian solved by `trainer::regression`'s Cholesky (the ridge baseline's),
//! each step halved until the objective falls; stopped when the largest gradient entry is below 1e-9 of its
//! starting value (or after 100 steps).

use trainer::regression::{cholesky, cholesky_solve};

/// A fitted probe: `w·x + b > 0` predicts the positive class.
#[derive(Clone, Debug)]
pub struct Probe {
    pub w: Vec<f64>,
    pub b: f64,
}

impl Probe {
    pub fn score(&self, row: &[f32]) -> f64 {
        row.iter()
            .zip(&self.w)
            .map(|(&x, w)| x as f64 * w)
            .sum::<f64>()
            + self.b
    }

    /// Fraction of `rows` rows of `x` (`rows × d`) whose prediction is `y`.
    pub fn accuracy(&self, x: &[f32], y: &[bool]) -> f64 {
        let d = self.w.len();
        let right = x
            .chunks(d)
            .zip(y)
            .filter(|(r, &t)| (self.score(r) > 0.0) == t)
            .count();
        right as f64 / y.len().max(1) as f64
    }
}

fn log1p_exp(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Each row's weight sᵢ.
pub fn sample_weights(y: &[bool], balanced: bool) -> Vec<f64> {
    let pos = y.iter().filter(|&&t| t).count() as f64;
    let n = y.len() as f64;
    y.iter()
        .map(|&t| match balanced {
            false => 1.0,
            true => n / (2.0 * if t { pos } else { n - pos }),
        })
        .collect()
}

/// Fits the probe on `x` (`y.len() × d`, row-major) and labels `y`, with inverse regularisation `c`.
pub fn fit(x: &[f32], d: usize, y: &[bool], c: f64, balanced: bool) -> Probe {
    fit_weighted(x, d, y, &sample_weights(y, balanced), c)
}

/// [`fit`] with each row's weight sᵢ given: rows that are equal may be given once, with their weights summed
/// (the objective is the same).
pub fn fit_weighted(x: &[f32], d: usize, y: &[bool], s: &[f64], c: f64) -> Probe {
    assert_eq!(x.len(), y.len() * d);
    assert_eq!(s.len(), y.len());
    let objective = |p: &Probe| {
        let loss: f64 = x
            .chunks(d)
            .zip(y)
            .zip(s)
            .map(|((r, &t), si)| si * log1p_exp(if t { -p.score(r) } else { p.score(r) }))
            .sum();
        0.5 * p.w.iter().map(|w| w * w).sum::<f64>() + c * loss
    };
    let mut p = Probe {
        w: vec![0.0; d],
        b: 0.0,
    };
    let mut first = None;
    for _ in 0..100 {
        let (g, mut h) = gradient_and_hessian(&p, x, d, y, s, c);
        let gmax = g.iter().fold(0f64, |m, v| m.max(v.abs()));
        let start = *first.get_or_insert(gmax);
        if gmax <= 1e-9 * start.max(1e-300) {
            break;
        }
        // The Hessian is the identity on w plus a positive semi-definite sum: positive definite, unless the
        // intercept's curvature underflows, where no Newton step is left to take.
        let Some(l) = cholesky(&mut h, d + 1) else {
            break;
        };
        let step = cholesky_solve(l, d + 1, &g, 1);
        let (before, mut t) = (objective(&p), 1.0);
        loop {
            let next = Probe {
                w: p.w.iter().zip(&step).map(|(w, s)| w - t * s).collect(),
                b: p.b - t * step[d],
            };
            if objective(&next) <= before || t < 1e-12 {
                p = next;
                break;
            }
            t *= 0.5;
        }
    }
    p
}

/// The objective's gradient (w then b) and the lower triangle of its Hessian, `(d + 1)²` row-major (what
/// `cholesky` reads).
fn gradient_and_hessian(
    p: &Probe,
    x: &[f32],
    d: usize,
    y: &[bool],
    s: &[f64],
    c: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = d + 1;
    let mut g: Vec<f64> = p.w.iter().copied().chain([0.0]).collect();
    let mut h = vec![0f64; n * n];
    for i in 0..d {
        h[i * n + i] = 1.0;
    }
    let mut xt = vec![0f64; n];
    for ((r, &t), si) in x.chunks(d).zip(y).zip(s) {
        let q = sigmoid(p.score(r));
        let (resid, curv) = (
            c * si * (q - if t { 1.0 } else { 0.0 }),
            c * si * q * (1.0 - q),
        );
        for (v, &x) in xt.iter_mut().zip(r) {
            *v = x as f64;
        }
        xt[d] = 1.0;
        for a in 0..n {
            g[a] += resid * xt[a];
            let ca = curv * xt[a];
            for b in 0..=a {
                h[a * n + b] += ca * xt[b];
            }
        }
    }
    (g, h)
}
