//! The encoder's dense product fused with its TopK on the CPU (x86-64 with AVX2 and FMA).
//!
//! `x'·W_encᵀ` is computed in tiles of 6 rows × 16 latents held in registers; b_enc is added there and a tile
//! leaves the registers only where a value beats its row's current k-th largest, which after the first few
//! tiles is rare. So the `rows × latents` pre-activation matrix (300 MB at batch 4096 and 18,432 latents) is
//! never written nor read back, and selection costs one compare per value.
//!
//! The selection rule is [`crate::topk::topk_relu`]'s: each row's columns are offered in ascending order, the
//! first k seed the row (through ReLU), and a later value evicts the current minimum only when strictly larger
//! (the minimum chosen as `topk` chooses it). Given the same pre-activations, both pick the same latents with
//! the same values; only the order of the k-long dot-product sums differs from the `gemm` path.

use crate::topk::argmin;
use rayon::prelude::*;

/// Rows and latents of one register tile.
const TILE_ROWS: usize = 6;
const TILE_LATENTS: usize = 16;
/// Rows per task: W_enc streams from memory once per task, their inputs (442 KB at d_in = 576) stay in cache.
const BLOCK_ROWS: usize = 192;

/// Whether this CPU runs the fused kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// W_enc `[latents × d_in]` rearranged for the kernel: for each group of 16 latents, `d_in` runs of their 16
/// weights at one input position (latents past the end are zero).
pub struct PackedEncoder {
    panels: Vec<f32>,
    d_in: usize,
    latents: usize,
}

impl PackedEncoder {
    pub fn new(w_enc: &[f32], latents: usize, d_in: usize) -> PackedEncoder {
        assert_eq!(w_enc.len(), latents * d_in);
        let panel_len = d_in * TILE_LATENTS;
        let mut panels = vec![0f32; latents.div_ceil(TILE_LATENTS) * panel_len];
        panels
            .par_chunks_mut(panel_len)
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..TILE_LATENTS.min(latents - p * TILE_LATENTS) {
                    let row = &w_enc[(p * TILE_LATENTS + j) * d_in..][..d_in];
                    for (i, &w) in row.iter().enumerate() {
                        panel[i * TILE_LATENTS + j] = w;
                    }
                }
            });
        PackedEncoder {
            panels,
            d_in,
            latents,
        }
    }
}

/// For each row of `xc [rows × d_in]`, the `k` largest ReLU(xc·W_encᵀ + b_enc) and their latents (no particular
/// order), into `acts` and `idx` (`rows × k`). Panics unless [`available`].
pub fn encode_topk(
    xc: &[f32],
    rows: usize,
    w: &PackedEncoder,
    b_enc: &[f32],
    k: usize,
    acts: &mut [f32],
    idx: &mut [u32],
) {
    let (d_in, latents) = (w.d_in, w.latents);
    assert!(available(), "the fused encoder needs AVX2 and FMA");
    assert!(k >= 1 && k <= latents && b_enc.len() == latents);
    assert!(xc.len() == rows * d_in && acts.len() == rows * k && idx.len() == rows * k);
    // b_enc padded to whole tiles, so the kernel loads it as it loads W_enc.
    let mut bias = b_enc.to_vec();
    bias.resize(latents.div_ceil(TILE_LATENTS) * TILE_LATENTS, 0.0);
    xc.par_chunks(BLOCK_ROWS * d_in)
        .zip(acts.par_chunks_mut(BLOCK_ROWS * k))
        .zip(idx.par_chunks_mut(BLOCK_ROWS * k))
        .for_each(|((x_block, a_block), i_block)| {
            let mut rows = RowsTopK::new(a_block, i_block, k);
            // SAFETY: `available()` was checked above; every pointer the kernel reads lies in `x_block`,
            // `w.panels` or `bias`, whose lengths were checked.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                block_avx2(x_block, w, &bias, &mut rows)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (x_block, &bias, &mut rows);
        });
}

/// The running TopK of a block of rows: their output slices and each row's current minimum.
struct RowsTopK<'a> {
    acts: &'a mut [f32],
    idx: &'a mut [u32],
    k: usize,
    filled: Vec<usize>,
    min_pos: Vec<usize>,
    /// −∞ while a row is seeding, so every column is offered.
    min: Vec<f32>,
}

impl<'a> RowsTopK<'a> {
    fn new(acts: &'a mut [f32], idx: &'a mut [u32], k: usize) -> RowsTopK<'a> {
        let n = acts.len() / k;
        RowsTopK {
            acts,
            idx,
            k,
            filled: vec![0; n],
            min_pos: vec![0; n],
            min: vec![f32::NEG_INFINITY; n],
        }
    }

    /// Offers column `col` with value `v` (pre-activation + bias) to row `r`.
    #[inline]
    fn offer(&mut self, r: usize, col: u32, v: f32) {
        let (a, ix) = (
            &mut self.acts[r * self.k..(r + 1) * self.k],
            &mut self.idx[r * self.k..(r + 1) * self.k],
        );
        if self.filled[r] < self.k {
            a[self.filled[r]] = v.max(0.0);
            ix[self.filled[r]] = col;
            self.filled[r] += 1;
            if self.filled[r] < self.k {
                return;
            }
        } else if v > self.min[r] {
            a[self.min_pos[r]] = v;
            ix[self.min_pos[r]] = col;
        } else {
            return;
        }
        (self.min_pos[r], self.min[r]) = argmin(a, ix);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(
    x_block: &[f32],
    w: &PackedEncoder,
    bias: &[f32],
    rows: &mut RowsTopK,
) {
    use std::arch::x86_64::*;
    let d_in = w.d_in;
    let block_rows = x_block.len() / d_in;
    let panel_len = d_in * TILE_LATENTS;
    // The block's rows in groups of 6, interleaved (position i of the group's rows is contiguous), so the
    // kernel reads one stream for its broadcasts; missing rows of the last group are zeros and never offered.
    let groups = block_rows.div_ceil(TILE_ROWS);
    let mut x_groups = vec![0f32; groups * d_in * TILE_ROWS];
    for (g, group) in x_groups.chunks_exact_mut(d_in * TILE_ROWS).enumerate() {
        for r in 0..TILE_ROWS.min(block_rows - g * TILE_ROWS) {
            let row = &x_block[(g * TILE_ROWS + r) * d_in..][..d_in];
            for (i, &v) in row.iter().enumerate() {
                group[i * TILE_ROWS + r] = v;
            }
        }
    }
    // Each 16-latent panel (36 KB at d_in = 576) is read from memory once per block and from cache by every
    // group; a row meets its columns in ascending order, as the selection rule needs.
    for (p, panel) in w.panels.chunks_exact(panel_len).enumerate() {
        let col0 = p * TILE_LATENTS;
        let valid_cols = TILE_LATENTS.min(w.latents - col0);
        let col_mask = (1u32 << valid_cols) - 1;
        let bias0 = _mm256_loadu_ps(bias.as_ptr().add(col0));
        let bias1 = _mm256_loadu_ps(bias.as_ptr().add(col0 + 8));
        for (g, group) in x_groups.chunks_exact(d_in * TILE_ROWS).enumerate() {
            let r0 = g * TILE_ROWS;
            let tile_rows = TILE_ROWS.min(block_rows - r0);
            let a = group.as_ptr();
            let b = panel.as_ptr();
            let mut c = [[_mm256_setzero_ps(); 2]; TILE_ROWS];
            for i in 0..d_in {
                let b0 = _mm256_loadu_ps(b.add(i * TILE_LATENTS));
                let b1 = _mm256_loadu_ps(b.add(i * TILE_LATENTS + 8));
                for (r, cr) in c.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(i * TILE_ROWS + r));
                    cr[0] = _mm256_fmadd_ps(av, b0, cr[0]);
                    cr[1] = _mm256_fmadd_ps(av, b1, cr[1]);
                }
            }
            for (r, cr) in c.iter().enumerate().take(tile_rows) {
                let row = r0 + r;
                let v0 = _mm256_add_ps(cr[0], bias0);
                let v1 = _mm256_add_ps(cr[1], bias1);
                let t = _mm256_set1_ps(rows.min[row]);
                let above = (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v0, t)) as u32)
                    | ((_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v1, t)) as u32) << 8);
                // A seeding row takes every column, NaN included, as topk_relu does.
                let mut offered = if rows.filled[row] < rows.k {
                    col_mask
                } else {
                    above & col_mask
                };
                if offered == 0 {
                    continue;
                }
                let mut vals = [0f32; TILE_LATENTS];
                _mm256_storeu_ps(vals.as_mut_ptr(), v0);
                _mm256_storeu_ps(vals.as_mut_ptr().add(8), v1);
                while offered != 0 {
                    let j = offered.trailing_zeros() as usize;
                    offered &= offered - 1;
                    // `offer` re-checks against the row's minimum, which may have risen within this tile.
                    rows.offer(row, (col0 + j) as u32, vals[j]);
                }
            }
        }
    }
}
