//! The fused encoder + TopK against the plain route (`gemm` product, then `topk_relu`).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::fused_topk::{available, encode_topk, PackedEncoder};
use trainer::linalg::linear;
use trainer::topk::topk_relu;

fn plain(x: &[f32], rows: usize, d: usize, w: &[f32], b: &[f32], n: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    let pre = linear(x, rows, d, w, n);
    let (mut acts, mut idx) = (vec![0f32; rows * k], vec![0u32; rows * k]);
    topk_relu(&pre, b, n, k, &mut acts, &mut idx);
    (acts, idx)
}

fn fused(x: &[f32], rows: usize, d: usize, w: &[f32], b: &[f32], n: usize, k: usize) -> (Vec<f32>, Vec<u32>) {
    let (mut acts, mut idx) = (vec![0f32; rows * k], vec![0u32; rows * k]);
    encode_topk(x, rows, &PackedEncoder::new(w, n, d), b, k, &mut acts, &mut idx);
    (acts, idx)
}

/// Small integers: every sum is exact in any order, so both routes see identical pre-activations, and ties
/// (frequent here) must be broken the same way.
#[test]
fn integer_inputs_give_identical_selections_at_ragged_sizes() {
    if !available() {
        eprintln!("skipped: this CPU lacks AVX2/FMA, the fused route is not used");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut cases = 0;
    for &(rows, d, n) in &[
        (1, 1, 1),
        (5, 7, 15),
        (6, 8, 16),
        (7, 9, 17),
        (97, 64, 100),
        (200, 33, 1000),
        (13, 576, 47),
    ] {
        for &k in &[1usize, 3, 16, 33] {
            if k > n {
                continue;
            }
            let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-3..=3) as f32).collect();
            let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-2..=2) as f32).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-4..=4) as f32).collect();
            let want = plain(&x, rows, d, &w, &b, n, k);
            let got = fused(&x, rows, d, &w, &b, n, k);
            assert_eq!(got.1, want.1, "latents differ: rows {rows} d {d} latents {n} k {k}");
            assert_eq!(got.0, want.0, "activations differ: rows {rows} d {d} latents {n} k {k}");
            cases += 1;
        }
    }
    assert_eq!(cases, 21);
}

/// Real-valued inputs at the benchmark's width: the sums' order differs, so values agree to rounding; away from
/// near-ties the same latents are chosen.
#[test]
fn float_inputs_agree_with_the_plain_route() {
    if !available() {
        eprintln!("skipped: this CPU lacks AVX2/FMA, the fused route is not used");
        return;
    }
    let (rows, d, n, k) = (50, 576, 2000, 32);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-0.04..0.04)).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1..0.1)).collect();
    let want = plain(&x, rows, d, &w, &b, n, k);
    let got = fused(&x, rows, d, &w, &b, n, k);
    assert_eq!(got.1, want.1);
    for (g, w) in got.0.iter().zip(&want.0) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1e-3), "{g} vs {w}");
    }
    assert!(got.0.iter().any(|&a| a > 0.0));
}

/// A row of NaN inputs keeps its first k latents at 0, as `topk_relu` does; other rows are unaffected.
#[test]
fn nan_rows_behave_as_in_topk_relu() {
    if !available() {
        return;
    }
    let (rows, d, n, k) = (8, 5, 40, 4);
    let mut x: Vec<f32> = (0..rows * d).map(|i| (i % 7) as f32 - 3.0).collect();
    x[3 * d + 2] = f32::NAN;
    let w: Vec<f32> = (0..n * d).map(|i| (i % 5) as f32 - 2.0).collect();
    let b = vec![0.5f32; n];
    let want = plain(&x, rows, d, &w, &b, n, k);
    let got = fused(&x, rows, d, &w, &b, n, k);
    assert_eq!(got.1, want.1);
    assert_eq!(&got.1[3 * k..4 * k], &[0, 1, 2, 3]);
    assert_eq!(got.0, want.0);
}
