//! `manifest.json`: what a cache holds and where. Replaced atomically after every shard, so it always lists
//! exactly the shards that are complete on disk.

use crate::dtype::DType;
use crate::error::{CacheError, Result};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT_NAME: &str = "sparsecoder-activation-cache";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// Human-readable name, e.g. `SmolLM2-135M-Instruct`.
    pub name: String,
    /// The model file or folder the activations came from, as given.
    pub file: String,
    /// sha256 of the model file (hex), or of the weight files in order for a folder.
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerIdentity {
    /// Where the tokenizer came from, e.g. `gguf-metadata` or a `tokenizer.json` path.
    pub source: String,
    pub vocab_size: u32,
    /// A hash of the tokenizer's definition, so caches made with different tokenizers are told apart.
    pub hash: String,
}

/// Names of the two hookpoints, as the model calls them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hookpoints {
    pub mlp_in: String,
    pub mlp_out: String,
}

/// Everything that defines a cache's content. Two runs with equal specs produce identical shards, which is
/// what lets an interrupted extraction resume and what makes a run with other arguments refuse the directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheSpec {
    pub model: ModelIdentity,
    pub layer: u32,
    pub hookpoints: Hookpoints,
    pub d_in: u32,
    pub d_out: u32,
    pub dtype: DType,
    pub ctx_len: u32,
    pub tokenizer: TokenizerIdentity,
    /// Free-form description of the text: paths, format, document count.
    pub corpus: serde_json::Value,
    /// The exact arguments of the extraction run.
    pub extraction_args: serde_json::Value,
    /// Rows per shard; only the last shard may hold fewer.
    pub shard_rows: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the cache directory: `shard-NNNNNN.bin` or `shard-NNNNNN.bin.zst`.
    pub file: String,
    pub rows: u64,
    /// Size of the stored file in bytes.
    pub bytes: u64,
    /// xxh3-64 of the whole stored file, 16 lowercase hex digits.
    pub xxh3: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    #[serde(flatten)]
    pub spec: CacheSpec,
    pub total_rows: u64,
    /// False while an extraction is still adding shards (or was interrupted).
    pub complete: bool,
    pub shards: Vec<ShardEntry>,
}

impl Manifest {
    /// What a cache holds, as 16 hex digits: xxh3-64 of its spec (model, tokenizer, corpus, extraction
    /// arguments, layer, widths, dtype) and its rows per shard. The same for a cache and its zstd archive;
    /// different for another extraction. Training runs pin it, so that `--resume` refuses a replaced cache.
    pub fn content_id(&self) -> String {
        let spec = serde_json::to_string(&self.spec).expect("a manifest serialises");
        let rows: Vec<String> = self.shards.iter().map(|s| s.rows.to_string()).collect();
        let text = format!("{spec}\n{}\n{}", self.total_rows, rows.join(","));
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }
}

pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index:06}.bin")
}

pub fn format_checksum(sum: u64) -> String {
    format!("{sum:016x}")
}

impl Manifest {
    pub fn new(spec: CacheSpec) -> Manifest {
        Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            spec,
            total_rows: 0,
            complete: false,
            shards: Vec::new(),
        }
    }

    /// Parses and checks a manifest's own consistency (not the shards on disk: see `validate`).
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| CacheError::corrupt(path, format!("manifest is not valid: {e}")))?;
        if m.format != FORMAT_NAME {
            return Err(CacheError::mismatch(path, "format", FORMAT_NAME, &m.format));
        }
        if m.format_version != FORMAT_VERSION {
            return Err(CacheError::mismatch(
                path,
                "format_version",
                FORMAT_VERSION,
                m.format_version,
            ));
        }
        if m.spec.d_in == 0 || m.spec.d_out == 0 || m.spec.shard_rows == 0 {
            return Err(CacheError::invalid(
                path,
                "d_in, d_out and shard_rows must be positive",
            ));
        }
        let sum: u64 = m.shards.iter().map(|s| s.rows).sum();
        if sum != m.total_rows {
            return Err(CacheError::mismatch(
                path,
                "total_rows (sum of shard rows)",
                sum,
                m.total_rows,
            ));
        }
        for (i, s) in m.shards.iter().enumerate() {
            let plain = shard_file_name(i);
            if s.file != plain && s.file != format!("{plain}.zst") {
                return Err(CacheError::mismatch(
                    path,
                    format!("shards[{i}].file"),
                    plain,
                    &s.file,
                ));
            }
            if s.xxh3.len() != 16 || u64::from_str_radix(&s.xxh3, 16).is_err() {
                return Err(CacheError::invalid(
                    path,
                    format!("shards[{i}].xxh3 {:?} is not 16 hex digits", s.xxh3),
                ));
            }
        }
        Ok(m)
    }

    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| CacheError::io(&path, e))?;
        Manifest::from_json(&bytes, &path)
    }

    /// Replaces `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        fsutil::write_atomic(&dir.join(MANIFEST_FILE), |w| {
            w.write_all(&json)?;
            w.write_all(b"\n")
        })
    }
}
