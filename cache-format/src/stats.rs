//! Per-shard statistics for `inspect` and `validate`: L2 norms of the activation rows and non-finite counts.

use crate::shard::{Section, Shard};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NormStats {
    pub mean_l2: f64,
    pub max_l2: f64,
    /// NaN or ±Inf values in the section.
    pub non_finite: u64,
    /// First row holding a non-finite value.
    pub first_bad_row: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShardStats {
    pub rows: u64,
    pub mlp_in: NormStats,
    pub mlp_out: NormStats,
}

const CHUNK_ROWS: usize = 1024;

pub fn section_norms(shard: &Shard, s: Section) -> NormStats {
    let width = shard.width(s);
    let rows = shard.rows() as usize;
    let mut buf = vec![0f32; CHUNK_ROWS * width];
    let mut stats = NormStats::default();
    let mut sum = 0f64;
    for first in (0..rows).step_by(CHUNK_ROWS) {
        let n = CHUNK_ROWS.min(rows - first);
        let chunk = &mut buf[..n * width];
        shard.read_rows_f32(s, first, chunk);
        for (r, row) in chunk.chunks_exact(width).enumerate() {
            let bad = row.iter().filter(|v| !v.is_finite()).count() as u64;
            if bad > 0 {
                stats.non_finite += bad;
                stats.first_bad_row.get_or_insert((first + r) as u64);
                continue;
            }
            let norm = row
                .iter()
                .map(|&v| (v as f64) * (v as f64))
                .sum::<f64>()
                .sqrt();
            sum += norm;
            stats.max_l2 = stats.max_l2.max(norm);
        }
    }
    let finite_rows = rows as u64 - stats.first_bad_row.map_or(0, |_| count_bad_rows(shard, s));
    stats.mean_l2 = if finite_rows > 0 {
        sum / finite_rows as f64
    } else {
        0.0
    };
    stats
}

fn count_bad_rows(shard: &Shard, s: Section) -> u64 {
    let width = shard.width(s);
    let mut row = vec![0f32; width];
    (0..shard.rows() as usize)
        .filter(|&r| {
            shard.read_rows_f32(s, r, &mut row);
            row.iter().any(|v| !v.is_finite())
        })
        .count() as u64
}

pub fn shard_stats(shard: &Shard) -> ShardStats {
    ShardStats {
        rows: shard.rows(),
        mlp_in: section_norms(shard, Section::MlpIn),
        mlp_out: section_norms(shard, Section::MlpOut),
    }
}
