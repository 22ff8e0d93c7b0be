//! Dense f32 products through the `gemm` crate, for both stages. Matrices are row-major; a linear layer's
//! weight is `[out, in]` as in PyTorch's `nn.Linear`, so a linear layer is `y = x · Wᵀ`.
//!
//! One rule spreads every product over the threads ([`for_row_blocks`]): small products run on one thread;
//! a product with a small right-hand side (W_skip's 576 × 576, every SmolLM2 weight but the output head) runs
//! as blocks of rows, one single-threaded `gemm` each, which measured 1.2-1.3× the rate of `gemm`'s own
//! threading at 4096 × 576 × 576 on the 2-core host (each block packs the right-hand side again, which is
//! cheap at these sizes); anything else uses `gemm`'s own threading. How a product is split never changes its
//! values: each output row is computed by the same kernel over the same depth either way.

use gemm::Parallelism;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Runs `product(c_block, first_row, parallelism)` over `c[m × n]` (the output of an `m × k` by `k × n`
/// product) as the threading rule of this module says.
fn for_row_blocks<T: Send>(
    c: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    product: impl Fn(&mut [T], usize, Parallelism) + Sync,
) {
    let threads = rayon::current_num_threads();
    if threads == 1 || m * n * k <= 1 << 18 {
        product(c, 0, Parallelism::None);
    } else if n * k <= 1 << 20 && m >= 16 * threads {
        let per_block = m.div_ceil(4 * threads);
        c.par_chunks_mut(per_block * n)
            .enumerate()
            .for_each(|(i, c_block)| product(c_block, i * per_block, Parallelism::None));
    } else {
        product(c, 0, Parallelism::Rayon(threads));
    }
}

/// The element types of [`matmul`]: f32 for both stages' products, f64 for sums that must not lose precision
/// (the normal equations of a regression).
pub trait Element: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
}
impl Element for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
}
impl Element for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// `c[m × n] (+)= a[m × k] · b[k × n]`, where `b` is given by its strides: `(b_row_stride, b_col_stride)`, and
/// `a` is read transposed (`a` then holds `k × m`) with `a_transposed`. With `accumulate`, the product is
/// added to `c`.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Element>(
    c: &mut [T],
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    b_strides: (usize, usize),
    a_transposed: bool,
    accumulate: bool,
) {
    assert_eq!(c.len(), m * n);
    assert_eq!(a.len(), m * k);
    assert!(b.len() >= k * n);
    let (a_rs, a_cs) = if a_transposed { (1, m) } else { (k, 1) };
    // SAFETY: `c_block` holds rows [first, first + rows) of c, whose rows of a start at `first · a_rs`; the
    // asserted lengths cover every strided access.
    for_row_blocks(c, m, n, k, |c_block, first, par| unsafe {
        gemm::gemm(
            c_block.len() / n,
            n,
            k,
            c_block.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr().add(first * a_rs),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_strides.1 as isize,
            b_strides.0 as isize,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            par,
        )
    });
}

/// `y[rows × out] = x[rows × inp] · w[out × inp]ᵀ` (a linear layer with PyTorch's weight layout).
pub fn linear(x: &[f32], rows: usize, inp: usize, w: &[f32], out: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * inp);
    assert_eq!(w.len(), out * inp);
    // Left unset (zeroing it was 2 % of a forward pass): `gemm` overwrites every value without reading any, as
    // `read_dst` is false.
    let mut y: Vec<f32> = Vec::with_capacity(rows * out);
    let unset: &mut [MaybeUninit<f32>] = &mut y.spare_capacity_mut()[..rows * out];
    // SAFETY: `y_block` holds rows [first, first + its rows) of y, whose inputs start at `first · inp` in x;
    // every pointer/stride pair describes a buffer of the asserted size.
    for_row_blocks(unset, rows, out, inp, |y_block, first, par| unsafe {
        gemm::gemm(
            y_block.len() / out,
            out,
            inp,
            y_block.as_mut_ptr() as *mut f32,
            1,
            out as isize,
            false,
            x.as_ptr().add(first * inp),
            1,
            inp as isize,
            w.as_ptr(),
            inp as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    });
    // SAFETY: the products above wrote all rows · out values.
    unsafe { y.set_len(rows * out) };
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum();
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                    / (1 << 24) as f32
                    - 0.5
            })
            .collect()
    }

    /// Each branch of the threading rule (single, row blocks, gemm's threads) against an f64 loop, with
    /// and without accumulation and with `a` transposed.
    #[test]
    fn matmul_and_linear_match_a_plain_loop() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for &(m, k, n) in &[(7, 5, 3), (256, 64, 96), (40, 1100, 1030)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let want = naive(&a, &b, m, k, n);
            let close = |got: &[f32], want: &[f64]| {
                got.iter()
                    .zip(want)
                    .all(|(g, w)| (*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()))
            };
            pool.install(|| {
                let mut c = vec![f32::NAN; m * n];
                matmul(&mut c, &a, &b, m, k, n, (n, 1), false, false);
                assert!(close(&c, &want), "matmul {m}×{k}×{n}");
                matmul(&mut c, &a, &b, m, k, n, (n, 1), false, true);
                let twice: Vec<f64> = want.iter().map(|w| 2.0 * w).collect();
                assert!(close(&c, &twice), "accumulate {m}×{k}×{n}");
                let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                matmul(&mut c, &at, &b, m, k, n, (n, 1), true, false);
                assert!(close(&c, &want), "transposed {m}×{k}×{n}");
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                assert!(
                    close(&linear(&a, m, k, &bt, n), &want),
                    "linear {m}×{k}×{n}"
                );
            });
        }
    }
}
