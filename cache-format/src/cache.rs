//! An activation cache opened for reading: the manifest, shard lookup with cross-checks, the held-out split.

use crate::error::{CacheError, Result};
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::shard::Shard;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    manifest: Manifest,
    /// Per shard: its section checksums were verified by an earlier `open_shard` (of this cache or a clone).
    verified: Arc<Vec<AtomicBool>>,
}

impl Cache {
    /// Opens a finished cache; an interrupted extraction is refused with a hint to resume it.
    pub fn open(dir: &Path) -> Result<Cache> {
        let cache = Cache::open_any(dir)?;
        if let Some(p) = &cache.manifest.part {
            return Err(CacheError::invalid(
                dir,
                format!(
                    "is part {} of {} of an extraction in parts; when all {} are done, run `sparsecoder merge` on the folder holding them and use that folder",
                    p.index, p.count, p.count
                ),
            ));
        }
        if !cache.manifest.complete {
            return Err(CacheError::invalid(
                &dir.join(MANIFEST_FILE),
                "the extraction that writes this cache did not finish; run the same extract command again to resume it",
            ));
        }
        Ok(cache)
    }

    /// Opens a cache whether or not its extraction finished (for `inspect` and `validate`). Checks that every
    /// listed shard file exists with the recorded size.
    pub fn open_any(dir: &Path) -> Result<Cache> {
        let manifest = Manifest::load(dir)?;
        for entry in &manifest.shards {
            let path = dir.join(&entry.file);
            let meta = std::fs::metadata(&path).map_err(|e| {
                CacheError::invalid(
                    &path,
                    format!("shard listed in {MANIFEST_FILE} cannot be read: {e}"),
                )
            })?;
            if meta.len() != entry.bytes {
                return Err(CacheError::mismatch(
                    &path,
                    "file size (bytes, from the manifest)",
                    entry.bytes,
                    meta.len(),
                ));
            }
        }
        let verified = Arc::new(
            (0..manifest.shards.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
        );
        Ok(Cache {
            dir: dir.to_path_buf(),
            manifest,
            verified,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn num_shards(&self) -> usize {
        self.manifest.shards.len()
    }
    pub fn d_in(&self) -> usize {
        self.manifest.spec.d_in as usize
    }
    pub fn d_out(&self) -> usize {
        self.manifest.spec.d_out as usize
    }

    /// The row width of one side.
    pub fn width(&self, side: crate::Side) -> usize {
        match side {
            crate::Side::MlpIn => self.d_in(),
            crate::Side::MlpOut => self.d_out(),
        }
    }

    pub fn shard_path(&self, index: usize) -> PathBuf {
        self.dir.join(&self.manifest.shards[index].file)
    }

    /// Opens shard `index`, checks its header against the manifest and, the first time this cache opens it,
    /// every section's checksum (so a flipped bit never reaches training or evaluation; at xxh3's rate this
    /// costs well under 1 % of a training step, docs/BENCHMARKS.md).
    pub fn open_shard(&self, index: usize) -> Result<Shard> {
        let shard = self.open_shard_unverified(index)?;
        if !self.verified[index].load(Ordering::Relaxed) {
            shard.verify_sections()?;
            self.verified[index].store(true, Ordering::Relaxed);
        }
        Ok(shard)
    }

    /// Opens shard `index` and checks its header against the manifest, leaving section checksums to the
    /// caller (`validate`, which names every damaged section, and `inspect`).
    pub fn open_shard_unverified(&self, index: usize) -> Result<Shard> {
        let path = self.shard_path(index);
        let shard = Shard::open(&path)?;
        let spec = &self.manifest.spec;
        let entry = &self.manifest.shards[index];
        let h = shard.header();
        let checks: [(&str, String, String); 4] = [
            ("rows", entry.rows.to_string(), h.rows.to_string()),
            ("d_in", spec.d_in.to_string(), h.d_in.to_string()),
            ("d_out", spec.d_out.to_string(), h.d_out.to_string()),
            ("dtype", spec.dtype.to_string(), h.dtype.to_string()),
        ];
        for (field, want, got) in checks {
            if want != got {
                return Err(CacheError::mismatch(
                    &path,
                    format!("{field} (manifest vs shard header)"),
                    want,
                    got,
                ));
            }
        }
        Ok(shard)
    }

    /// Calls `each(x, y, rows)` with the `input` and `target` sides of every row of `shards`, as f32,
    /// `chunk_rows` rows at a time (fewer at a shard's end), in shard and row order.
    pub fn for_each_chunk(
        &self,
        shards: &[usize],
        (input, target): (crate::Side, crate::Side),
        chunk_rows: usize,
        mut each: impl FnMut(&[f32], &[f32], usize),
    ) -> Result<()> {
        let (d_in, d_out) = (self.width(input), self.width(target));
        for &i in shards {
            let shard = self.open_shard(i)?;
            let n = shard.rows() as usize;
            for first in (0..n).step_by(chunk_rows.max(1)) {
                let rows = chunk_rows.min(n - first);
                let (mut x, mut y) = (vec![0f32; rows * d_in], vec![0f32; rows * d_out]);
                shard.read_rows_f32(input.section(), first, &mut x);
                shard.read_rows_f32(target.section(), first, &mut y);
                each(&x, &y, rows);
            }
        }
        Ok(())
    }

    /// Splits shard indices into (training, held-out): the last `holdout_shards` shards are held out, so the
    /// split is the same for every run on this cache and training never reads evaluation data.
    pub fn split(&self, holdout_shards: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        let n = self.num_shards();
        if holdout_shards >= n && n > 0 {
            return Err(CacheError::invalid(
                &self.dir,
                format!("--holdout-shards {holdout_shards}: cannot hold out {holdout_shards} of {n} shards: no training shard would remain"),
            ));
        }
        let cut = n.saturating_sub(holdout_shards);
        Ok(((0..cut).collect(), (cut..n).collect()))
    }
}
