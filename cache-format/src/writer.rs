//! The crash-safe, resumable cache writer.
//!
//! Rows are buffered until a shard is full; the shard is written atomically, then the manifest is replaced
//! atomically to list it. After a crash the directory holds a valid manifest listing only complete shards, and
//! [`CacheWriter::open`] with the same spec continues after them. A different spec is refused.

use crate::error::{CacheError, Result};
use crate::fsutil::{self, TEMP_SUFFIX};
use crate::manifest::{
    format_checksum, shard_file_name, CacheSpec, Manifest, ShardEntry, MANIFEST_FILE,
};
use crate::parts::PartInfo;
use crate::shard::{write_shard, ShardContent};
use std::path::{Path, PathBuf};

/// What `open` found in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterState {
    /// A new cache: nothing was there.
    Fresh,
    /// An interrupted cache with the same spec: the first `rows_done` rows are on disk; push the rest.
    Resumed { rows_done: u64 },
    /// A finished cache with the same spec: nothing to do.
    Complete { rows: u64 },
}

pub struct CacheWriter {
    dir: PathBuf,
    manifest: Manifest,
    mlp_in: Vec<u8>,
    mlp_out: Vec<u8>,
    token_ids: Vec<u32>,
    seq_ids: Vec<u64>,
    positions: Vec<u32>,
}

impl CacheWriter {
    /// Creates a cache in `dir`, or resumes the one there if it was made with an identical spec.
    pub fn open(dir: &Path, spec: CacheSpec) -> Result<(CacheWriter, WriterState)> {
        CacheWriter::open_part(dir, spec, None)
    }

    /// [`CacheWriter::open`] for one part of an extraction in parts (`part`: its place in the whole, recorded
    /// in the manifest; a folder holding another part, or no part, is refused).
    pub fn open_part(
        dir: &Path,
        spec: CacheSpec,
        part: Option<PartInfo>,
    ) -> Result<(CacheWriter, WriterState)> {
        std::fs::create_dir_all(dir).map_err(|e| CacheError::io(dir, e))?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let (manifest, state) = if manifest_path.exists() {
            let manifest = Manifest::load(dir)?;
            if let Some((field, cached, ours)) = manifest.spec.first_difference(&spec) {
                return Err(CacheError::invalid(
                    &manifest_path,
                    format!(
                        "this directory holds a cache made with different arguments ({field}: cache has {cached}, \
                         this run has {ours}); choose another output directory or delete this one"
                    ),
                ));
            }
            if manifest.part != part {
                let show = |p: &Option<PartInfo>| {
                    p.as_ref().map_or("the whole extraction".to_string(), |p| {
                        format!("part {} of {}", p.index, p.count)
                    })
                };
                return Err(CacheError::invalid(
                    &manifest_path,
                    format!(
                        "holds {} of this extraction, and this run makes {}; choose another output directory",
                        show(&manifest.part),
                        show(&part)
                    ),
                ));
            }
            let state = if manifest.complete {
                WriterState::Complete {
                    rows: manifest.total_rows,
                }
            } else {
                WriterState::Resumed {
                    rows_done: manifest.total_rows,
                }
            };
            (manifest, state)
        } else {
            let mut entries = std::fs::read_dir(dir)
                .map_err(|e| CacheError::io(dir, e))?
                .filter(|e| {
                    e.as_ref()
                        .map_or(true, |e| e.file_name() != fsutil::LOCK_FILE)
                });
            if let Some(entry) = entries.next() {
                let name = entry.map_err(|e| CacheError::io(dir, e))?.file_name();
                return Err(CacheError::invalid(
                    dir,
                    format!("directory is not empty ({name:?}) and holds no {MANIFEST_FILE}; refusing to write a cache into it"),
                ));
            }
            let manifest = Manifest {
                part,
                ..Manifest::new(spec)
            };
            manifest.save(dir)?;
            (manifest, WriterState::Fresh)
        };
        remove_temp_files(dir)?;
        let writer = CacheWriter {
            dir: dir.to_path_buf(),
            manifest,
            mlp_in: Vec::new(),
            mlp_out: Vec::new(),
            token_ids: Vec::new(),
            seq_ids: Vec::new(),
            positions: Vec::new(),
        };
        Ok((writer, state))
    }

    pub fn spec(&self) -> &CacheSpec {
        &self.manifest.spec
    }

    /// Rows in complete shards on disk.
    pub fn rows_written(&self) -> u64 {
        self.manifest.total_rows
    }

    pub fn shards_written(&self) -> usize {
        self.manifest.shards.len()
    }

    fn buffered_rows(&self) -> u64 {
        self.token_ids.len() as u64
    }

    /// Appends rows. Row `r` has `mlp_in[r*d_in..][..d_in]`, `mlp_out[r*d_out..][..d_out]` and one entry in each
    /// of the id slices. Non-finite activations are refused: a cache never holds them.
    pub fn push(
        &mut self,
        mlp_in: &[f32],
        mlp_out: &[f32],
        token_ids: &[u32],
        seq_ids: &[u64],
        positions: &[u32],
    ) -> Result<()> {
        let spec = &self.manifest.spec;
        let (d_in, d_out, shard_rows, dtype) = (
            spec.d_in as usize,
            spec.d_out as usize,
            spec.shard_rows,
            spec.dtype,
        );
        let rows = token_ids.len();
        let here = self.dir.join(MANIFEST_FILE);
        for (field, want, got) in [
            ("mlp_in length", rows * d_in, mlp_in.len()),
            ("mlp_out length", rows * d_out, mlp_out.len()),
            ("seq_ids length", rows, seq_ids.len()),
            ("positions length", rows, positions.len()),
        ] {
            if want != got {
                return Err(CacheError::mismatch(
                    &here,
                    format!("pushed {field}"),
                    want,
                    got,
                ));
            }
        }
        if self.manifest.complete {
            return Err(CacheError::invalid(
                &here,
                "cache is complete; no rows can be added",
            ));
        }
        for (name, values, width) in [("mlp_in", mlp_in, d_in), ("mlp_out", mlp_out, d_out)] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                let r = i / width;
                return Err(CacheError::invalid(
                    &here,
                    format!(
                        "{name} of sequence {} position {} holds a non-finite value ({}) at column {}",
                        seq_ids[r],
                        positions[r],
                        values[i],
                        i % width
                    ),
                ));
            }
        }
        let mut start = 0;
        while start < rows {
            let room = (shard_rows - self.buffered_rows()) as usize;
            let end = rows.min(start + room);
            dtype.encode_rows_into(&mlp_in[start * d_in..end * d_in], d_in, &mut self.mlp_in);
            dtype.encode_rows_into(
                &mlp_out[start * d_out..end * d_out],
                d_out,
                &mut self.mlp_out,
            );
            self.token_ids.extend_from_slice(&token_ids[start..end]);
            self.seq_ids.extend_from_slice(&seq_ids[start..end]);
            self.positions.extend_from_slice(&positions[start..end]);
            start = end;
            if self.buffered_rows() == shard_rows {
                self.flush_shard()?;
            }
        }
        Ok(())
    }

    fn flush_shard(&mut self) -> Result<()> {
        let rows = self.buffered_rows();
        if rows == 0 {
            return Ok(());
        }
        let spec = &self.manifest.spec;
        let file = shard_file_name(self.manifest.shards.len());
        let written = write_shard(
            &self.dir.join(&file),
            &ShardContent {
                rows,
                d_in: spec.d_in,
                d_out: spec.d_out,
                dtype: spec.dtype,
                mlp_in: &self.mlp_in,
                mlp_out: &self.mlp_out,
                token_ids: &self.token_ids,
                seq_ids: &self.seq_ids,
                positions: &self.positions,
            },
        )?;
        self.manifest.shards.push(ShardEntry {
            file,
            rows,
            bytes: written.bytes,
            xxh3: format_checksum(written.checksum),
        });
        self.manifest.total_rows += rows;
        self.manifest.save(&self.dir)?;
        self.mlp_in.clear();
        self.mlp_out.clear();
        self.token_ids.clear();
        self.seq_ids.clear();
        self.positions.clear();
        Ok(())
    }

    /// Writes the last (possibly short) shard and marks the cache complete.
    pub fn finish(mut self) -> Result<Manifest> {
        self.flush_shard()?;
        if self.manifest.total_rows == 0 {
            return Err(CacheError::invalid(
                &self.dir,
                "no rows were written: the cache would be empty",
            ));
        }
        self.manifest.complete = true;
        self.manifest.save(&self.dir)?;
        Ok(self.manifest)
    }
}

/// Removes `*.tmp` files left by a write that was interrupted before its rename.
fn remove_temp_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| CacheError::io(dir, e))? {
        let path = entry.map_err(|e| CacheError::io(dir, e))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
        {
            std::fs::remove_file(&path).map_err(|e| CacheError::io(&path, e))?;
        }
    }
    Ok(())
}
