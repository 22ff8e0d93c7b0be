//! Synthetic caches of random rows, for format tests and I/O benchmarks (never for training results).
//! Row `r` belongs to sequence `r / ctx_len` at position `r % ctx_len`, so every row has a unique id pair.

use crate::dtype::DType;
use crate::error::Result;
use crate::manifest::{CacheSpec, Hookpoints, Manifest, ModelIdentity, TokenizerIdentity};
use crate::writer::CacheWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

pub fn spec(d_in: u32, d_out: u32, dtype: DType, ctx_len: u32, shard_rows: u64) -> CacheSpec {
    CacheSpec {
        model: ModelIdentity {
            name: "synthetic".into(),
            file: "none".into(),
            sha256: "0".repeat(64),
        },
        layer: 0,
        hookpoints: Hookpoints {
            mlp_in: "synthetic.mlp_in".into(),
            mlp_out: "synthetic.mlp_out".into(),
        },
        d_in,
        d_out,
        dtype,
        ctx_len,
        tokenizer: TokenizerIdentity {
            source: "none".into(),
            vocab_size: 49152,
            hash: "0".into(),
        },
        corpus: serde_json::json!({"description": "random rows (synthetic)"}),
        extraction_args: serde_json::json!({}),
        shard_rows,
    }
}

/// The f32 rows a synthetic cache holds before storage rounding.
pub struct SyntheticRows {
    pub mlp_in: Vec<f32>,
    pub mlp_out: Vec<f32>,
    pub token_ids: Vec<u32>,
    pub seq_ids: Vec<u64>,
    pub positions: Vec<u32>,
}

pub fn rows(spec: &CacheSpec, rows: usize, seed: u64) -> SyntheticRows {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut gauss = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| (rng.random::<f32>() - 0.5) * 4.0 + rng.random::<f32>() - 0.5)
            .collect()
    };
    let mlp_in = gauss(rows * spec.d_in as usize);
    let mlp_out = gauss(rows * spec.d_out as usize);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let ctx = spec.ctx_len as usize;
    SyntheticRows {
        mlp_in,
        mlp_out,
        token_ids: (0..rows)
            .map(|_| rng.random_range(0..spec.tokenizer.vocab_size))
            .collect(),
        seq_ids: (0..rows).map(|r| (r / ctx) as u64).collect(),
        positions: (0..rows).map(|r| (r % ctx) as u32).collect(),
    }
}

/// Writes a complete synthetic cache into `dir`, pushing `chunk` rows at a time; returns its rows and manifest.
pub fn write_cache(
    dir: &Path,
    spec: CacheSpec,
    n: usize,
    chunk: usize,
    seed: u64,
) -> Result<(SyntheticRows, Manifest)> {
    let data = rows(&spec, n, seed);
    let (d_in, d_out) = (spec.d_in as usize, spec.d_out as usize);
    let (mut writer, _) = CacheWriter::open(dir, spec)?;
    for start in (0..n).step_by(chunk.max(1)) {
        let end = n.min(start + chunk.max(1));
        writer.push(
            &data.mlp_in[start * d_in..end * d_in],
            &data.mlp_out[start * d_out..end * d_out],
            &data.token_ids[start..end],
            &data.seq_ids[start..end],
            &data.positions[start..end],
        )?;
    }
    let manifest = writer.finish()?;
    Ok((data, manifest))
}
