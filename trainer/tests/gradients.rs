//! Analytic gradients (f32) against central finite differences of an independent f64 implementation of the
//! loss, for every kind of coder.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::coder::{CoderConfig, Kind, SparseCoder};

/// FVU in f64, written from the formulas alone. Parameters in the order of `tensors()`.
fn loss_f64(kind: Kind, p: &[Vec<f64>], x: &[f64], y: &[f64], rows: usize, c: &CoderConfig) -> f64 {
    let (w_enc, b_enc, w_dec, b_dec) = (&p[0], &p[1], &p[2], &p[3]);
    let (d_in, d_out, n) = (c.d_in, c.d_out, c.num_latents);
    let mut sse = 0.0;
    let mut mean = vec![0.0; d_out];
    for r in 0..rows {
        for j in 0..d_out {
            mean[j] += y[r * d_out + j] / rows as f64;
        }
    }
    let mut tv = 0.0;
    for r in 0..rows {
        let xr = &x[r * d_in..(r + 1) * d_in];
        let xc: Vec<f64> = if kind == Kind::Sae {
            xr.iter().zip(b_dec).map(|(a, b)| a - b).collect()
        } else {
            xr.to_vec()
        };
        let mut pre: Vec<(f64, usize)> = (0..n)
            .map(|l| {
                (
                    (0..d_in).map(|i| w_enc[l * d_in + i] * xc[i]).sum::<f64>() + b_enc[l],
                    l,
                )
            })
            .collect();
        pre.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
        let mut out: Vec<f64> = b_dec.clone();
        if kind == Kind::SkipTranscoder {
            for o in 0..d_out {
                out[o] += (0..d_in).map(|i| p[4][o * d_in + i] * xr[i]).sum::<f64>();
            }
        }
        for &(v, l) in &pre[..c.k] {
            let a = v.max(0.0);
            for o in 0..d_out {
                out[o] += a * w_dec[l * d_out + o];
            }
        }
        for o in 0..d_out {
            sse += (out[o] - y[r * d_out + o]).powi(2);
            tv += (y[r * d_out + o] - mean[o]).powi(2);
        }
    }
    sse / tv
}

fn check(kind: Kind) {
    let (d_in, d_out) = if kind == Kind::Sae { (7, 7) } else { (7, 5) };
    let c = CoderConfig {
        kind,
        d_in,
        d_out,
        num_latents: 16,
        k: 4,
    };
    let rows = 9;
    let mut rng = ChaCha8Rng::seed_from_u64(42 + kind as u64);
    let mut coder = SparseCoder::new(c.clone(), 3);
    let mut rand_vec = |n: usize, s: f32| {
        (0..n)
            .map(|_| rng.random_range(-s..s))
            .collect::<Vec<f32>>()
    };
    coder.w_enc = rand_vec(16 * d_in, 0.8);
    coder.b_enc = rand_vec(16, 0.3);
    coder.w_dec = rand_vec(16 * d_out, 0.8);
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

    let mut g = coder.zero_grads();
    let (stats, _) = coder.forward_backward(&x, &y, rows, &mut g);
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
    let base = loss_f64(kind, &params, &xd, &yd, rows, &c);
    assert!(
        (base - stats.fvu).abs() < 1e-5 * base,
        "{kind:?}: loss {} vs f64 {base}",
        stats.fvu
    );

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
            let up = loss_f64(kind, &params, &xd, &yd, rows, &c);
            params[t][i] = orig - h;
            let down = loss_f64(kind, &params, &xd, &yd, rows, &c);
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

#[test]
fn sae_gradients() {
    check(Kind::Sae);
}

#[test]
fn transcoder_gradients() {
    check(Kind::Transcoder);
}

#[test]
fn skip_transcoder_gradients() {
    check(Kind::SkipTranscoder);
}
