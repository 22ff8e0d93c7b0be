//! Full integrity check of a cache: manifest, every shard's header, section checksums, whole-file checksums,
//! manifest/shard agreement, id ranges and non-finite activations. Read-only: it never modifies a file.

use crate::cache::Cache;
use crate::error::{CacheError, Result};
use crate::manifest::format_checksum;
use crate::shard::{Section, Shard};
use crate::stats::{shard_stats, ShardStats};
use std::path::Path;

pub struct ShardReport {
    pub file: String,
    /// Statistics when the shard's structure was sound, else `None`.
    pub stats: Option<ShardStats>,
    pub problems: Vec<CacheError>,
}

pub struct ValidationReport {
    pub cache: Cache,
    pub shards: Vec<ShardReport>,
}

impl ValidationReport {
    pub fn problems(&self) -> impl Iterator<Item = &CacheError> {
        self.shards.iter().flat_map(|s| s.problems.iter())
    }
    pub fn is_ok(&self) -> bool {
        self.problems().next().is_none()
    }
}

/// Checks everything. A manifest that cannot be read is an `Err`; problems inside shards are collected per
/// shard in the report, so one run names every damaged shard and section.
pub fn validate(dir: &Path) -> Result<ValidationReport> {
    let cache = Cache::open_any(dir)?;
    let mut shards = Vec::new();
    for i in 0..cache.num_shards() {
        let entry = &cache.manifest().shards[i];
        let mut report = ShardReport {
            file: entry.file.clone(),
            stats: None,
            problems: Vec::new(),
        };
        match check_shard(&cache, i) {
            Ok((stats, problems)) => {
                report.stats = Some(stats);
                report.problems = problems;
            }
            Err(e) => report.problems.push(e),
        }
        shards.push(report);
    }
    Ok(ValidationReport { cache, shards })
}

fn check_shard(cache: &Cache, i: usize) -> Result<(ShardStats, Vec<CacheError>)> {
    let shard = cache.open_shard_unverified(i)?;
    let path = shard.path().to_path_buf();
    let mut problems = shard.damaged_sections();
    let entry = &cache.manifest().shards[i];
    let (_, sum) = Shard::file_checksum(&path)?;
    if format_checksum(sum) != entry.xxh3 {
        problems.push(CacheError::mismatch(
            &path,
            "whole-file xxh3 (manifest vs file)",
            &entry.xxh3,
            format_checksum(sum),
        ));
    }
    let spec = &cache.manifest().spec;
    let last = i + 1 == cache.num_shards();
    if !last && shard.rows() != spec.shard_rows {
        problems.push(CacheError::mismatch(
            &path,
            "rows (only the last shard may be short)",
            spec.shard_rows,
            shard.rows(),
        ));
    }
    if let Some((r, &p)) = shard
        .positions()
        .iter()
        .enumerate()
        .find(|(_, &p)| p >= spec.ctx_len)
    {
        problems.push(CacheError::invalid(
            &path,
            format!(
                "section positions: row {r} has position {p}, which is not below ctx_len {}",
                spec.ctx_len
            ),
        ));
    }
    let stats = shard_stats(&shard);
    for (s, n) in [
        (Section::MlpIn, &stats.mlp_in),
        (Section::MlpOut, &stats.mlp_out),
    ] {
        if n.non_finite > 0 {
            problems.push(CacheError::invalid(
                &path,
                format!(
                    "section {}: {} non-finite values (NaN/Inf), first in row {}",
                    s.name(),
                    n.non_finite,
                    n.first_bad_row.unwrap_or(0)
                ),
            ));
        }
    }
    Ok((stats, problems))
}
