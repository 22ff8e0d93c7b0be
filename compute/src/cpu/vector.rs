//! Vector helpers of the hot loops: `y += a·x`, a reproducible dot product, and prefetching of scattered rows.

use crate::dispatch_wide;

/// `y += a·x`.
#[inline]
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
#[inline]
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
#[inline]
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
