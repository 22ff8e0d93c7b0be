//! `manifest.json`: what a cache holds and where. Replaced atomically after every shard, so it always lists
//! exactly the shards that are complete on disk.

use crate::dtype::DType;
use crate::error::{CacheError, Result};
use crate::fsutil;
use crate::parts::{locate_shard, PartInfo};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT_NAME: &str = "sparsecoder-activation-cache";
/// Version 2 added `manifest_xxh3`; version 1 manifests (without it) are still read.
pub const FORMAT_VERSION: u32 = 2;
/// How the manifest's own checksum member begins: it is the file's last member, and covers every byte before
/// this marker.
const CHECKSUM_MARKER: &[u8] = b",\n  \"manifest_xxh3\": \"";

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

impl CacheSpec {
    /// What an extraction computes, as 16 hex digits: xxh3-64 of the spec. Equal in every part of one
    /// extraction made in parts.
    pub fn id(&self) -> String {
        let spec = serde_json::to_string(self).expect("a spec serialises");
        format_checksum(xxhash_rust::xxh3::xxh3_64(spec.as_bytes()))
    }

    /// The first field where `other` differs from this spec, as `(field, here, there)`.
    pub fn first_difference(&self, other: &CacheSpec) -> Option<(String, String, String)> {
        let a = serde_json::to_value(self).expect("spec serialises");
        let b = serde_json::to_value(other).expect("spec serialises");
        let (serde_json::Value::Object(a), serde_json::Value::Object(b)) = (a, b) else {
            unreachable!("a spec is a JSON object")
        };
        a.iter().find_map(|(key, va)| {
            let vb = b.get(key).cloned().unwrap_or(serde_json::Value::Null);
            (*va != vb).then(|| (key.clone(), va.to_string(), vb.to_string()))
        })
    }
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
    /// In the manifest of one part of an extraction made in parts (`extract --part I/N`): its place in the whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<PartInfo>,
    /// In a cache merged from parts: how many; its shards are `part-I-of-N/shard-J.bin` (see [`crate::parts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
    /// xxh3-64 of the file's bytes before its last member (this one). Checked and dropped when read, added
    /// when saved: in memory it is always `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_xxh3: Option<String>,
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
            part: None,
            parts: None,
            manifest_xxh3: None,
        }
    }

    /// Parses and checks a manifest's own consistency (not the shards on disk: see `validate`).
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let mut m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| CacheError::corrupt(path, format!("manifest is not valid: {e}")))?;
        if m.format != FORMAT_NAME {
            return Err(CacheError::mismatch(path, "format", FORMAT_NAME, &m.format));
        }
        if !(1..=FORMAT_VERSION).contains(&m.format_version) {
            return Err(CacheError::mismatch(
                path,
                "format_version",
                format!("1 to {FORMAT_VERSION}"),
                m.format_version,
            ));
        }
        match m.manifest_xxh3.take() {
            Some(recorded) => check_own_checksum(bytes, &recorded, path)?,
            None if m.format_version >= 2 => {
                return Err(CacheError::invalid(
                    path,
                    "manifest_xxh3: missing (format_version 2 manifests carry their own checksum)",
                ))
            }
            None => {}
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
        m.check_parts(path)?;
        for (i, s) in m.shards.iter().enumerate() {
            let plain = match m.parts {
                None => shard_file_name(i),
                Some(n) => {
                    let (part, j) = locate_shard(i as u64, m.shards.len() as u64, n);
                    format!("{}/{}", part.dir_name(), shard_file_name(j as usize))
                }
            };
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

    /// A part's manifest holds no more than its plan; a merged one has between 1 and one part per shard.
    fn check_parts(&self, path: &Path) -> Result<()> {
        if let Some(p) = &self.part {
            if p.count == 0 || p.index >= p.count {
                return Err(CacheError::invalid(
                    path,
                    format!("part: {} of {} does not exist", p.index, p.count),
                ));
            }
            let done = (self.shards.len() as u64, self.total_rows);
            if done.0 > p.shards || done.1 > p.rows || (self.complete && done != (p.shards, p.rows))
            {
                return Err(CacheError::invalid(
                    path,
                    format!(
                        "part {} of {} plans {} shards of {} rows in all, and the manifest lists {} shards of {} rows",
                        p.index, p.count, p.shards, p.rows, done.0, done.1
                    ),
                ));
            }
        }
        if let Some(n) = self.parts {
            if n == 0 || n as usize > self.shards.len() || self.part.is_some() {
                return Err(CacheError::invalid(
                    path,
                    format!("parts: {n} parts cannot hold {} shards", self.shards.len()),
                ));
            }
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| CacheError::io(&path, e))?;
        Manifest::from_json(&bytes, &path)
    }

    /// The file's bytes: pretty JSON at the current format version, its own checksum as the last member.
    pub fn to_bytes(&self) -> Vec<u8> {
        let json = serde_json::to_vec_pretty(&Manifest {
            format_version: FORMAT_VERSION,
            manifest_xxh3: None,
            ..self.clone()
        })
        .expect("manifest serialises");
        let mut bytes = json
            .strip_suffix(b"\n}")
            .expect("a JSON object ends with its brace")
            .to_vec();
        let sum = format_checksum(xxhash_rust::xxh3::xxh3_64(&bytes));
        bytes.extend_from_slice(CHECKSUM_MARKER);
        bytes.extend_from_slice(format!("{sum}\"\n}}\n").as_bytes());
        bytes
    }

    /// Replaces `dir/manifest.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let bytes = self.to_bytes();
        fsutil::write_atomic(&dir.join(MANIFEST_FILE), |w| w.write_all(&bytes))
    }
}

/// The manifest's own checksum: `recorded` must be the xxh3-64 of every byte before the checksum member,
/// which must be the last one, written as `save` writes it.
fn check_own_checksum(bytes: &[u8], recorded: &str, path: &Path) -> Result<()> {
    let at = bytes
        .windows(CHECKSUM_MARKER.len())
        .rposition(|w| w == CHECKSUM_MARKER)
        .ok_or_else(|| {
            CacheError::invalid(
                path,
                "manifest_xxh3: not the last member, on its own line, as the format fixes",
            )
        })?;
    let tail = &bytes[at + CHECKSUM_MARKER.len()..];
    let tail = tail.strip_suffix(b"\n").unwrap_or(tail);
    if tail != format!("{recorded}\"\n}}").as_bytes() {
        return Err(CacheError::invalid(
            path,
            "manifest_xxh3: anything but the closing brace follows it",
        ));
    }
    let found = format_checksum(xxhash_rust::xxh3::xxh3_64(&bytes[..at]));
    if found != recorded {
        return Err(CacheError::mismatch(
            path,
            "manifest_xxh3 (of the bytes before it; the manifest was changed)",
            recorded,
            found,
        ));
    }
    Ok(())
}
