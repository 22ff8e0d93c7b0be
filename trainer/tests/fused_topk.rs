//! The screened, fused encoder + TopK against the plain route (`gemm` product, then `topk_relu`). The fused
//! route orders a row's k latents differently, so rows are compared as sets of (latent, activation).
use compute::cpu::linear;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::fused_topk::{available, encode_topk, QuantizedEncoder, ScreenStats};
use trainer::topk::topk_relu;

type Rows = Vec<Vec<(u32, f32)>>;

fn by_row(acts: &[f32], idx: &[u32], k: usize) -> Rows {
    acts.chunks(k)
        .zip(idx.chunks(k))
        .map(|(a, i)| {
            let mut r: Vec<(u32, f32)> = i.iter().copied().zip(a.iter().copied()).collect();
            r.sort_by_key(|p| p.0);
            r
        })
        .collect()
}

fn plain(x: &[f32], rows: usize, d: usize, w: &[f32], b: &[f32], n: usize, k: usize) -> Rows {
    let pre = linear(x, rows, d, w, n);
    let (mut acts, mut idx) = (vec![0f32; rows * k], vec![0u32; rows * k]);
    topk_relu(&pre, b, n, k, &mut acts, &mut idx);
    by_row(&acts, &idx, k)
}

fn fused(
    x: &[f32],
    rows: usize,
    d: usize,
    w: &[f32],
    b: &[f32],
    n: usize,
    k: usize,
) -> (Rows, ScreenStats) {
    let (mut acts, mut idx) = (vec![0f32; rows * k], vec![0u32; rows * k]);
    let stats = encode_topk(
        x,
        rows,
        &QuantizedEncoder::new(w, n, d),
        w,
        b,
        k,
        &mut acts,
        &mut idx,
    );
    assert_eq!(stats.rows, rows);
    (by_row(&acts, &idx, k), stats)
}

fn assert_close(got: &Rows, want: &Rows, what: &str) {
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        let (gi, wi): (Vec<u32>, Vec<u32>) = (
            g.iter().map(|p| p.0).collect(),
            w.iter().map(|p| p.0).collect(),
        );
        assert_eq!(gi, wi, "{what}: row {r} latents differ");
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a.1 - b.1).abs() <= 1e-5 * b.1.abs().max(1e-3),
                "{what}: row {r}: {} vs {}",
                a.1,
                b.1
            );
        }
    }
}

/// Small integers: every sum is exact in any order, so both routes see identical pre-activations; ties (frequent
/// here) must go to the lower latent, and rows whose k-th value is ≤ 0 take the plain route.
#[test]
fn integer_inputs_give_identical_selections_at_ragged_sizes() {
    if !available() {
        eprintln!("skipped: this CPU lacks AVX2/FMA, the fused route is not used");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut cases, mut screened) = (0, 0);
    for &(rows, d, n) in &[
        (1, 1, 1),
        (5, 7, 15),
        (6, 8, 16),
        (7, 9, 17),
        (97, 64, 100),
        (200, 33, 1000),
        (13, 576, 47),
        (300, 576, 3000),
    ] {
        for &k in &[1usize, 3, 16, 33] {
            if k > n {
                continue;
            }
            let x: Vec<f32> = (0..rows * d)
                .map(|_| rng.random_range(-3..=3) as f32)
                .collect();
            let w: Vec<f32> = (0..n * d)
                .map(|_| rng.random_range(-2..=2) as f32)
                .collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-4..=4) as f32).collect();
            let want = plain(&x, rows, d, &w, &b, n, k);
            let (got, stats) = fused(&x, rows, d, &w, &b, n, k);
            assert_eq!(got, want, "rows {rows} d {d} latents {n} k {k}");
            screened += stats.rows - stats.plain_rows;
            cases += 1;
        }
    }
    assert_eq!(cases, 25);
    assert!(screened > 1000, "only {screened} rows were screened");
}

/// Real-valued inputs, with a few large input dimensions as language-model activations have (SmolLM2's layer-3
/// MLP inputs: largest / RMS ≈ 6 in the median row): the screen decides nearly every row, and the chosen latents
/// are the plain route's.
#[test]
fn float_inputs_agree_with_the_plain_route() {
    if !available() {
        eprintln!("skipped: this CPU lacks AVX2/FMA, the fused route is not used");
        return;
    }
    let (rows, d, n, k) = (300, 576, 4000, 32);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = (0..rows * d)
        .map(|i| rng.random_range(-1.0..1.0) * if i % d < 3 { 8.0 } else { 1.0 })
        .collect();
    let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(-0.04..0.04)).collect();
    let b: Vec<f32> = (0..n).map(|_| rng.random_range(-0.1..0.1)).collect();
    let want = plain(&x, rows, d, &w, &b, n, k);
    let (got, stats) = fused(&x, rows, d, &w, &b, n, k);
    assert_close(&got, &want, "float inputs");
    assert!(stats.plain_rows * 50 <= rows, "{stats:?}");
    assert!(
        stats.candidates < (rows - stats.plain_rows) * (k + 32),
        "{stats:?}"
    );
}

/// Rows the screen cannot decide go the plain route and still match it: a NaN input, an all-zero input (every
/// value = b_enc ≤ 0, so ReLU ties), and a whole call with a non-finite weight.
#[test]
fn undecidable_rows_take_the_plain_route() {
    if !available() {
        return;
    }
    let (rows, d, n, k) = (8, 5, 40, 4);
    let mut x: Vec<f32> = (0..rows * d).map(|i| (i % 7) as f32 - 3.0).collect();
    x[3 * d + 2] = f32::NAN;
    x[5 * d..6 * d].fill(0.0);
    let mut w: Vec<f32> = (0..n * d).map(|i| (i % 5) as f32 - 2.0).collect();
    let b = vec![-0.5f32; n];
    let want = plain(&x, rows, d, &w, &b, n, k);
    let (got, stats) = fused(&x, rows, d, &w, &b, n, k);
    assert_eq!(got, want);
    assert!(stats.plain_rows >= 2, "{stats:?}");
    assert_eq!(got[3].iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
    w[7] = f32::INFINITY;
    let (got, stats) = fused(&x, rows, d, &w, &b, n, k);
    assert_eq!(stats.plain_rows, rows);
    assert_eq!(
        format!("{got:?}"),
        format!("{:?}", plain(&x, rows, d, &w, &b, n, k))
    );
}

/// Hundreds of latents tie at each row's top value, more than the screen keeps per row: those rows cannot be
/// decided from the kept values (the tied latents it dropped may be lower-numbered, and ties go to the lower
/// latent), so they take the plain route, and the selection is the plain route's exactly.
#[test]
fn ties_beyond_the_kept_values_take_the_plain_route() {
    if !available() {
        return;
    }
    let (rows, d, n, k) = (12, 4, 2000, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..rows * d)
        .map(|_| rng.random_range(0..=1) as f32)
        .collect();
    let w: Vec<f32> = (0..n * d).map(|_| rng.random_range(0..=1) as f32).collect();
    let b = vec![0f32; n];
    let want = plain(&x, rows, d, &w, &b, n, k);
    let (got, stats) = fused(&x, rows, d, &w, &b, n, k);
    assert_eq!(got, want);
    assert!(stats.plain_rows >= rows / 2, "{stats:?}");
}
