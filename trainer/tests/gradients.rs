//! Analytic gradients (f32) against central finite differences of an independent f64 implementation of the
//! loss, for every kind of coder.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::coder::{CoderConfig, Kind, Losses, SparseCoder};

/// One row through the coder, in f64 from the formulas alone: the pre-activations sorted high to low (with their
/// latent), and the decoder's start (b_dec, plus W_skip·x for the SST). Parameters: W_enc, b_enc, W_dec, b_dec
/// (, W_skip).
fn row_f64(
    kind: Kind,
    p: &[Vec<f64>],
    xr: &[f64],
    c: &CoderConfig,
) -> (Vec<(f64, usize)>, Vec<f64>) {
    let (d_in, d_out) = (c.d_in, c.d_out);
    let xc: Vec<f64> = if kind == Kind::Sae {
        xr.iter().zip(&p[3]).map(|(a, b)| a - b).collect()
    } else {
        xr.to_vec()
    };
    let mut pre: Vec<(f64, usize)> = (0..c.num_latents)
        .map(|l| {
            (
                (0..d_in).map(|i| p[0][l * d_in + i] * xc[i]).sum::<f64>() + p[1][l],
                l,
            )
        })
        .collect();
    pre.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let mut start = p[3].clone();
    if kind == Kind::SkipTranscoder {
        for (o, s) in start.iter_mut().enumerate() {
            *s += (0..d_in).map(|i| p[4][o * d_in + i] * xr[i]).sum::<f64>();
        }
    }
    assert_eq!(start.len(), d_out);
    (pre, start)
}

/// `start + Σ ReLU(pre) · W_dec[latent]` over the selected latents.
fn decode_f64(sel: &[(f64, usize)], start: &[f64], w_dec: &[f64]) -> Vec<f64> {
    let d = start.len();
    let mut v = start.to_vec();
    for &(pre, l) in sel {
        for j in 0..d {
            v[j] += pre.max(0.0) * w_dec[l * d + j];
        }
    }
    v
}

#[derive(Default, Clone)]
struct Opts {
    multi_topk: bool,
    auxk_alpha: f64,
    dead: Option<Vec<bool>>,
    /// y − ŷ at the unperturbed parameters: AuxK's target, held fixed as sparsify detaches it.
    residual: Vec<f64>,
}

/// FVU (+ Multi-TopK/8 + α·AuxK) in f64.
fn loss_f64(
    kind: Kind,
    p: &[Vec<f64>],
    x: &[f64],
    y: &[f64],
    rows: usize,
    c: &CoderConfig,
    o: &Opts,
) -> f64 {
    let d_out = c.d_out;
    let mean: Vec<f64> = (0..d_out)
        .map(|j| (0..rows).map(|r| y[r * d_out + j]).sum::<f64>() / rows as f64)
        .collect();
    let (mut sse, mut sse4, mut aux, mut tv) = (0.0, 0.0, 0.0, 0.0);
    for r in 0..rows {
        let (pre, start) = row_f64(kind, p, &x[r * c.d_in..(r + 1) * c.d_in], c);
        let yr = &y[r * d_out..(r + 1) * d_out];
        let out = decode_f64(&pre[..c.k], &start, &p[2]);
        for j in 0..d_out {
            sse += (out[j] - yr[j]).powi(2);
            tv += (yr[j] - mean[j]).powi(2);
        }
        if o.multi_topk {
            let out4 = decode_f64(&pre[..4 * c.k], &p[3], &p[2]);
            sse4 += (0..d_out).map(|j| (out4[j] - yr[j]).powi(2)).sum::<f64>();
        }
        if let Some(dead) = &o.dead {
            let dead_pre: Vec<(f64, usize)> =
                pre.iter().copied().filter(|&(_, l)| dead[l]).collect();
            let k_aux = (d_out / 2).min(dead_pre.len());
            let e_hat = decode_f64(&dead_pre[..k_aux], &vec![0.0; d_out], &p[2]);
            let e = &o.residual[r * d_out..(r + 1) * d_out];
            aux += (0..d_out).map(|j| (e_hat[j] - e[j]).powi(2)).sum::<f64>();
        }
    }
    let mut loss = sse / tv + sse4 / tv / 8.0;
    if let Some(dead) = &o.dead {
        let n_dead = dead.iter().filter(|&&d| d).count() as f64;
        loss += o.auxk_alpha * (n_dead / (d_out / 2) as f64).min(1.0) * aux / tv;
    }
    loss
}

/// y − ŷ at the given parameters.
fn residual(
    kind: Kind,
    p: &[Vec<f64>],
    x: &[f64],
    y: &[f64],
    rows: usize,
    c: &CoderConfig,
) -> Vec<f64> {
    let d_out = c.d_out;
    (0..rows)
        .flat_map(|r| {
            let (pre, start) = row_f64(kind, p, &x[r * c.d_in..(r + 1) * c.d_in], c);
            let out = decode_f64(&pre[..c.k], &start, &p[2]);
            (0..d_out)
                .map(move |j| y[r * d_out + j] - out[j])
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A small coder's shape: d_in 7, and d_out 5 for transcoders (7 for an SAE, which reconstructs its input).
fn config(kind: Kind, num_latents: usize, k: usize) -> CoderConfig {
    CoderConfig {
        kind,
        d_in: 7,
        d_out: if kind == Kind::Sae { 7 } else { 5 },
        num_latents,
        k,
    }
}

fn check(kind: Kind, losses: Losses) {
    let c = config(kind, 20, 3);
    let (d_in, d_out) = (c.d_in, c.d_out);
    let rows = 9;
    let mut rng = ChaCha8Rng::seed_from_u64(42 + kind as u64);
    let mut coder = SparseCoder::new(c.clone(), 3);
    let mut rand_vec = |n: usize, s: f32| {
        (0..n)
            .map(|_| rng.random_range(-s..s))
            .collect::<Vec<f32>>()
    };
    coder.w_enc = rand_vec(20 * d_in, 0.8);
    coder.b_enc = rand_vec(20, 0.3);
    coder.w_dec = rand_vec(20 * d_out, 0.8);
    coder.b_dec = rand_vec(d_out, 0.3);
    if kind == Kind::SkipTranscoder {
        coder.w_skip = Some(rand_vec(d_out * d_in, 0.5));
    }
    let x = rand_vec(rows * d_in, 1.5);
    let y = if kind == Kind::Sae {
        x.clone()
    } else {
        rand_vec(rows * d_out, 1.5)
    };

    // Every third latent is dead (for AuxK).
    let dead: Vec<bool> = (0..20).map(|l| l % 3 == 0).collect();
    let mut g = coder.zero_grads();
    let (stats, _) = coder.forward_backward(&x, &y, rows, &mut g, &losses, Some(&dead), None);

    let mut params: Vec<Vec<f64>> = [&coder.w_enc, &coder.b_enc, &coder.w_dec, &coder.b_dec]
        .iter()
        .map(|t| t.iter().map(|&v| v as f64).collect())
        .collect();
    if let Some(w) = &coder.w_skip {
        params.push(w.iter().map(|&v| v as f64).collect());
    }
    let (xd, yd): (Vec<f64>, Vec<f64>) = (
        x.iter().map(|&v| v as f64).collect(),
        y.iter().map(|&v| v as f64).collect(),
    );
    let mut opts = Opts {
        multi_topk: losses.multi_topk,
        auxk_alpha: losses.auxk_alpha as f64,
        ..Default::default()
    };
    if losses.auxk_alpha > 0.0 {
        opts.dead = Some(dead.clone());
        opts.residual = residual(kind, &params, &xd, &yd, rows, &c);
    }
    let base = loss_f64(kind, &params, &xd, &yd, rows, &c, &opts);
    let ours = stats.fvu + stats.multi_topk_fvu / 8.0 + losses.auxk_alpha as f64 * stats.auxk;
    assert!(
        (base - ours).abs() < 1e-5 * base,
        "{kind:?}: loss {ours} vs f64 {base}"
    );
    if losses.auxk_alpha > 0.0 {
        assert!(stats.auxk > 0.0);
    }

    let analytic: Vec<&Vec<f32>> = [
        Some(&g.w_enc),
        Some(&g.b_enc),
        Some(&g.w_dec),
        Some(&g.b_dec),
        g.w_skip.as_ref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let names = ["W_enc", "b_enc", "W_dec", "b_dec", "W_skip"];
    let h = 1e-6;
    for (t, grad) in analytic.iter().enumerate() {
        let mut num = 0.0;
        let mut den = 0.0;
        for i in 0..params[t].len() {
            let orig = params[t][i];
            params[t][i] = orig + h;
            let up = loss_f64(kind, &params, &xd, &yd, rows, &c, &opts);
            params[t][i] = orig - h;
            let down = loss_f64(kind, &params, &xd, &yd, rows, &c, &opts);
            params[t][i] = orig;
            let fd = (up - down) / (2.0 * h);
            num += (grad[i] as f64 - fd).powi(2);
            den += fd * fd;
        }
        let rel = (num / den).sqrt();
        println!(
            "{kind:?} {}: |grad| {:.3e}, relative error {rel:.2e}",
            names[t],
            den.sqrt()
        );
        assert!(
            den > 0.0,
            "{kind:?} {}: zero gradient tests nothing",
            names[t]
        );
        assert!(
            rel < 1e-4,
            "{kind:?} {}: relative error {rel:.3e}",
            names[t]
        );
    }
}

const PLAIN: Losses = Losses {
    auxk_alpha: 0.0,
    multi_topk: false,
};
const AUX: Losses = Losses {
    auxk_alpha: 0.5,
    multi_topk: false,
};
const MULTI: Losses = Losses {
    auxk_alpha: 0.0,
    multi_topk: true,
};

#[test]
fn sae_gradients() {
    for l in [PLAIN, AUX, MULTI] {
        check(Kind::Sae, l);
    }
}

#[test]
fn transcoder_gradients() {
    for l in [PLAIN, AUX, MULTI] {
        check(Kind::Transcoder, l);
    }
}

#[test]
fn skip_transcoder_gradients() {
    for l in [PLAIN, AUX, MULTI] {
        check(Kind::SkipTranscoder, l);
    }
}

/// Gradients written over an earlier batch's must equal fresh ones, bit for bit: the training loop reuses one
/// `Grads`, and the latents an earlier batch touched need not be those of the next.
#[test]
fn gradients_over_an_earlier_batch_equal_fresh_ones() {
    for kind in [Kind::Sae, Kind::Transcoder, Kind::SkipTranscoder] {
        for losses in [PLAIN, AUX, MULTI] {
            let c = config(kind, 64, 2);
            let (d_in, d_out) = (c.d_in, c.d_out);
            let rows = 3;
            let mut rng = ChaCha8Rng::seed_from_u64(7 + kind as u64);
            let mut rand_vec = |n: usize| {
                (0..n)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect::<Vec<f32>>()
            };
            let mut coder = SparseCoder::new(c.clone(), 5);
            coder.w_dec = rand_vec(64 * d_out);
            coder.b_dec = rand_vec(d_out);
            if kind == Kind::SkipTranscoder {
                coder.w_skip = Some(rand_vec(d_out * d_in));
            }
            let dead: Vec<bool> = (0..64).map(|l| l % 3 == 0).collect();
            let (x, y) = (rand_vec(rows * d_in), rand_vec(rows * d_out));
            let (x_other, y_other) = (rand_vec(rows * d_in), rand_vec(rows * d_out));
            let y = if kind == Kind::Sae { x.clone() } else { y };
            let y_other = if kind == Kind::Sae {
                x_other.clone()
            } else {
                y_other
            };

            let mut fresh = coder.zero_grads();
            coder.forward_backward(&x, &y, rows, &mut fresh, &losses, Some(&dead), None);
            let mut reused = coder.zero_grads();
            coder.forward_backward(
                &x_other,
                &y_other,
                rows,
                &mut reused,
                &losses,
                Some(&dead),
                None,
            );
            assert!(
                reused.touched.iter().any(|l| !fresh.touched.contains(l)),
                "{kind:?}: the earlier batch touches no latent of its own, so nothing is left to overwrite"
            );
            coder.forward_backward(&x, &y, rows, &mut reused, &losses, Some(&dead), None);
            assert_eq!(reused.touched, fresh.touched);
            for (name, a, b) in [
                ("W_enc", &reused.w_enc, &fresh.w_enc),
                ("b_enc", &reused.b_enc, &fresh.b_enc),
                ("W_dec", &reused.w_dec, &fresh.w_dec),
                ("b_dec", &reused.b_dec, &fresh.b_dec),
            ] {
                assert!(
                    a.iter().zip(b.iter()).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{kind:?} {losses:?} {name}: written over an earlier batch's, it differs from a fresh one"
                );
            }
            assert_eq!(reused.w_skip, fresh.w_skip, "{kind:?} {losses:?} W_skip");
        }
    }
}
