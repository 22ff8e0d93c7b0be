//! The screen's kernel and state: each row's largest approximate values ([`KeptValues`]) with the threshold
//! they set, how early that threshold may rise ([`safe_rank`]), and the AVX2 loop that computes the integer
//! products tile by tile (49 products a quarter of the depth deep per unit of 4 × 4 tiles, see
//! [`super::strassen`]) and offers the values that beat their row's threshold.

use super::strassen::{self, combine_unit, SPLIT, UNIT_PRODUCTS};
use super::{QuantizedEncoder, QuantizedRows, PANEL_LATENTS, TILE_LATENTS, TILE_ROWS, UNIT_ROWS};

/// Each row's largest approximate values: a buffer of up to `2·kept` (value, latent) pairs and a threshold that
/// everything dropped so far lies at or below. When a buffer fills, its `rank` largest stay (`kept` at the end of
/// a row, fewer before: see [`safe_rank`]) and the threshold rises to the smallest of them, so a value costs
/// O(1) on average.
pub(super) struct KeptValues {
    kept: usize,
    pairs: Vec<(f32, u32)>,
    len: Vec<usize>,
    /// −∞ until a row first drops something.
    pub(super) threshold: Vec<f32>,
}

impl KeptValues {
    pub(super) fn new(rows: usize, kept: usize) -> KeptValues {
        KeptValues {
            kept,
            pairs: vec![(0.0, 0); rows * 2 * kept],
            len: vec![0; rows],
            threshold: vec![f32::NEG_INFINITY; rows],
        }
    }

    #[inline]
    fn offer(&mut self, r: usize, latent: u32, v: f32, rank: usize) {
        if v <= self.threshold[r] {
            return;
        }
        self.pairs[r * 2 * self.kept + self.len[r]] = (v, latent);
        self.len[r] += 1;
        if self.len[r] == 2 * self.kept {
            self.shrink(r, rank);
        }
    }

    /// Keeps row r's `rank` largest values (if it holds more); the threshold becomes the smallest of them.
    fn shrink(&mut self, r: usize, rank: usize) {
        if self.len[r] <= rank {
            return;
        }
        let row = &mut self.pairs[r * 2 * self.kept..][..self.len[r]];
        row.select_nth_unstable_by(rank - 1, |a, b| b.0.total_cmp(&a.0));
        self.len[r] = rank;
        self.threshold[r] = row[rank - 1].0;
    }

    pub(super) fn row_mut(&mut self, r: usize) -> &mut [(f32, u32)] {
        &mut self.pairs[r * 2 * self.kept..][..self.len[r]]
    }
}

/// How many of a row's largest approximate values to keep once `seen` of its `latents` values are screened, so
/// that the threshold rises early rather than only as the buffer fills. The final threshold must stay below
/// the row's `kept`-th largest value overall (else the row goes the plain route); keeping the `R` largest of
/// the first `seen` passes that value only if `R` of the overall `kept` largest are among them. The latents'
/// order carries no information about a row's values, so that count is hypergeometric with mean
/// λ = kept·seen/latents; R is the smallest with P(Poisson(λ) ≥ R) ≤ 10⁻⁶ (the Poisson tail bounds the
/// hypergeometric one), and never more than `kept`. Exactness does not rest on this: `pick_candidates` checks the
/// threshold all the same.
pub(super) fn safe_rank(seen: usize, latents: usize, kept: usize) -> usize {
    let lambda = kept as f64 * seen.min(latents) as f64 / latents.max(1) as f64;
    let (mut term, mut below) = ((-lambda).exp(), 0.0);
    for r in 1..kept {
        // `below` = P(X ≤ r − 1) after adding the term for r − 1.
        below += term;
        if 1.0 - below <= 1e-6 {
            return r;
        }
        term *= lambda / r as f64;
    }
    kept
}

/// Latents screened after which every row of a block is shrunk to its [`safe_rank`]: early and geometrically
/// spaced, when the thresholds have most to gain. On 4096 rows of the README cache at 18,432 latents, values
/// offered per row fell from 816 to 334 and buffer selections from 7.0 to 4.8.
const TIGHTEN_AT: [usize; 4] = [64, 256, 1024, 4096];

/// Screens a block's rows against every latent, offering each value that beats its row's threshold to `top`.
/// For each panel, every product of every unit of rows first (each right operand stays in cache for all of
/// them), then each unit's tiles combined and offered. A row meets its latents in ascending order, as the
/// 16-latent tiles' `ranks` assume.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn block_avx2(
    x: &QuantizedRows,
    w: &QuantizedEncoder,
    bias: &[f32],
    ranks: &[usize],
    top: &mut KeptValues,
) {
    use std::arch::x86_64::*;
    let part = x.part_pairs;
    let (left_len, right_len) = (part * 2 * TILE_ROWS, part * 2 * TILE_LATENTS);
    let units = x.operands.len() / (UNIT_PRODUCTS * left_len);
    let mut products = vec![[[0i32; TILE_LATENTS]; TILE_ROWS]; units * UNIT_PRODUCTS];
    for (p, right) in w
        .operands
        .chunks_exact(UNIT_PRODUCTS * right_len)
        .enumerate()
    {
        for (i, b) in right.chunks_exact(right_len).enumerate() {
            for (unit, left) in x.operands[i * units * left_len..][..units * left_len]
                .chunks_exact(left_len)
                .enumerate()
            {
                let c = tile_product(left.as_ptr(), b.as_ptr(), part);
                let out = &mut products[unit * UNIT_PRODUCTS + i];
                for (o, cr) in out.iter_mut().zip(&c) {
                    _mm256_storeu_si256(o.as_mut_ptr() as *mut __m256i, cr[0]);
                    _mm256_storeu_si256(o.as_mut_ptr().add(8) as *mut __m256i, cr[1]);
                }
            }
        }
        let cols: [TileColumns; SPLIT] = std::array::from_fn(|t| {
            let tile = SPLIT * p + t;
            let col0 = tile * TILE_LATENTS;
            TileColumns {
                col0,
                mask: (1u32 << TILE_LATENTS.min(w.latents.saturating_sub(col0))) - 1,
                rank: ranks[tile],
                inv_scale: w.inv_scale[col0..][..TILE_LATENTS].try_into().unwrap(),
                bias: bias[col0..][..TILE_LATENTS].try_into().unwrap(),
            }
        });
        for (unit, m) in products.chunks_exact(UNIT_PRODUCTS).enumerate() {
            screen_unit(x, m.try_into().unwrap(), unit * UNIT_ROWS, &cols, top);
        }
        let seen = ((p + 1) * PANEL_LATENTS).min(w.latents);
        if TIGHTEN_AT.contains(&seen) {
            (0..x.rows).for_each(|r| top.shrink(r, ranks[SPLIT * p + SPLIT - 1]));
        }
    }
}

/// One product of a row tile's operand (`left`) and a latent tile's (`right`), `pairs` pairs of input positions
/// deep, in i32 that wrap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_product(
    left: *const i16,
    right: *const i16,
    pairs: usize,
) -> [[std::arch::x86_64::__m256i; 2]; TILE_ROWS] {
    use std::arch::x86_64::*;
    let b = right as *const __m256i;
    let a = left as *const i32;
    let mut c = [[_mm256_setzero_si256(); 2]; TILE_ROWS];
    for q in 0..pairs {
        let b0 = _mm256_loadu_si256(b.add(2 * q));
        let b1 = _mm256_loadu_si256(b.add(2 * q + 1));
        for (r, cr) in c.iter_mut().enumerate() {
            let av = _mm256_set1_epi32(a.add(q * TILE_ROWS + r).read_unaligned());
            cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(av, b0));
            cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(av, b1));
        }
    }
    c
}

/// What the screen needs of one tile of 16 latents.
#[cfg(target_arch = "x86_64")]
struct TileColumns {
    col0: usize,
    /// The latents that exist (a partial last tile has fewer).
    mask: u32,
    rank: usize,
    /// 1 / scale and b_enc of its latents.
    inv_scale: [f32; TILE_LATENTS],
    bias: [f32; TILE_LATENTS],
}

/// i32 lanes that wrap, for [`combine_unit`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Lanes(std::arch::x86_64::__m256i);

#[cfg(target_arch = "x86_64")]
impl strassen::Wrapping for Lanes {
    #[inline(always)]
    fn plus(self, o: Lanes) -> Lanes {
        // SAFETY: only used inside the kernel, which runs where AVX2 is available.
        Lanes(unsafe { std::arch::x86_64::_mm256_add_epi32(self.0, o.0) })
    }
    #[inline(always)]
    fn minus(self, o: Lanes) -> Lanes {
        // SAFETY: as above.
        Lanes(unsafe { std::arch::x86_64::_mm256_sub_epi32(self.0, o.0) })
    }
}

/// Combines the products `m` of the unit of rows from `first_row` into its tiles of values (scales and b_enc
/// applied) and offers those that beat their row's threshold. Every value's mask first, then one branch for
/// the unit: once thresholds have risen, most units offer nothing.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn screen_unit(
    x: &QuantizedRows,
    m: &[[[i32; TILE_LATENTS]; TILE_ROWS]; UNIT_PRODUCTS],
    first_row: usize,
    cols: &[TileColumns; SPLIT],
    top: &mut KeptValues,
) {
    use std::arch::x86_64::*;
    let lanes = |v: &[f32; TILE_LATENTS]| [0, 8].map(|h| _mm256_loadu_ps(v.as_ptr().add(h)));
    let (inv_scale, bias) = (
        cols.each_ref().map(|c| lanes(&c.inv_scale)),
        cols.each_ref().map(|c| lanes(&c.bias)),
    );
    // above[t][u][r]: the mask of row r of row tile t against latent tile u; values[t][u][r], its values.
    let mut above = [[[0u32; TILE_ROWS]; SPLIT]; SPLIT];
    let mut values = [[[[0f32; TILE_LATENTS]; TILE_ROWS]; SPLIT]; SPLIT];
    for r in 0..TILE_ROWS {
        if first_row + r >= x.rows {
            break;
        }
        // A row past the end gets threshold +∞, so none of its values is offered.
        let row_scale_threshold: [(__m256, __m256); SPLIT] = std::array::from_fn(|t| {
            let row = first_row + t * TILE_ROWS + r;
            if row < x.rows {
                (
                    _mm256_set1_ps(x.inv_scale[row]),
                    _mm256_set1_ps(top.threshold[row]),
                )
            } else {
                (_mm256_setzero_ps(), _mm256_set1_ps(f32::INFINITY))
            }
        });
        for h in 0..2 {
            let c = combine_unit(&std::array::from_fn(|i| {
                Lanes(_mm256_loadu_si256(
                    m[i][r].as_ptr().add(8 * h) as *const __m256i
                ))
            }));
            for (t, (s, threshold)) in row_scale_threshold.into_iter().enumerate() {
                for u in 0..SPLIT {
                    let v = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(c[t][u].0),
                        _mm256_mul_ps(inv_scale[u][h], s),
                        bias[u][h],
                    );
                    above[t][u][r] |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, threshold))
                        as u32)
                        << (8 * h);
                    _mm256_storeu_ps(values[t][u][r].as_mut_ptr().add(8 * h), v);
                }
            }
        }
    }
    if above.iter().flatten().flatten().fold(0, |a, &b| a | b) == 0 {
        return;
    }
    // Each row's latents in ascending order: its tiles left to right.
    for (t, (above, values)) in above.iter().zip(&values).enumerate() {
        for ((above, values), col) in above.iter().zip(values).zip(cols) {
            for (r, (&offered, values)) in above.iter().zip(values).enumerate() {
                let mut offered = offered & col.mask;
                while offered != 0 {
                    let j = offered.trailing_zeros() as usize;
                    offered &= offered - 1;
                    top.offer(
                        first_row + t * TILE_ROWS + r,
                        (col.col0 + j) as u32,
                        values[j],
                        col.rank,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_rank;

    /// P(X ≥ r) for X hypergeometric: `kept` marked among `latents`, `seen` drawn; in f64 from log-factorials
    /// (`ln_fact[n]` = ln n!).
    fn hypergeometric_tail(
        ln_fact: &[f64],
        latents: usize,
        kept: usize,
        seen: usize,
        r: usize,
    ) -> f64 {
        let ln_choose = |n: usize, k: usize| ln_fact[n] - ln_fact[k] - ln_fact[n - k];
        (r..=kept.min(seen))
            .map(|x| {
                (ln_choose(kept, x) + ln_choose(latents - kept, seen - x)
                    - ln_choose(latents, seen))
                .exp()
            })
            .sum()
    }

    #[test]
    fn safe_rank_bounds_the_chance_of_passing_the_kept_largest() {
        let ln_fact: Vec<f64> = std::iter::once(0.0)
            .chain((1..=18432).scan(0.0, |acc, i| {
                *acc += (i as f64).ln();
                Some(*acc)
            }))
            .collect();
        for (latents, kept) in [(18432, 96), (4608, 96), (1000, 40)] {
            let mut last = 0;
            for seen in (16..=latents).step_by(16).chain([latents]) {
                let r = safe_rank(seen, latents, kept);
                assert!(
                    r >= last && r <= kept,
                    "{latents} {kept} {seen}: {r} after {last}"
                );
                last = r;
                if r < kept {
                    let p = hypergeometric_tail(&ln_fact, latents, kept, seen, r);
                    assert!(p <= 1e-6, "{latents} {kept} {seen}: rank {r}, P = {p:e}");
                }
            }
            assert_eq!(safe_rank(latents, latents, kept), kept);
        }
        // Early on, it keeps far fewer than `kept`: the point of it.
        assert!(safe_rank(64, 18432, 96) <= 8);
        assert!(safe_rank(4096, 18432, 96) < 60);
    }
}
