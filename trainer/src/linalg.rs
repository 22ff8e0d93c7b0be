//! Dense products through the `gemm` crate. Matrices are row-major.

use rayon::prelude::*;

/// `c[m × n] (+)= a[m × k] · b[k × n]`, where `b` is given by its strides: `(b_row_stride, b_col_stride)`.
/// With `accumulate`, the product is added to `c`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
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
    let threads = rayon::current_num_threads();
    // SAFETY (both calls): `c_block` holds rows [first, first + rows) of c, whose rows of a start at
    // `first · a_rs`; the asserted lengths cover every strided access.
    let product = |c_block: &mut [f32], first: usize, par| unsafe {
        let rows = c_block.len() / n;
        gemm::gemm(
            rows,
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
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    };
    if threads == 1 || m * n * k <= 1 << 18 {
        product(c, 0, gemm::Parallelism::None);
    } else if n * k <= 1 << 20 && m >= 16 * threads {
        // A small b (W_skip's 576 × 576): blocks of rows, one single-threaded product each, ran 1.2-1.3× the
        // rate of `gemm`'s own threading at 4096 × 576 × 576 (each block packs b again, which is cheap here).
        let per_block = m.div_ceil(4 * threads);
        c.par_chunks_mut(per_block * n)
            .enumerate()
            .for_each(|(i, c_block)| product(c_block, i * per_block, gemm::Parallelism::None));
    } else {
        product(c, 0, gemm::Parallelism::Rayon(threads));
    }
}

/// `y[rows × out] = x[rows × inp] · w[out × inp]ᵀ` (a linear layer with PyTorch's weight layout).
pub fn linear(x: &[f32], rows: usize, inp: usize, w: &[f32], out: usize) -> Vec<f32> {
    let mut y = vec![0f32; rows * out];
    matmul(&mut y, x, w, rows, inp, out, (1, inp), false, false);
    y
}

/// Whether this CPU runs AVX2. The elementwise loops below, and Adam's, are then compiled 8 lanes wide rather
/// than SSE2's 4 (the baseline the crate is built for). The results are the same bits either way: they are the
/// same operations in the same order, and the compiler never fuses a multiply and an add by itself.
#[inline]
pub fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `body` from a function compiled for AVX2 when the CPU has it; `body` must be `#[inline(always)]`, so that
/// it is compiled into that function.
macro_rules! dispatch_wide {
    ($body:ident($($arg:expr),*) : $wide:ident($($param:ident: $ty:ty),*) -> $ret:ty) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $wide($($param: $ty),*) -> $ret {
            $body($($param),*)
        }
        #[cfg(target_arch = "x86_64")]
        if $crate::linalg::wide() {
            // SAFETY: the CPU runs AVX2.
            return unsafe { $wide($($arg),*) };
        }
        $body($($arg),*)
    }};
}
pub(crate) use dispatch_wide;

/// `y += a·x`.
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len());
    #[inline(always)]
    fn body(y: &mut [f32], a: f32, x: &[f32]) {
        y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
    }
    dispatch_wide!(body(y, a, x) : body_avx2(y: &mut [f32], a: f32, x: &[f32]) -> ())
}

/// `Σ a[i]·b[i]` in f32 over 16 interleaved partial sums, so the compiler can keep them in vector registers
/// (a plain running sum is one long chain of dependent adds); one fixed order, so the result is reproducible.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    dispatch_wide!(dot_body(a, b) : dot_avx2(a: &[f32], b: &[f32]) -> f32)
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let whole = a.len() / 16 * 16;
    for (xs, ys) in a[..whole].chunks_exact(16).zip(b[..whole].chunks_exact(16)) {
        for l in 0..16 {
            lanes[l] += xs[l] * ys[l];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Entries ahead of the one being summed whose scattered rows are asked for ([`prefetch`]). One, two and four
/// ahead did not differ measurably on the 2-core AMD host (steady-state perf samples of the gather loops per
/// encoder sample, 0.20-0.26 either way).
const ENTRIES_AHEAD: usize = 2;

/// In a loop over `entries` that reads scattered rows, called before entry `i` is summed: hands `fetch` the
/// entry [`ENTRIES_AHEAD`] places on (at the first entry, every one up to there), to [`prefetch`] its rows.
#[inline]
pub fn fetch_ahead<T: Copy>(entries: &[T], i: usize, mut fetch: impl FnMut(T)) {
    let first = if i == 0 { 1 } else { i + ENTRIES_AHEAD };
    let end = (i + ENTRIES_AHEAD + 1).min(entries.len());
    for &e in entries.get(first..end).unwrap_or(&[]) {
        fetch(e);
    }
}

/// Asks for `v`'s cache lines ahead of their use: for rows of a large matrix read in scattered order (the
/// active latents' rows), which the hardware prefetcher cannot guess.
pub fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in v.chunks(16) {
        // SAFETY: a prefetch reads nothing and cannot fault; the address lies within `v`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
