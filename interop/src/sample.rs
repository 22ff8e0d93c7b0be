//! The rows an export is checked on: the first rows of the cache's held-out shard (the last one, as `eval`
//! holds it out by default), with our coder's input, its k latents per row and its output on them. Written
//! beside every export as `sparsecoder_sample.safetensors`, so the other tool's loader can be run on the same
//! rows and compared with what we compute (`scripts/check_exports.py`).

use crate::tensors::{self, Values};
use crate::ExportSource;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::Path;

/// The file name of an export's check rows.
pub const FILE: &str = "sparsecoder_sample.safetensors";

/// Our coder on some held-out rows.
pub struct Sample {
    pub rows: usize,
    /// The coder's input, `rows × d_in`.
    pub x: Vec<f32>,
    /// Its k latents per row (`rows × k`): indices and activations, as our encoder gives them.
    pub latent_idx: Vec<u32>,
    pub latent_acts: Vec<f32>,
    /// Its output, `rows × d_out`.
    pub out: Vec<f32>,
}

/// Our coder on the first `rows` rows of the cache's held-out shard (fewer when that shard is shorter).
pub fn take(src: &ExportSource, rows: usize) -> Result<Sample> {
    let (_, held) = src.cache.split(1)?;
    let Some(&last) = held.last() else {
        bail!("{}: the cache has no shard", src.cache.dir().display());
    };
    let shard = src.cache.open_shard(last)?;
    let rows = rows.min(shard.rows() as usize);
    let coder = &src.loaded.coder;
    let (input, _) = src.loaded.meta.sides();
    let mut x = vec![0f32; rows * coder.cfg.d_in];
    shard.read_rows_f32(input.section(), 0, &mut x);
    let enc = coder.encode(&x, rows);
    let out = coder.decode(&enc, &x, rows);
    Ok(Sample {
        rows,
        x,
        latent_idx: enc.idx,
        latent_acts: enc.acts,
        out,
    })
}

impl Sample {
    /// This sample's tensors, their names prefixed by `prefix` (e.g. `layer_3.`; empty for one coder).
    pub fn tensors(&self, prefix: &str) -> Vec<(String, Vec<usize>, Values<'_>)> {
        let r = self.rows;
        let width = |v: usize| v / r.max(1);
        vec![
            (
                format!("{prefix}x"),
                vec![r, width(self.x.len())],
                Values::F32(&self.x),
            ),
            (
                format!("{prefix}latent_idx"),
                vec![r, width(self.latent_idx.len())],
                Values::U32(&self.latent_idx),
            ),
            (
                format!("{prefix}latent_acts"),
                vec![r, width(self.latent_acts.len())],
                Values::F32(&self.latent_acts),
            ),
            (
                format!("{prefix}out"),
                vec![r, width(self.out.len())],
                Values::F32(&self.out),
            ),
        ]
    }
}

/// Writes samples (each with its tensor-name prefix) into `dir`'s sample file.
pub fn write(dir: &Path, samples: &[(String, Sample)]) -> Result<()> {
    let all: Vec<_> = samples
        .iter()
        .flat_map(|(prefix, s)| s.tensors(prefix))
        .collect();
    let meta = HashMap::from([(
        "what".to_string(),
        "held-out rows: our coder's input (x), its k latents (latent_idx, latent_acts) and output (out)"
            .to_string(),
    )]);
    tensors::write(&dir.join(FILE), &all, meta)
}
