//! Held-out FVU: a coder scored on rows it never trains on.
//!
//! `train --eval-every N` scores every coder on the first `--eval-rows` rows of the held-out shards after
//! every N-th step, so that the FVU-vs-tokens curve in metrics.jsonl measures generalisation rather than
//! the training batches (which, past the first epoch, the coder has seen). `eval` computes the same
//! quantity over all held-out rows with [`FvuSums`], so the curve's last point and eval's FVU differ only
//! by the rows they cover.

use crate::coder::SparseCoder;
use anyhow::Result;
use cache_format::{Cache, Side};

/// Σ error² and the target's sums, for the FVU over all rows added (the mean taken over those rows):
/// Σ (p − y)² / Σ (y − mean y)², accumulated in f64 chunk by chunk.
pub struct FvuSums {
    sse: f64,
    sum: Vec<f64>,
    sum_sq: f64,
    rows: u64,
}

impl FvuSums {
    pub fn new(d_out: usize) -> FvuSums {
        FvuSums {
            sse: 0.0,
            sum: vec![0.0; d_out],
            sum_sq: 0.0,
            rows: 0,
        }
    }

    /// Adds `rows` rows of predictions and targets.
    pub fn add(&mut self, prediction: &[f32], y: &[f32], rows: usize) {
        for (p, t) in prediction.iter().zip(y) {
            self.sse += ((p - t) as f64).powi(2);
        }
        for row in y.chunks(self.sum.len()) {
            for (s, v) in self.sum.iter_mut().zip(row) {
                *s += *v as f64;
                self.sum_sq += (*v as f64).powi(2);
            }
        }
        self.rows += rows as u64;
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn fvu(&self) -> f64 {
        let n = self.rows as f64;
        self.sse / (self.sum_sq - self.sum.iter().map(|s| s * s / n).sum::<f64>())
    }
}

/// Rows encoded at a time.
const CHUNK: usize = 4096;

/// Both sides of the first rows of the held-out shards, read once and kept in f32.
pub struct HeldOutRows {
    mlp_in: Vec<f32>,
    mlp_out: Vec<f32>,
    pub rows: usize,
}

impl HeldOutRows {
    /// Up to `max_rows` rows, in order, from the `held` shards.
    pub fn read(cache: &Cache, held: &[usize], max_rows: usize) -> Result<HeldOutRows> {
        let (d_in, d_out) = (cache.d_in(), cache.d_out());
        let (mut mlp_in, mut mlp_out) = (Vec::new(), Vec::new());
        let mut rows = 0;
        for &i in held {
            let shard = cache.open_shard(i)?;
            let take = (shard.rows() as usize).min(max_rows - rows);
            let (mut x, mut y) = (vec![0f32; take * d_in], vec![0f32; take * d_out]);
            shard.read_rows_f32(Side::MlpIn.section(), 0, &mut x);
            shard.read_rows_f32(Side::MlpOut.section(), 0, &mut y);
            mlp_in.extend_from_slice(&x);
            mlp_out.extend_from_slice(&y);
            rows += take;
            if rows == max_rows {
                break;
            }
        }
        Ok(HeldOutRows {
            mlp_in,
            mlp_out,
            rows,
        })
    }

    pub fn side(&self, side: Side) -> &[f32] {
        match side {
            Side::MlpIn => &self.mlp_in,
            Side::MlpOut => &self.mlp_out,
        }
    }

    /// FVU of `coder` reading side `input` and predicting side `target` on these rows.
    pub fn fvu(&self, coder: &SparseCoder, (input, target): (Side, Side)) -> f64 {
        let (x, y) = (self.side(input), self.side(target));
        let (d_in, d_out) = (coder.cfg.d_in, coder.cfg.d_out);
        let encoder = coder.encoder();
        let mut sums = FvuSums::new(d_out);
        for first in (0..self.rows).step_by(CHUNK) {
            let rows = CHUNK.min(self.rows - first);
            let x = &x[first * d_in..(first + rows) * d_in];
            let y = &y[first * d_out..(first + rows) * d_out];
            let enc = encoder.encode(x, rows);
            sums.add(&coder.decode(&enc, x, rows), y, rows);
        }
        sums.fvu()
    }
}
