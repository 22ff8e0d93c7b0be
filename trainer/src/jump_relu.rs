//! JumpReLU, for coders imported from releases that use it (Gemma Scope, Llama Scope, SAELens's jumprelu
//! classes, circuit-tracer's JumpReLU sets): a latent is `pre` where `pre > θ` (its threshold), else 0. We
//! never train it; it only encodes.
//!
//! The number of active latents varies by row, so the encoding is stored as TopK's is, `rows × per_row`
//! (latent index, activation) pairs with `per_row` the most any row of the batch has, shorter rows padded
//! with activation 0 (which decodes to nothing and counts as silent). The releases define the activation as
//! `pre·[pre > θ]` (circuit-tracer), or with a ReLU as well (Gemma Scope, SAELens); imports refuse a negative
//! θ, where these would differ, so all three are this one function.

use rayon::prelude::*;

/// The active latents of each row of `pre[rows × width]` (+ `bias`) above `threshold`, in column order, as
/// `(acts, idx, per_row)`.
pub fn select_above(
    pre: &[f32],
    bias: &[f32],
    threshold: &[f32],
    width: usize,
) -> (Vec<f32>, Vec<u32>, usize) {
    assert!(bias.len() == width && threshold.len() == width);
    let active: Vec<Vec<(u32, f32)>> = pre
        .par_chunks(width)
        .map(|row| {
            let mut on = Vec::new();
            for c in 0..width {
                let v = row[c] + bias[c];
                if v > threshold[c] {
                    on.push((c as u32, v));
                }
            }
            on
        })
        .collect();
    let per_row = active.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let (mut acts, mut idx) = (
        vec![0f32; active.len() * per_row],
        vec![0u32; active.len() * per_row],
    );
    for (r, on) in active.iter().enumerate() {
        for (j, &(c, v)) in on.iter().enumerate() {
            idx[r * per_row + j] = c;
            acts[r * per_row + j] = v;
        }
    }
    (acts, idx, per_row)
}

/// The first threshold below 0, as (latent, value): imports refuse it (see the module doc).
pub fn negative_threshold(threshold: &[f32]) -> Option<(usize, f32)> {
    threshold
        .iter()
        .enumerate()
        .find(|(_, &t)| t < 0.0 || t.is_nan())
        .map(|(i, &t)| (i, t))
}
