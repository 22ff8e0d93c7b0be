//! TopK of ReLU(pre-activations + bias) per row, by partial selection: one pass per row keeping the k largest.

use rayon::prelude::*;

/// For each row of `pre[rows × width]`, the `k` largest values of ReLU(pre + bias) and their columns, in no
/// particular order. Ties keep the lower column.
pub fn topk_relu(
    pre: &[f32],
    bias: &[f32],
    width: usize,
    k: usize,
    acts: &mut [f32],
    idx: &mut [u32],
) {
    assert!(k >= 1 && k <= width && bias.len() == width);
    acts.par_chunks_mut(k)
        .zip(idx.par_chunks_mut(k))
        .zip(pre.par_chunks(width))
        .for_each(|((a, ix), row)| {
            // Seed with the first k columns, then let a larger value evict the current minimum.
            for j in 0..k {
                a[j] = (row[j] + bias[j]).max(0.0);
                ix[j] = j as u32;
            }
            let (mut min_pos, mut min) = argmin(a, ix);
            for c in k..width {
                let v = row[c] + bias[c];
                if v > min {
                    a[min_pos] = v;
                    ix[min_pos] = c as u32;
                    (min_pos, min) = argmin(a, ix);
                }
            }
        });
}

/// Position of the smallest value; among equal values the one of the highest column, so ties keep lower columns.
fn argmin(a: &[f32], ix: &[u32]) -> (usize, f32) {
    let mut best = 0;
    for i in 1..a.len() {
        if a[i] < a[best] || (a[i] == a[best] && ix[i] > ix[best]) {
            best = i;
        }
    }
    (best, a[best])
}

/// Counting sort of flat positions by the latent each holds (`idx`, e.g. `(row, slot)` of a TopK, or a row's
/// candidates): `order[starts[l]..starts[l+1]]` are latent l's positions, ascending.
pub fn group_by_latent(idx: &[u32], latents: usize) -> (Vec<u32>, Vec<usize>) {
    let mut starts = vec![0usize; latents + 1];
    for &l in idx {
        starts[l as usize + 1] += 1;
    }
    for l in 0..latents {
        starts[l + 1] += starts[l];
    }
    let mut fill = starts.clone();
    let mut order = vec![0u32; idx.len()];
    for (e, &l) in idx.iter().enumerate() {
        order[fill[l as usize]] = e as u32;
        fill[l as usize] += 1;
    }
    (order, starts)
}
