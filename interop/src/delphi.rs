//! delphi's latent cache, made from our activation cache and a coder, so that delphi's `LatentDataset`, its
//! explainers and scorers (and tools built on that layout) run on our extractions without a model.
//!
//! ```text
//! OUT/latents/<hookpoint>/config.json            delphi's CacheConfig fields, model_name, ours: sparsecoder
//! OUT/latents/<hookpoint>/<start>_<end>.safetensors   latents start…end (inclusive):
//!     locations    [N × 3] u16 (u32 when a sequence index or latent offset reaches 2^16):
//!                  (sequence, position, latent − start)
//!     activations  [N] f16
//!     tokens       [sequences × ctx_len] i64, the same in every file
//! ```
//! The hookpoint is sparsify's name for the MLP, `layers.L.mlp`. Sequences are the cache's whole sequences
//! in shard order (a sequence cut short by `--max-tokens` at extraction is left out), numbered from 0. As in
//! delphi's own cache, an activation counts when |a| > 1e-5, and the latent ranges are delphi's
//! `linspace(0, width, splits + 1)` boundaries.

use crate::tensors::{self, Values};
use crate::ExportSource;
use anyhow::{bail, Result};
use cache_format::fsutil::write_atomic;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// delphi's threshold for a latent being active (`batch.abs() > 1e-5` in `latents/cache.py`).
const ACTIVE: f32 = 1e-5;
/// Rows encoded at a time.
const CHUNK: usize = 2048;

/// What the export holds.
pub struct Summary {
    pub hookpoint: String,
    pub sequences: usize,
    pub activations: usize,
    /// Rows left out because their sequence was not whole.
    pub partial_rows: u64,
}

/// Every active (sequence, position, latent, activation) of the coder on the cache's whole sequences.
#[derive(Default)]
struct Firings {
    tokens: Vec<i64>,
    seq: Vec<u32>,
    pos: Vec<u32>,
    latent: Vec<u32>,
    act: Vec<f32>,
}

/// One sequence being assembled from consecutive rows: its rows' tokens and active latents.
#[derive(Default)]
struct Open {
    seq_id: Option<u64>,
    tokens: Vec<i64>,
    active: Vec<(u32, u32, f32)>,
}

impl Firings {
    /// Adds the assembled sequence as the next one when it is whole (`ctx_len` tokens); returns the rows it
    /// had when it is not.
    fn close(&mut self, open: &mut Open, ctx_len: usize) -> u64 {
        let o = std::mem::take(open);
        if o.tokens.len() != ctx_len {
            return o.tokens.len() as u64;
        }
        let s = (self.tokens.len() / ctx_len) as u32;
        self.tokens.extend(o.tokens);
        for (pos, latent, act) in o.active {
            self.seq.push(s);
            self.pos.push(pos);
            self.latent.push(latent);
            self.act.push(act);
        }
        0
    }
}

fn collect(src: &ExportSource, max_sequences: usize) -> Result<(Firings, u64)> {
    let ctx_len = src.cache.manifest().spec.ctx_len as usize;
    let coder = &src.loaded.coder;
    let (input, _) = src.loaded.meta.sides();
    let encoder = coder.encoder();
    let d = coder.cfg.d_in;
    let (mut f, mut open, mut partial) = (Firings::default(), Open::default(), 0u64);
    'shards: for i in 0..src.cache.num_shards() {
        let shard = src.cache.open_shard(i)?;
        let (tokens, seqs, positions) = (shard.token_ids(), shard.seq_ids(), shard.positions());
        for first in (0..shard.rows() as usize).step_by(CHUNK) {
            let rows = CHUNK.min(shard.rows() as usize - first);
            let mut x = vec![0f32; rows * d];
            shard.read_rows_f32(input.section(), first, &mut x);
            let enc = encoder.encode(&x, rows);
            for r in 0..rows {
                let row = first + r;
                if open.seq_id != Some(seqs[row]) || positions[row] as usize != open.tokens.len() {
                    partial += f.close(&mut open, ctx_len);
                    if f.tokens.len() / ctx_len == max_sequences {
                        break 'shards;
                    }
                    open.seq_id = Some(seqs[row]);
                }
                let pos = open.tokens.len() as u32;
                open.tokens.push(tokens[row] as i64);
                for j in r * enc.per_row..(r + 1) * enc.per_row {
                    if enc.acts[j].abs() > ACTIVE {
                        open.active.push((pos, enc.idx[j], enc.acts[j]));
                    }
                }
            }
        }
    }
    if f.tokens.len() / ctx_len < max_sequences {
        partial += f.close(&mut open, ctx_len);
    }
    Ok((f, partial))
}

/// delphi's split boundaries: `linspace(0, width, splits + 1)`, each range inclusive.
fn splits(width: usize, n: usize) -> Vec<(usize, usize)> {
    let b: Vec<usize> = (0..=n).map(|i| i * width / n).collect();
    b.windows(2).map(|w| (w[0], w[1] - 1)).collect()
}

/// Writes the latent cache of `src`'s coder into `out/latents/layers.L.mlp`, from at most `max_tokens`
/// tokens of whole sequences (all of the cache when None), in `n_splits` latent ranges.
pub fn export(
    src: &ExportSource,
    out: &Path,
    model_name: &str,
    max_tokens: Option<u64>,
    n_splits: usize,
) -> Result<Summary> {
    let spec = &src.cache.manifest().spec;
    let ctx_len = spec.ctx_len as usize;
    let width = src.loaded.coder.cfg.num_latents;
    if n_splits == 0 || n_splits > width {
        bail!("--splits must be between 1 and the coder's {width} latents, found {n_splits}");
    }
    let max_sequences = max_tokens.map_or(usize::MAX, |t| t as usize / ctx_len);
    let (f, partial_rows) = collect(src, max_sequences)?;
    let sequences = f.tokens.len() / ctx_len;
    if sequences == 0 {
        bail!(
            "{}: holds no whole sequence of {ctx_len} tokens",
            src.cache.dir().display()
        );
    }
    let hookpoint = format!("layers.{}.mlp", spec.layer);
    let dir = out.join("latents").join(&hookpoint);
    std::fs::create_dir_all(&dir)?;
    let provenance = HashMap::from([(
        "sparsecoder".to_string(),
        serde_json::to_string(&src.provenance)?,
    )]);
    let wide = sequences >= 1 << 16;
    for (start, end) in splits(width, n_splits) {
        let keep: Vec<usize> = (0..f.latent.len())
            .filter(|&i| (start..=end).contains(&(f.latent[i] as usize)))
            .collect();
        let triples: Vec<u32> = keep
            .iter()
            .flat_map(|&i| [f.seq[i], f.pos[i], f.latent[i] - start as u32])
            .collect();
        let narrow: Vec<u16>;
        let wide_here = wide || end - start >= 1 << 16;
        let locations = if wide_here {
            Values::U32(&triples)
        } else {
            narrow = triples.iter().map(|&v| v as u16).collect();
            Values::U16(&narrow)
        };
        let acts: Vec<half::f16> = keep
            .iter()
            .map(|&i| half::f16::from_f32(f.act[i]))
            .collect();
        let list = vec![
            ("locations".to_string(), vec![keep.len(), 3], locations),
            (
                "activations".to_string(),
                vec![keep.len()],
                Values::F16(&acts),
            ),
            (
                "tokens".to_string(),
                vec![sequences, ctx_len],
                Values::I64(&f.tokens),
            ),
        ];
        tensors::write(
            &dir.join(format!("{start}_{end}.safetensors")),
            &list,
            provenance.clone(),
        )?;
    }
    let config = json!({
        // delphi names a hub dataset here; ours is the corpus the extraction read.
        "dataset_repo": spec.corpus.get("path").and_then(|p| p.as_str()).map_or_else(|| spec.corpus.to_string(), str::to_string),
        "dataset_split": "",
        "dataset_name": "",
        "dataset_column": "text",
        "batch_size": CHUNK / ctx_len.max(1),
        "cache_ctx_len": ctx_len,
        "ctx_len": ctx_len,
        "n_tokens": sequences * ctx_len,
        "n_splits": n_splits,
        "model_name": model_name,
        "sparsecoder": src.provenance,
    });
    write_atomic(&dir.join("config.json"), |w| {
        w.write_all(serde_json::to_string_pretty(&config)?.as_bytes())
    })?;
    Ok(Summary {
        hookpoint,
        sequences,
        activations: f.latent.len(),
        partial_rows,
    })
}
