//! Statistics of a coder's predictions and activations over the held-out shards of the cache.

use anyhow::Result;
use cache_format::Cache;
use std::collections::BTreeMap;
use trainer::checkpoint::CoderMeta;
use trainer::coder::{Encoder, SparseCoder};

/// One coder on the held-out rows.
pub struct ActivationStats {
    /// Σ error² / Σ (y − mean y)², over all held-out rows.
    pub fvu: f64,
    /// Mean number of active latents per row.
    pub l0: f64,
    /// Rows each latent fired on.
    pub fired: Vec<u64>,
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
        let mut hist = BTreeMap::new();
        for &f in &self.fired {
            let key = if f == 0 {
                "dead".to_string()
            } else {
                format!("{}", (f as f64 / self.rows as f64).log10().floor() as i32)
            };
            *hist.entry(key).or_insert(0) += 1;
        }
        hist
    }
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
    let (input, target) = meta.sides();
    let (d_in, d_out) = (coder.cfg.d_in, coder.cfg.d_out);
    let (mut sse, mut sum, mut sum_sq) = (0f64, vec![0f64; d_out], 0f64);
    let (mut l0, mut rows_total) = (0f64, 0u64);
    let mut fired = vec![0u64; coder.cfg.num_latents];
    for &i in held {
        let shard = cache.open_shard(i)?;
        let n = shard.rows() as usize;
        for first in (0..n).step_by(CHUNK) {
            let rows = CHUNK.min(n - first);
            let (mut x, mut y) = (vec![0f32; rows * d_in], vec![0f32; rows * d_out]);
            shard.read_rows_f32(input.section(), first, &mut x);
            shard.read_rows_f32(target.section(), first, &mut y);
            let enc = encoder.encode(&x, rows);
            let y_hat = coder.decode(&enc, &x, rows);
            for (p, t) in y_hat.iter().zip(&y) {
                sse += ((p - t) as f64).powi(2);
            }
            for row in y.chunks(d_out) {
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += *v as f64;
                    sum_sq += (*v as f64).powi(2);
                }
            }
            for l in SparseCoder::fired(&enc) {
                fired[l as usize] += 1;
                l0 += 1.0;
            }
            rows_total += rows as u64;
        }
    }
    let n = rows_total as f64;
    let total_variance = sum_sq - sum.iter().map(|s| s * s / n).sum::<f64>();
    Ok(ActivationStats {
        fvu: sse / total_variance,
        l0: l0 / n,
        fired,
        rows: rows_total,
    })
}
