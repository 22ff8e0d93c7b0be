//! The ridge solver of the linear baseline against numpy on the same rows, and its closed-form validation FVU
//! against the FVU of its own predictions.

use std::process::Command;
use trainer::regression::NormalEquations;

/// Rows whose columns are strongly correlated (as mlp_in after RMSNorm), and y = W·x + b + noise.
fn data(rows: usize, d_in: usize, d_out: usize) -> (Vec<f32>, Vec<f32>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let base: Vec<f64> = (0..rows * 3).map(|_| next()).collect();
    let mix: Vec<f64> = (0..3 * d_in).map(|_| next()).collect();
    let mut x = vec![0f32; rows * d_in];
    for r in 0..rows {
        for c in 0..d_in {
            let v: f64 = (0..3).map(|j| base[r * 3 + j] * mix[j * d_in + c]).sum();
            x[r * d_in + c] = (v + 0.01 * next()) as f32;
        }
    }
    let w: Vec<f64> = (0..d_out * d_in).map(|_| next()).collect();
    let mut y = vec![0f32; rows * d_out];
    for r in 0..rows {
        for o in 0..d_out {
            let v: f64 = (0..d_in)
                .map(|c| w[o * d_in + c] * x[r * d_in + c] as f64)
                .sum();
            y[r * d_out + o] = (v + 0.3 + 0.1 * next()) as f32;
        }
    }
    (x, y)
}

/// Σ (p − y)² / Σ (y − mean y)² over `rows` rows of width `d`, in f64.
fn fvu(pred: &[f32], y: &[f32], rows: usize, d: usize) -> f64 {
    let sse: f64 = pred
        .iter()
        .zip(y)
        .map(|(p, t)| ((p - t) as f64).powi(2))
        .sum();
    let mean: Vec<f64> = (0..d)
        .map(|o| (0..rows).map(|r| y[r * d + o] as f64).sum::<f64>() / rows as f64)
        .collect();
    let tv: f64 = (0..rows * d)
        .map(|i| (y[i] as f64 - mean[i % d]).powi(2))
        .sum();
    sse / tv
}

fn write_f32(path: &std::path::Path, v: &[f32]) {
    std::fs::write(
        path,
        v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
}

#[test]
fn ridge_solution_matches_numpy_and_its_fvu_matches_its_predictions() {
    let (rows, d_in, d_out) = (3000, 24, 7);
    let (x, y) = data(rows, d_in, d_out);
    let mut eq = NormalEquations::new(d_in, d_out);
    // In uneven chunks, as the cache's shards give them.
    for (start, end) in [(0, 1000), (1000, 1001), (1001, 3000)] {
        eq.add(
            &x[start * d_in..end * d_in],
            &y[start * d_out..end * d_out],
            end - start,
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let (xf, yf, of) = (
        tmp.path().join("x"),
        tmp.path().join("y"),
        tmp.path().join("w"),
    );
    write_f32(&xf, &x);
    write_f32(&yf, &y);
    for lambda in [1e-6, 1e-2] {
        let w = eq.solve(lambda).expect("positive definite");
        // numpy: the same augmented system, solved by lstsq on the stacked ridge rows (no normal equations).
        let script = format!(
            "import numpy as np\n\
             x = np.fromfile('{x}', '<f4').astype(np.float64).reshape({rows}, {d_in})\n\
             y = np.fromfile('{y}', '<f4').astype(np.float64).reshape({rows}, {d_out})\n\
             xt = np.hstack([x, np.ones(({rows}, 1))])\n\
             s = np.mean(np.sum(x * x, axis=0))\n\
             reg = np.zeros(({d_in} + 1, {d_in} + 1)); reg[:{d_in}, :{d_in}] = np.sqrt({lambda} * s) * np.eye({d_in})\n\
             w = np.linalg.lstsq(np.vstack([xt, reg]), np.vstack([y, np.zeros(({d_in} + 1, {d_out}))]), rcond=None)[0]\n\
             w.astype('<f8').tofile('{o}')\n",
            x = xf.display(),
            y = yf.display(),
            o = of.display(),
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<f64> = std::fs::read(&of)
            .unwrap()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        // Both solve the same f64 system, ours through Cholesky of the normal equations, numpy by QR of the
        // stacked rows: at a condition number ≲ 1e8 (λ ≥ 1e-6) they agree to well below 1e-6 of the largest
        // weight.
        let largest = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst = w
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        assert!(
            worst <= 1e-6 * largest,
            "λ {lambda}: worst {worst:e} of {largest}"
        );

        // The FVU from the sums equals the FVU of the f32 map's predictions (to f32 rounding of the weights).
        let map = eq.to_map(&w);
        let direct = fvu(&map.predict(&x, rows), &y, rows, d_out);
        let from_sums = eq.fvu_of(&w);
        assert!(
            (from_sums - direct).abs() <= 1e-4 * direct.max(1e-3),
            "λ {lambda}: {from_sums} vs {direct}"
        );
    }
}

/// `--skip-init regression`: a skip transcoder's first step predicts exactly what the linear map predicts
/// (W_dec starts at zero, so its prediction is W_skip·x + b_dec): the step-0 FVU is the map's on that batch.
#[test]
fn regression_skip_init_starts_on_the_linear_map() {
    use trainer::backend::{Backend, Device};
    use trainer::checkpoint::CoderState;
    use trainer::coder::{CoderConfig, Kind, Losses, SparseCoder};
    use trainer::step::StepInput;

    let (rows, d) = (1024, 24);
    let (x, y) = data(rows, d, d);
    let mut eq = NormalEquations::new(d, d);
    eq.add(&x, &y, rows);
    let map = eq.to_map(&eq.solve(1e-4).unwrap());
    let cfg = CoderConfig {
        kind: Kind::SkipTranscoder,
        d_in: d,
        d_out: d,
        num_latents: 96,
        k: 4,
    };
    let mut state = CoderState {
        skip_init: Some(map.clone()),
        ..CoderState::fresh(SparseCoder::new(cfg, 0))
    };
    let mut backend = Backend::new(Device::Cpu, None, &state, rows).unwrap();
    let input = StepInput {
        x: &x,
        y: &y,
        device: None,
        rows,
        lr: 1e-3,
        t: 1,
        dead_tokens: 1_000_000,
        losses: Losses::default(),
    };
    backend.step(&mut state, None, &input).unwrap();
    let got = backend.result(None).unwrap().fvu;
    let want = fvu(&map.predict(&x, rows), &y, rows, d);

    // The same f32 products in another order (the step's skip product and sparse decode of zero rows vs
    // the map's linear layer): equal to f32 rounding.
    assert!(
        (got - want).abs() <= 1e-5 * want,
        "step-0 FVU {got} vs the map's {want}"
    );
    assert!(state.skip_init.is_none(), "applied once");
}
