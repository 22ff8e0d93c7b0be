//! Statistics of a coder's predictions and activations over the held-out shards of the cache.

use anyhow::Result;
use cache_format::{Cache, Side};
use std::collections::BTreeMap;
use trainer::checkpoint::CoderMeta;
use trainer::coder::{Encoder, SparseCoder};
use trainer::heldout::FvuSums;
use trainer::regression::AffineMap;

/// One coder on the held-out rows.
pub struct ActivationStats {
    /// Σ error² / Σ (y − mean y)², over all held-out rows.
    pub fvu: f64,
    /// Mean number of active latents per row.
    pub l0: f64,
    /// Rows each latent fired on.
    pub fired: Vec<u64>,
    /// Each latent's activations summed over all rows (f64).
    pub act_sum: Vec<f64>,
    pub rows: u64,
}

impl ActivationStats {
    /// Percentage of latents that never fired.
    pub fn dead_pct(&self) -> f64 {
        100.0 * self.fired.iter().filter(|&&f| f == 0).count() as f64 / self.fired.len() as f64
    }

    /// Percentage of latents that fired on more than 10 % of the rows.
    pub fn dense_pct(&self) -> f64 {
        let dense = self
            .fired
            .iter()
            .filter(|&&f| f as f64 > 0.1 * self.rows as f64)
            .count();
        100.0 * dense as f64 / self.fired.len() as f64
    }

    /// Latents per log10 firing frequency bin: key = floor(log10 f), "dead" for never.
    pub fn density_histogram(&self) -> BTreeMap<String, u64> {
        log10_histogram(self.fired.iter().map(|&f| f as f64 / self.rows as f64))
    }

    /// Each latent's mean activation over all held-out rows (silent rows count as 0), as in the paper's
    /// Appendix B beside the density.
    pub fn mean_activation(&self) -> Vec<f64> {
        self.act_sum
            .iter()
            .map(|s| s / self.rows.max(1) as f64)
            .collect()
    }

    /// Latents per log10 bin of [`ActivationStats::mean_activation`]: key = floor(log10 m), "dead" for never.
    pub fn mean_activation_histogram(&self) -> BTreeMap<String, u64> {
        log10_histogram(self.mean_activation().into_iter())
    }
}

/// Values per floor(log10 v) bin; "dead" for 0.
fn log10_histogram(values: impl Iterator<Item = f64>) -> BTreeMap<String, u64> {
    let mut hist = BTreeMap::new();
    for v in values {
        let key = if v <= 0.0 {
            "dead".to_string()
        } else {
            format!("{}", v.log10().floor() as i32)
        };
        *hist.entry(key).or_insert(0) += 1;
    }
    hist
}

/// Rows read and encoded at a time.
const CHUNK: usize = 4096;

/// `coder` (made ready as `encoder`) on every row of the `held` shards.
pub fn stats(
    cache: &Cache,
    held: &[usize],
    coder: &SparseCoder,
    encoder: &Encoder,
    meta: &CoderMeta,
) -> Result<ActivationStats> {
    let mut fvu = FvuSums::new(coder.cfg.d_out);
    let mut l0 = 0f64;
    let mut fired = vec![0u64; coder.cfg.num_latents];
    let mut act_sum = vec![0f64; coder.cfg.num_latents];
    cache.for_each_chunk(held, meta.sides(), CHUNK, |x, y, rows| {
        let enc = encoder.encode(x, rows);
        fvu.add(&coder.decode(&enc, x, rows), y, rows);
        for (&l, &a) in enc.idx.iter().zip(&enc.acts).filter(|(_, &a)| a > 0.0) {
            fired[l as usize] += 1;
            act_sum[l as usize] += a as f64;
            l0 += 1.0;
        }
    })?;
    Ok(ActivationStats {
        fvu: fvu.fvu(),
        l0: l0 / fvu.rows() as f64,
        fired,
        act_sum,
        rows: fvu.rows(),
    })
}

/// FVU of the affine map `map` (mlp_in → mlp_out) on every row of the `held` shards.
pub fn linear_fvu(cache: &Cache, held: &[usize], map: &AffineMap) -> Result<f64> {
    let mut fvu = FvuSums::new(map.d_out);
    cache.for_each_chunk(held, (Side::MlpIn, Side::MlpOut), CHUNK, |x, y, rows| {
        fvu.add(&map.predict(x, rows), y, rows)
    })?;
    Ok(fvu.fvu())
}
