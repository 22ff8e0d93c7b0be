//! The encoder's dense product fused with its TopK on the CPU (x86-64 with AVX2 and FMA), screened in 16-bit
//! integers and finished in f32.
//!
//! The product `x'·W_encᵀ` is first computed approximately: x' rows and W_enc rows are rounded to integers of
//! 11 and 10 bits (for d_in = 576; fewer as d_in grows, so that no i32 sum can overflow) and multiplied with
//! `vpmaddwd`, which does twice the multiply-adds of an f32 FMA per instruction. The integer product is formed
//! with two levels of Strassen's scheme ([`strassen`]): each unit of 4 × 6 rows against each panel of 4 × 16
//! latents takes 49 tile products a quarter of the depth deep instead of 64, exact in integers. A unit's products
//! are combined into its 16 tiles right away; scales and b_enc are applied there, and a value goes further only
//! when it beats its row's threshold (a value the row has already beaten a few times, raised as its latents are
//! screened: see `safe_rank`). So the `rows × latents` matrix (300 MB at batch 4096 and 18,432 latents) is never
//! written, and selection costs about one compare per value ([`screen`]).
//!
//! The rounding error of every approximate value is bounded (`ε`, per row, from the scales and L1 norms, plus
//! f32 rounding). A latent can be among the exact top k only if its approximate value is at least
//! `A_k − 2ε`, where `A_k` is the row's k-th largest approximate value. Those candidates are recomputed in f32,
//! the candidates of all rows grouped by latent so that W_enc is read once in order, and the top k of each
//! row's taken (ties to the lower latent, as [`crate::topk::topk_relu`]). A row is sent to
//! the plain route (dense f32 product, then `topk_relu`) when this cannot be shown exact: more candidates than
//! were kept, an exact k-th value that may be ≤ 0 (ReLU ties), or a non-finite input. The result is then
//! the exact TopK of the f32 values, whichever route a row took.
//!
//! The rounded W_enc ([`QuantizedEncoder`]) is a copy, kept as Strassen's operands: training rounds each panel
//! of 64 latents again right after Adam updates it ([`PanelSlot::round`]); a fixed coder (eval, interp) rounds it
//! once.

mod screen;
mod strassen;

use crate::topk::{group_by_latent, topk_relu};
use compute::cpu::{dot, fetch_ahead, linear, prefetch};
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use screen::block_avx2;
use screen::{safe_rank, KeptValues};
use strassen::{operands, Side, SPLIT, UNIT_PRODUCTS};

/// Rows and latents of one register tile.
const TILE_ROWS: usize = 6;
const TILE_LATENTS: usize = 16;
/// Strassen's unit (see [`strassen`]): `SPLIT` row tiles against a panel of `SPLIT` latent tiles.
const UNIT_ROWS: usize = SPLIT * TILE_ROWS;
const PANEL_LATENTS: usize = SPLIT * TILE_LATENTS;
/// Rows per task: W_enc's operands (3× W_enc at two levels) stream from memory once per task, the rows'
/// operands (1.8 MB at 576 rows) from L3. In-process A/B runs: 576 ahead of 96–384 and of 1024.
const BLOCK_ROWS: usize = 576;
/// Approximate values kept per row beyond k, so that the candidates of a row are all kept: with 32, 1–2 % of
/// the rows of a training step had more candidates than that and took the plain route; with 64, 2 rows in 6 steps
/// (0–7 rows of 4096 per step, once thresholds are raised early by `safe_rank`).
const EXTRA_KEPT: usize = 64;
/// Latents per task of the exact recomputation: enough tasks to balance the threads, each reading a run of
/// W_enc in order.
const EXACT_CHUNK: usize = 64;

/// Whether this CPU runs the fused kernel.
pub fn available() -> bool {
    compute::cpu::features::avx2_fma()
}

/// Bits (magnitude, sign excluded) of the rounded inputs and weights for `d_in` products per sum: their
/// products summed over the padded depth stay below 2³¹, and each is at most 15 − LEVELS, so that Strassen's
/// operands (sums of up to `SPLIT` values) fit an i16.
fn integer_bits(d_in: usize) -> (u32, u32) {
    let depth = d_in.next_multiple_of(2).max(2);
    let total = 31 - depth.next_power_of_two().trailing_zeros();
    let most = 15 - strassen::LEVELS;
    let input_bits = total.div_ceil(2).min(most);
    (input_bits, (total - input_bits).min(most))
}

/// Writes the rounded values `ints` of the `slot`-th row (or latent) of a unit into `tiles`, the unit's tiles of
/// `lanes` rows (or latents) each over `pairs` pairs of input positions, laid out `[tile][pair][lane][2]` as
/// Strassen's operands are. Positions past `ints` (padding) are left as they are.
fn place_in_tiles(tiles: &mut [i16], pairs: usize, lanes: usize, slot: usize, ints: &[i16]) {
    let (tile, lane) = (slot / lanes, slot % lanes);
    let tile = &mut tiles[tile * pairs * 2 * lanes..][..pairs * 2 * lanes];
    for (i, &v) in ints.iter().enumerate() {
        tile[(i / 2) * 2 * lanes + lane * 2 + i % 2] = v;
    }
}

/// Pairs of input positions in each of the `SPLIT` parts of the depth: `d_in` padded to whole pairs, then to
/// equal parts.
fn part_pairs(d_in: usize) -> usize {
    d_in.div_ceil(2).div_ceil(SPLIT)
}

/// W_enc `[latents × d_in]` rounded to integers per latent and rearranged for the kernel, with what the error
/// bound needs. It is a copy: whoever changes W_enc rounds the changed rows again ([`PanelSlot::round`]), as
/// training does in its Adam pass, or makes a new one.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedEncoder {
    d_in: usize,
    latents: usize,
    part_pairs: usize,
    /// For each panel of 64 latents, Strassen's right operands one after another (see [`strassen::operands`]),
    /// each holding, for each pair of input positions of a part, its 16 latents' two values.
    operands: Vec<i16>,
    /// 1 / scale of each latent, padded with zeros to whole panels.
    inv_scale: Vec<f32>,
    /// Each panel's share of the bounds below.
    panel_bounds: Vec<Bounds>,
    all: Bounds,
}

/// What the error bound needs of W_enc, over some of its latents.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bounds {
    /// max over latents of 1/scale, and of ‖ŵ_j‖₁/scale_j: the error bound's two terms.
    max_inv_scale: f64,
    max_l1_over_scale: f64,
    /// max |w|, for the f32 rounding slack.
    max_abs: f64,
    finite: bool,
}

impl Bounds {
    const NONE: Bounds = Bounds {
        max_inv_scale: 0.0,
        max_l1_over_scale: 0.0,
        max_abs: 0.0,
        finite: true,
    };

    fn join(self, o: Bounds) -> Bounds {
        Bounds {
            max_inv_scale: self.max_inv_scale.max(o.max_inv_scale),
            max_l1_over_scale: self.max_l1_over_scale.max(o.max_l1_over_scale),
            max_abs: self.max_abs.max(o.max_abs),
            finite: self.finite && o.finite,
        }
    }
}

/// One panel of a [`QuantizedEncoder`]: the rounded weights of 64 latents (fewer in the last panel).
pub struct PanelSlot<'q> {
    d_in: usize,
    operands: &'q mut [i16],
    inv_scale: &'q mut [f32],
    bounds: &'q mut Bounds,
}

impl PanelSlot<'_> {
    /// Rounds the panel's latents from their W_enc rows (`rows`: `latents_in_panel × d_in`).
    pub fn round(&mut self, rows: &[f32]) {
        let d_in = self.d_in;
        assert!(rows.len().is_multiple_of(d_in) && rows.len() / d_in <= PANEL_LATENTS);
        let top = ((1u32 << integer_bits(d_in).1) - 1) as f32;
        let pairs = part_pairs(d_in) * SPLIT;
        // The panel's tiles over the whole depth, laid out as the operands; padding stays 0.
        let mut tiles = vec![0i16; SPLIT * pairs * 2 * TILE_LATENTS];
        let mut q = vec![0i16; d_in];
        let mut bounds = Bounds::NONE;
        for (j, row) in rows.chunks_exact(d_in).enumerate() {
            let rounded = round_row(row, top, &mut q);
            place_in_tiles(&mut tiles, pairs, TILE_LATENTS, j, &q);
            self.inv_scale[j] = 1.0 / rounded.scale;
            let inv = 1.0 / rounded.scale as f64;
            bounds = bounds.join(Bounds {
                max_inv_scale: inv,
                max_l1_over_scale: rounded.l1_ints as f64 * inv,
                max_abs: rounded.max as f64,
                finite: rounded.finite,
            });
        }
        let lane_len = 2 * TILE_LATENTS;
        operands(
            Side::Right,
            &tiles,
            SPLIT,
            pairs,
            lane_len,
            strassen::LEVELS,
            self.operands,
        );
        *self.bounds = bounds;
    }
}

impl QuantizedEncoder {
    /// Panics unless [`available`].
    pub fn new(w_enc: &[f32], latents: usize, d_in: usize) -> QuantizedEncoder {
        assert!(available(), "the fused encoder needs AVX2 and FMA");
        assert_eq!(w_enc.len(), latents * d_in);
        let n_panels = latents.div_ceil(PANEL_LATENTS);
        let part_pairs = part_pairs(d_in);
        let mut q = QuantizedEncoder {
            d_in,
            latents,
            part_pairs,
            operands: crate::huge_pages::zeros(
                n_panels * UNIT_PRODUCTS * part_pairs * 2 * TILE_LATENTS,
            ),
            inv_scale: vec![0.0; n_panels * PANEL_LATENTS],
            panel_bounds: vec![Bounds::NONE; n_panels],
            all: Bounds::NONE,
        };
        q.slots()
            .into_par_iter()
            .zip(w_enc.par_chunks(PANEL_LATENTS * d_in))
            .for_each(|(mut slot, rows)| slot.round(rows));
        q.join_bounds();
        q
    }

    /// Latents per panel: W_enc in chunks of `rows_per_panel() × d_in` values meets [`QuantizedEncoder::slots`].
    pub const fn rows_per_panel() -> usize {
        PANEL_LATENTS
    }

    /// The panels, in order, to round again after their W_enc rows changed; then [`QuantizedEncoder::join_bounds`].
    pub fn slots(&mut self) -> Vec<PanelSlot<'_>> {
        let d_in = self.d_in;
        self.operands
            .chunks_mut(UNIT_PRODUCTS * self.part_pairs * 2 * TILE_LATENTS)
            .zip(self.inv_scale.chunks_mut(PANEL_LATENTS))
            .zip(self.panel_bounds.iter_mut())
            .map(|((operands, inv_scale), bounds)| PanelSlot {
                d_in,
                operands,
                inv_scale,
                bounds,
            })
            .collect()
    }

    /// Folds the panels' bounds after [`PanelSlot::round`].
    pub fn join_bounds(&mut self) {
        self.all = self
            .panel_bounds
            .iter()
            .fold(Bounds::NONE, |a, &b| a.join(b));
    }
}

/// How the rows of one call were encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScreenStats {
    pub rows: usize,
    /// Rows that went the plain route.
    pub plain_rows: usize,
    /// Latents recomputed in f32, over the screened rows.
    pub candidates: usize,
}

/// For each row of `xc [rows × d_in]`, the `k` largest ReLU(xc·W_encᵀ + b_enc) and their latents (no particular
/// order), into `acts` and `idx` (`rows × k`). Panics unless [`available`].
#[allow(clippy::too_many_arguments)]
pub fn encode_topk(
    xc: &[f32],
    rows: usize,
    w: &QuantizedEncoder,
    w_enc: &[f32],
    b_enc: &[f32],
    k: usize,
    acts: &mut [f32],
    idx: &mut [u32],
) -> ScreenStats {
    let (d_in, latents) = (w.d_in, w.latents);
    assert!(available(), "the fused encoder needs AVX2 and FMA");
    assert!(k >= 1 && k <= latents && b_enc.len() == latents && w_enc.len() == latents * d_in);
    assert!(xc.len() == rows * d_in && acts.len() == rows * k && idx.len() == rows * k);
    let kept = (k + EXTRA_KEPT).min(latents);
    // Each latent tile's [`safe_rank`], the same for every block.
    let ranks: Vec<usize> = (0..w.inv_scale.len() / TILE_LATENTS)
        .map(|t| safe_rank(((t + 1) * TILE_LATENTS).min(latents), latents, kept))
        .collect();
    // b_enc padded to whole tiles, so the kernel loads it as it loads the weights.
    let mut bias = b_enc.to_vec();
    bias.resize(w.inv_scale.len(), 0.0);
    let max_bias = b_enc.iter().fold(0f64, |m, b| m.max(b.abs() as f64));
    let screen = w.all.finite && b_enc.iter().all(|b| b.is_finite());
    // Screen each block of rows and pick each row's candidates (or send it the plain route).
    let picked: Vec<Candidates> = blocks(rows)
        .into_par_iter()
        .map(|(first_row, end_row)| {
            let x_block = &xc[first_row * d_in..end_row * d_in];
            let n = end_row - first_row;
            let inputs = QuantizedRows::new(x_block, d_in);
            let mut top = KeptValues::new(n, kept);
            if screen {
                // SAFETY: `available()` was checked above; the kernel reads within `inputs`, `w.operands`,
                // `w.inv_scale` and `bias`, whose lengths match the tiles it walks.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    block_avx2(&inputs, w, &bias, &ranks, &mut top)
                };
            }
            let mut picked = Candidates::default();
            for r in 0..n {
                let slack = (d_in as f64 + 8.0)
                    * f32::EPSILON as f64
                    * (inputs.l1[r] * w.all.max_abs + max_bias);
                let eps = 1.01
                    * (0.5 * inputs.l1[r] * w.all.max_inv_scale
                        + 0.5 * inputs.inv_scale[r] as f64 * w.all.max_l1_over_scale)
                    + slack;
                let dropped_below = top.threshold[r];
                let done = screen
                    && inputs.finite[r]
                    && pick_candidates(top.row_mut(r), dropped_below, eps, k, &mut picked.latents);
                if !done {
                    picked.plain.push(first_row + r);
                }
                picked.ends.push(picked.latents.len());
            }
            picked
        })
        .collect();
    // All blocks' candidates, row by row; a row with none went the plain route.
    let mut cand_latents = Vec::with_capacity(picked.iter().map(|p| p.latents.len()).sum());
    let (mut row_start, mut plain) = (vec![0usize], Vec::new());
    for p in picked {
        let base = cand_latents.len();
        row_start.extend(p.ends.iter().map(|e| base + e));
        cand_latents.extend(p.latents);
        plain.extend(p.plain);
    }
    let exact = exact_values(xc, d_in, w_enc, b_enc, &cand_latents, &row_start);
    acts.par_chunks_mut(k)
        .zip(idx.par_chunks_mut(k))
        .enumerate()
        .for_each_init(Vec::new, |sorted, (r, (a, ix))| {
            let range = row_start[r]..row_start[r + 1];
            if range.is_empty() {
                return;
            }
            sorted.clear();
            sorted.extend(
                exact[range.clone()]
                    .iter()
                    .copied()
                    .zip(cand_latents[range].iter().copied()),
            );
            sorted.sort_unstable_by(|a: &(f32, u32), b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (j, &(v, l)) in sorted.iter().take(k).enumerate() {
                a[j] = v;
                ix[j] = l;
            }
        });
    // The undecided rows of all blocks together, so W_enc is read once for them.
    if !plain.is_empty() {
        let x: Vec<f32> = plain
            .iter()
            .flat_map(|&r| xc[r * d_in..][..d_in].iter().copied())
            .collect();
        let pre = linear(&x, plain.len(), d_in, w_enc, latents);
        let (mut a, mut ix) = (vec![0f32; plain.len() * k], vec![0u32; plain.len() * k]);
        topk_relu(&pre, b_enc, latents, k, &mut a, &mut ix);
        for (p, &r) in plain.iter().enumerate() {
            acts[r * k..][..k].copy_from_slice(&a[p * k..][..k]);
            idx[r * k..][..k].copy_from_slice(&ix[p * k..][..k]);
        }
    }
    ScreenStats {
        rows,
        plain_rows: plain.len(),
        candidates: cand_latents.len(),
    }
}

/// One block's screening result: each row's candidate latents (flat; row `r` ends at `ends[r]`) and the rows
/// (of the whole call) that go the plain route.
#[derive(Default)]
struct Candidates {
    latents: Vec<u32>,
    ends: Vec<usize>,
    plain: Vec<usize>,
}

/// The rows as `(first, end)` blocks of about [`BLOCK_ROWS`] rows, whole units each: as many as a multiple of
/// the threads, and of sizes that differ by at most one unit, so that no thread is left waiting for another at
/// the end.
fn blocks(rows: usize) -> Vec<(usize, usize)> {
    let units = rows.div_ceil(UNIT_ROWS);
    let threads = rayon::current_num_threads().max(1);
    let n = units
        .div_ceil(BLOCK_ROWS / UNIT_ROWS)
        .next_multiple_of(threads)
        .min(units.max(1));
    (0..n)
        .map(|b| {
            (
                (b * units / n * UNIT_ROWS).min(rows),
                ((b + 1) * units / n * UNIT_ROWS).min(rows),
            )
        })
        .collect()
}

/// One screened row's candidates: pushes onto `out` every latent of `approx` (value, latent; reordered here)
/// that may be among the row's exact top `k`, when `approx` provably holds them all (`dropped_below`: no latent
/// left out has an approximate value above it) and the k-th exact value is above 0 (no ReLU ties). Returns
/// whether it did; otherwise the row goes the plain route.
fn pick_candidates(
    approx: &mut [(f32, u32)],
    dropped_below: f32,
    eps: f64,
    k: usize,
    out: &mut Vec<u32>,
) -> bool {
    if approx.len() < k {
        return false;
    }
    let a_k = approx
        .select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0))
        .1
         .0 as f64;
    let threshold = a_k - 2.0 * eps;
    if dropped_below as f64 >= threshold || a_k - eps <= 0.0 {
        return false;
    }
    out.extend(
        approx
            .iter()
            .filter(|c| c.0 as f64 >= threshold)
            .map(|c| c.1),
    );
    true
}

/// The f32 value `x_r·W_enc[l] + b_enc[l]` of every candidate (row `r` holds `cand_latents[row_start[r]..
/// row_start[r + 1]]`), in candidate order. Computed latent by latent, so W_enc is read once in order rather
/// than one scattered row per candidate; the rows of x, which stay in cache, are the ones gathered.
fn exact_values(
    xc: &[f32],
    d_in: usize,
    w_enc: &[f32],
    b_enc: &[f32],
    cand_latents: &[u32],
    row_start: &[usize],
) -> Vec<f32> {
    let cand_row: Vec<u32> = row_start
        .windows(2)
        .enumerate()
        .flat_map(|(r, w)| std::iter::repeat_n(r as u32, w[1] - w[0]))
        .collect();
    let latents = b_enc.len();
    let (order, starts) = group_by_latent(cand_latents, latents);
    let x_of = |c: u32| &xc[cand_row[c as usize] as usize * d_in..][..d_in];
    let parts: Vec<Vec<f32>> = (0..latents.div_ceil(EXACT_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let (first, end) = (
                chunk * EXACT_CHUNK,
                ((chunk + 1) * EXACT_CHUNK).min(latents),
            );
            let mut values = Vec::with_capacity(starts[end] - starts[first]);
            for l in first..end {
                let w = &w_enc[l * d_in..][..d_in];
                let mine = &order[starts[l]..starts[l + 1]];
                for (i, &c) in mine.iter().enumerate() {
                    fetch_ahead(mine, i, |next| prefetch(x_of(next)));
                    values.push(dot(x_of(c), w) + b_enc[l]);
                }
            }
            values
        })
        .collect();
    let mut exact = vec![0f32; cand_latents.len()];
    for (&c, v) in order.iter().zip(parts.iter().flatten()) {
        exact[c as usize] = *v;
    }
    exact
}

/// How a row was rounded to integers by [`round_row`].
struct RoundedRow {
    scale: f32,
    /// max |v|.
    max: f32,
    finite: bool,
    /// Σ |rounded|.
    l1_ints: u64,
}

/// Rounds `row` to integers of magnitude ≤ `top` into `out`: `out[i]` = `row[i]·scale` to the nearest integer,
/// with `scale` = top / max |row|. A non-finite or all-zero row gets scale 1 and, if non-finite, all zeros.
/// Only called where `available()` holds (`QuantizedEncoder::new` asserts it, `encode_topk` checks it first).
fn round_row(row: &[f32], top: f32, out: &mut [i16]) -> RoundedRow {
    // SAFETY: see above: the CPU runs AVX2 and FMA.
    let (max, finite) = unsafe { max_abs(row) };
    let scale = if max > 0.0 && finite { top / max } else { 1.0 };
    let l1_ints = if finite {
        // SAFETY: as above; `top` < 2¹⁵, so every rounded value fits an i16.
        unsafe { round_scaled(row, scale, out) }
    } else {
        out.fill(0);
        0
    };
    RoundedRow {
        scale,
        max,
        finite,
        l1_ints,
    }
}

/// max |v| and whether every value is finite.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn max_abs(v: &[f32]) -> (f32, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let whole = v.len() / 8 * 8;
        let (abs_mask, inf) = (
            _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)),
            _mm256_set1_ps(f32::INFINITY),
        );
        let (mut max, mut finite) = (
            _mm256_setzero_ps(),
            _mm256_castsi256_ps(_mm256_set1_epi32(-1)),
        );
        for i in (0..whole).step_by(8) {
            let a = _mm256_and_ps(_mm256_loadu_ps(v.as_ptr().add(i)), abs_mask);
            // NaN compares false, so it clears `finite` as ±∞ does.
            finite = _mm256_and_ps(finite, _mm256_cmp_ps::<_CMP_LT_OQ>(a, inf));
            max = _mm256_max_ps(max, a);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), max);
        let tail = &v[whole..];
        let m = lanes.iter().chain(tail).fold(0f32, |m, x| m.max(x.abs()));
        let all = _mm256_movemask_ps(finite) == 0xff && tail.iter().all(|x| x.is_finite());
        (m, all)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the fused encoder runs on x86-64 only")
}

/// `out[i]` = `v[i]·scale` rounded to the nearest integer (ties to even), so within 0.5 of it; returns Σ |out[i]|.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn round_scaled(v: &[f32], scale: f32, out: &mut [i16]) -> u64 {
    let round = |x: f32| (x * scale).round_ties_even() as i16;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        assert!(out.len() >= v.len());
        let whole = v.len() / 8 * 8;
        let s = _mm256_set1_ps(scale);
        let mut l1 = _mm256_setzero_si256();
        for i in (0..whole).step_by(8) {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(_mm256_loadu_ps(v.as_ptr().add(i)), s),
            );
            // Whole numbers already: the truncating conversion is exact.
            let q = _mm256_cvttps_epi32(r);
            l1 = _mm256_add_epi32(l1, _mm256_abs_epi32(q));
            let packed =
                _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, packed);
        }
        let mut lanes = [0i32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, l1);
        let mut total: u64 = lanes.iter().map(|&l| l as u64).sum();
        for (o, &x) in out[whole..v.len()].iter_mut().zip(&v[whole..]) {
            *o = round(x);
            total += o.unsigned_abs() as u64;
        }
        total
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the fused encoder runs on x86-64 only")
}

/// A block's rows rounded to integers, with each row's 1/scale, L1 norm and finiteness. Strassen's left
/// operands, each for every unit of rows in turn (so that a product streams through memory in order), each
/// holding, for each pair of input positions of a part, its 6 rows' two values (read as one i32).
struct QuantizedRows {
    operands: Vec<i16>,
    part_pairs: usize,
    rows: usize,
    inv_scale: Vec<f32>,
    l1: Vec<f64>,
    finite: Vec<bool>,
}

impl QuantizedRows {
    fn new(x_block: &[f32], d_in: usize) -> QuantizedRows {
        let rows = x_block.len() / d_in;
        let part_pairs = part_pairs(d_in);
        let (pairs, lane_len) = (part_pairs * SPLIT, 2 * TILE_ROWS);
        let operand_len = part_pairs * lane_len;
        let top = ((1u32 << integer_bits(d_in).0) - 1) as f32;
        let units = rows.div_ceil(UNIT_ROWS);
        let mut q = QuantizedRows {
            operands: vec![0; units * UNIT_PRODUCTS * operand_len],
            part_pairs,
            rows,
            inv_scale: vec![0.0; rows],
            l1: vec![0.0; rows],
            finite: vec![true; rows],
        };
        let mut ints = vec![0i16; d_in];
        // A unit's tiles over the whole depth, laid out as the operands (padding stays 0), and its operands.
        let mut tiles = vec![0i16; SPLIT * pairs * lane_len];
        let mut unit_operands = vec![0; UNIT_PRODUCTS * operand_len];
        for unit in 0..units {
            tiles.fill(0);
            for r in unit * UNIT_ROWS..((unit + 1) * UNIT_ROWS).min(rows) {
                let row = &x_block[r * d_in..][..d_in];
                let rounded = round_row(row, top, &mut ints);
                q.finite[r] = rounded.finite;
                q.inv_scale[r] = 1.0 / rounded.scale;
                q.l1[r] = row.iter().map(|v| v.abs() as f64).sum();
                place_in_tiles(&mut tiles, pairs, TILE_ROWS, r % UNIT_ROWS, &ints);
            }
            operands(
                Side::Left,
                &tiles,
                SPLIT,
                pairs,
                lane_len,
                strassen::LEVELS,
                &mut unit_operands,
            );
            for (i, operand) in unit_operands.chunks_exact(operand_len).enumerate() {
                q.operands[(i * units + unit) * operand_len..][..operand_len]
                    .copy_from_slice(operand);
            }
        }
        q
    }
}
