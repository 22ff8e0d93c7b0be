//! The archival form of shards: each `shard-NNNNNN.bin` zstd-compressed to `shard-NNNNNN.bin.zst`.
//! Readers decompress it as a stream. Each step is crash-safe: the new file is complete before the manifest
//! names it, and the old file is removed only after.

use crate::cache::Cache;
use crate::error::{CacheError, Result};
use crate::fsutil::write_atomic;
use crate::manifest::{format_checksum, Manifest};
use crate::shard::{HashingWriter, Shard};
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use xxhash_rust::xxh3::Xxh3;

#[derive(Clone, Copy, Debug, Default)]
pub struct ArchiveSummary {
    pub shards_changed: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Compresses (`compress = true`) or decompresses every shard of the cache in `dir` that is not yet in that form.
pub fn convert(dir: &Path, compress: bool, level: i32) -> Result<ArchiveSummary> {
    let cache = Cache::open_any(dir)?;
    if let Some(n) = cache.manifest().parts {
        return Err(CacheError::invalid(
            dir,
            format!("is merged from {n} parts, whose own manifests list the shards: convert each part-I-of-{n} folder, then merge again"),
        ));
    }
    // An extraction still writing here, or a second conversion, is refused rather than raced.
    let _lock = crate::fsutil::lock_dir(dir)?;
    let mut manifest: Manifest = cache.manifest().clone();
    let mut summary = ArchiveSummary::default();
    for i in 0..manifest.shards.len() {
        let old_name = manifest.shards[i].file.clone();
        let is_zst = old_name.ends_with(".zst");
        let new_name = match (compress, is_zst) {
            (true, false) => format!("{old_name}.zst"),
            (false, true) => old_name.trim_end_matches(".zst").to_string(),
            _ => continue,
        };
        let old_path = dir.join(&old_name);
        let new_path = dir.join(&new_name);
        // Check the source before converting it, so damage is never carried into the other form.
        drop(cache.open_shard(i)?);
        let mut written = (0u64, 0u64);
        write_atomic(&new_path, |out| {
            let mut w = HashingWriter {
                inner: out,
                hasher: Xxh3::new(),
                bytes: 0,
            };
            let mut src = BufReader::new(File::open(&old_path)?);
            if compress {
                let mut enc = zstd::stream::write::Encoder::new(&mut w, level)?;
                std::io::copy(&mut src, &mut enc)?;
                enc.finish()?;
            } else {
                zstd::stream::copy_decode(&mut src, &mut w)?;
            }
            w.flush()?;
            written = (w.bytes, w.hasher.digest());
            Ok(())
        })?;
        Shard::open(&new_path)?.verify_sections()?;
        let entry = &mut manifest.shards[i];
        summary.bytes_before += entry.bytes;
        summary.bytes_after += written.0;
        summary.shards_changed += 1;
        entry.file = new_name;
        entry.bytes = written.0;
        entry.xxh3 = format_checksum(written.1);
        manifest.save(dir)?;
        std::fs::remove_file(&old_path).map_err(|e| CacheError::io(&old_path, e))?;
    }
    Ok(summary)
}
