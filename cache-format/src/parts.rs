//! Work split over the N tasks of a job array (Slurm job arrays, Kubernetes indexed jobs), and a cache
//! extracted in parts.
//!
//! An extraction's rows form one grid of shards (`shard_rows` rows each, the last may be short) whatever the
//! number of workers. Part I of N computes the contiguous shards `[I·S/N, (I+1)·S/N)` of the S shards of that
//! grid into `DIR/part-I-of-N/`: a cache of its own, whose manifest's `part` member says which shards and rows
//! of the whole they are. [`merge`] checks that all N parts are there, complete and of one extraction, and
//! writes `DIR/manifest.json`, listing every shard where its part wrote it (`part-I-of-N/shard-J.bin`):
//! nothing is copied. Each part's shards are byte for byte the shards a run in one part writes at the same
//! places of the grid, so the merged cache has the same rows in the same order, the same content id and the
//! same held-out shards (the last ones of the grid) for every N.

use crate::cache::Cache;
use crate::error::{CacheError, Result};
use crate::manifest::{CacheSpec, Manifest, ShardEntry, MANIFEST_FILE};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Task `index` (from 0) of `count` tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub index: u32,
    pub count: u32,
}

impl Part {
    pub fn new(index: u64, count: u64) -> std::result::Result<Part, String> {
        if count == 0 {
            return Err("the number of parts must be at least 1, found 0".into());
        }
        if index >= count {
            return Err(format!(
                "part {index} of {count} does not exist: parts are numbered 0 to {}",
                count - 1
            ));
        }
        let count = u32::try_from(count).map_err(|_| format!("{count} parts are too many"))?;
        Ok(Part {
            index: index as u32,
            count,
        })
    }

    /// `I/N`, as `--part` takes it.
    pub fn parse(text: &str) -> std::result::Result<Part, String> {
        let number = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("expected I/N with whole numbers, e.g. 0/4, found {text:?}"))
        };
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("expected I/N, e.g. 0/4, found {text:?}"))?;
        Part::new(number(i)?, number(n)?)
    }

    /// `--part auto`: this task of the job array, from the scheduler's variables (`var` reads one). Slurm:
    /// `SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`; Kubernetes:
    /// `JOB_COMPLETION_INDEX` of `parts` (which Kubernetes does not pass to the pod).
    pub fn from_env(
        parts: Option<u64>,
        var: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Part, String> {
        let number = |name: &str| -> std::result::Result<Option<u64>, String> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("{name}={v:?} is not a whole number"))
                })
                .transpose()
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or(
                "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: not a Slurm job array task",
            )?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            if let Some(max) = number("SLURM_ARRAY_TASK_MAX")? {
                if max < min || max - min + 1 != count {
                    return Err(format!(
                        "SLURM_ARRAY_TASK_MIN={min}, _MAX={max} and _COUNT={count} are not one task per index \
                         (an array with a step or gaps); submit with --array=0-{}",
                        count.saturating_sub(1)
                    ));
                }
            }
            if id < min {
                return Err(format!(
                    "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
                ));
            }
            if parts.is_some_and(|p| p != count) {
                return Err(format!(
                    "--parts {} disagrees with SLURM_ARRAY_TASK_COUNT={count}",
                    parts.unwrap()
                ));
            }
            return Part::new(id - min, count).map_err(|e| format!("SLURM_ARRAY_TASK_ID: {e}"));
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = parts.ok_or(
                "JOB_COMPLETION_INDEX is set (a Kubernetes indexed job) but the job's size is not: add --parts N \
                 with N = the job's completions",
            )?;
            return Part::new(index, count).map_err(|e| format!("JOB_COMPLETION_INDEX: {e}"));
        }
        Err("--part auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes \
             indexed job) is set; give --part I/N"
            .into())
    }

    /// `part-I-of-N`: the folder a part's output goes to.
    pub fn dir_name(&self) -> String {
        format!("part-{}-of-{}", self.index, self.count)
    }

    /// The part a folder named by [`Part::dir_name`] holds.
    pub fn from_dir_name(name: &str) -> Option<Part> {
        let rest = name.strip_prefix("part-")?;
        let (i, n) = rest.split_once("-of-")?;
        let canonical = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        };
        if !canonical(i) || !canonical(n) {
            return None;
        }
        Part::new(i.parse().ok()?, n.parse().ok()?).ok()
    }

    /// This part's shards of an extraction of `total_rows` rows in shards of `shard_rows`; refused when the
    /// share is empty (more parts than shards).
    pub fn shards(
        &self,
        total_rows: u64,
        shard_rows: u64,
    ) -> std::result::Result<Range<u64>, String> {
        let shards_total = total_rows.div_ceil(shard_rows);
        let shards = self.share(shards_total);
        if shards.is_empty() {
            return Err(format!(
                "--part {}/{}: this extraction has {shards_total} shards of {shard_rows} rows, too few for {} parts; \
                 use at most {shards_total} parts (or a smaller --shard-rows)",
                self.index, self.count, self.count
            ));
        }
        Ok(shards)
    }

    /// This part's contiguous share of `items` items: `[I·items/N, (I+1)·items/N)`.
    pub fn share(&self, items: u64) -> Range<u64> {
        let at = |i: u32| (i as u128 * items as u128 / self.count as u128) as u64;
        at(self.index)..at(self.index + 1)
    }
}

/// Refuses `part` in `dir` (an extraction's layer folder, a sweep's folder) when `dir` holds a part of a split
/// into another number of parts: their shares would overlap.
pub fn refuse_other_split(dir: &Path, part: Part) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let Some(other) = entry.file_name().to_str().and_then(Part::from_dir_name) else {
            continue;
        };
        if other.count != part.count {
            return Err(CacheError::invalid(
                dir,
                format!(
                    "holds {}, a part of a split into {} parts, and this run is part {} of {}; use --part I/{} or another folder",
                    other.dir_name(),
                    other.count,
                    part.index,
                    part.count,
                    other.count
                ),
            ));
        }
    }
    Ok(())
}

/// What a part's manifest says of its place in the whole extraction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    pub index: u32,
    pub count: u32,
    /// The whole extraction's spec hash ([`CacheSpec::id`]): equal in every part of one extraction.
    pub extraction_id: String,
    /// This part's shards are shards `first_shard ..` of the whole, `shards` of them.
    pub first_shard: u64,
    pub shards: u64,
    /// And rows `first_row ..` of the whole, `rows` of them.
    pub first_row: u64,
    pub rows: u64,
    /// Rows of the whole extraction (all parts).
    pub extraction_rows: u64,
}

impl PartInfo {
    /// Part `part`'s share of an extraction of `total_rows` rows in shards of `spec.shard_rows`.
    pub fn plan(
        spec: &CacheSpec,
        part: Part,
        total_rows: u64,
    ) -> std::result::Result<PartInfo, String> {
        let shards = part.shards(total_rows, spec.shard_rows)?;
        let first_row = shards.start * spec.shard_rows;
        let end_row = (shards.end * spec.shard_rows).min(total_rows);
        Ok(PartInfo {
            index: part.index,
            count: part.count,
            extraction_id: spec.id(),
            first_shard: shards.start,
            shards: shards.end - shards.start,
            first_row,
            rows: end_row - first_row,
            extraction_rows: total_rows,
        })
    }

    pub fn part(&self) -> Part {
        Part {
            index: self.index,
            count: self.count,
        }
    }
}

/// The global shard `shard` of a cache of `shards` shards merged from `count` parts: (its part, its index
/// within the part).
pub fn locate_shard(shard: u64, shards: u64, count: u32) -> (Part, u64) {
    // Part p starts at ⌊p·S/N⌋: the estimate ⌊i·N/S⌋ is at most one part off either way.
    let estimate = (shard as u128 * count as u128 / shards.max(1) as u128) as u32;
    let mut part = Part {
        index: estimate.min(count - 1),
        count,
    };
    while part.index > 0 && part.share(shards).start > shard {
        part.index -= 1;
    }
    while part.index + 1 < count && part.share(shards).end <= shard {
        part.index += 1;
    }
    (part, shard - part.share(shards).start)
}

/// The `part-I-of-N` folders in `dir` (an extraction's or a sweep's), by index: (N, their paths), refused unless
/// all N are there and of one N.
pub fn find_parts(dir: &Path) -> Result<(u32, Vec<PathBuf>)> {
    let mut found: Vec<(Part, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| CacheError::io(dir, e))? {
        let entry = entry.map_err(|e| CacheError::io(dir, e))?;
        if let Some(part) = entry.file_name().to_str().and_then(Part::from_dir_name) {
            found.push((part, entry.path()));
        }
    }
    found.sort_by_key(|(p, _)| (p.count, p.index));
    let Some(&(first, _)) = found.first() else {
        return Err(CacheError::invalid(
            dir,
            "holds no part-I-of-N folders (made by extract or train --part)",
        ));
    };
    if let Some((other, _)) = found.iter().find(|(p, _)| p.count != first.count) {
        return Err(CacheError::invalid(
            dir,
            format!(
                "holds parts of two splits: {} and {} ({} and {} parts); remove the folders of the split you do not want",
                first.dir_name(),
                other.dir_name(),
                first.count,
                other.count
            ),
        ));
    }
    let n = first.count;
    let have: Vec<u32> = found.iter().map(|(p, _)| p.index).collect();
    if let Some(missing) = (0..n).find(|i| !have.contains(i)) {
        return Err(CacheError::invalid(
            &dir.join(Part { index: missing, count: n }.dir_name()),
            format!(
                "missing: {n} parts make the whole and {} are here; run that task (--part {missing}/{n})",
                have.len()
            ),
        ));
    }
    Ok((n, found.into_iter().map(|(_, p)| p).collect()))
}

/// One part's manifest, checked to be that part, complete, of the same extraction as `first` (part 0's spec,
/// once read), and holding exactly the shards its plan gives it.
fn checked_part(dir: &Path, part: Part, first: Option<&CacheSpec>) -> Result<Manifest> {
    let m = Cache::open_any(dir)?.manifest().clone();
    let path = dir.join(MANIFEST_FILE);
    let Some(info) = &m.part else {
        return Err(CacheError::invalid(
            &path,
            "is not the manifest of a part (it has no \"part\" member)",
        ));
    };
    if info.part() != part {
        return Err(CacheError::mismatch(
            &path,
            "part (from its folder's name)",
            format!("{} of {}", part.index, part.count),
            format!("{} of {}", info.index, info.count),
        ));
    }
    if let Some(first) = first {
        if let Some((field, theirs, ours)) = first.first_difference(&m.spec) {
            return Err(CacheError::invalid(
                dir,
                format!("made by another extraction than part 0 ({field}: part 0 has {theirs}, this part has {ours})"),
            ));
        }
    }
    if !m.complete {
        return Err(CacheError::invalid(
            dir,
            format!(
                "not complete ({} of {} rows): its extraction was interrupted or is still running; run extract --part {}/{} again",
                m.total_rows, info.rows, part.index, part.count
            ),
        ));
    }
    let planned = PartInfo::plan(&m.spec, part, info.extraction_rows).ok();
    if planned.as_ref() != Some(info)
        || m.shards.len() as u64 != info.shards
        || m.total_rows != info.rows
    {
        return Err(CacheError::invalid(
            &path,
            format!(
                "part member {info:?} and its {} shards of {} rows are not part {} of {} of {} rows",
                m.shards.len(),
                m.total_rows,
                part.index,
                part.count,
                info.extraction_rows
            ),
        ));
    }
    Ok(m)
}

fn holds_parts(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(Part::from_dir_name)
                .is_some()
        })
    })
}

/// [`merge`] on `dir`, or, for a multi-layer extraction's folder, on each `layer-L` folder in it.
pub fn merge_extraction(dir: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    if holds_parts(dir) {
        return Ok(vec![(dir.to_path_buf(), merge(dir)?)]);
    }
    let mut layers: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CacheError::io(dir, e))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("layer-"))
        .map(|e| e.path())
        .filter(|p| holds_parts(p))
        .collect();
    layers.sort();
    if layers.is_empty() {
        return Err(CacheError::invalid(
            dir,
            "holds no part-I-of-N folders (made by extract --part), nor layer-L folders holding them; nothing to merge",
        ));
    }
    layers
        .into_iter()
        .map(|l| merge(&l).map(|m| (l, m)))
        .collect()
}

/// Checks the N parts in `dir` and writes `dir/manifest.json` listing all their shards in order (see the
/// module doc). Running it again rewrites the same manifest.
pub fn merge(dir: &Path) -> Result<Manifest> {
    let (n, part_dirs) = find_parts(dir)?;
    // A second merge here waits its turn; a part still being extracted is refused below as incomplete.
    let _lock = crate::fsutil::lock_dir(dir)?;
    if let Ok(existing) = Manifest::load(dir) {
        if existing.parts.is_none() {
            return Err(CacheError::invalid(
                &dir.join(MANIFEST_FILE),
                "is the manifest of a cache extracted in one part, beside part folders; move the parts elsewhere to merge them",
            ));
        }
    }
    let mut merged: Option<Manifest> = None;
    let mut extraction_rows = None;
    for (index, part_dir) in part_dirs.iter().enumerate() {
        let part = Part {
            index: index as u32,
            count: n,
        };
        let m = checked_part(part_dir, part, merged.as_ref().map(|m| &m.spec))?;
        let all = merged.get_or_insert_with(|| Manifest {
            parts: Some(n),
            ..Manifest::new(m.spec.clone())
        });
        let info = m.part.as_ref().expect("checked");
        let rows_of_whole = *extraction_rows.get_or_insert(info.extraction_rows);
        if info.first_row != all.total_rows || info.extraction_rows != rows_of_whole {
            return Err(CacheError::invalid(
                part_dir,
                format!(
                    "holds rows {}.. of {} but the parts before it end at row {} of {rows_of_whole}: not one extraction",
                    info.first_row, info.extraction_rows, all.total_rows
                ),
            ));
        }
        for s in &m.shards {
            all.shards.push(ShardEntry {
                file: format!("{}/{}", part.dir_name(), s.file),
                ..s.clone()
            });
        }
        all.total_rows += m.total_rows;
    }
    let mut merged = merged.expect("find_parts found at least one part");
    merged.complete = true;
    merged.save(dir)?;
    Ok(merged)
}
