//! Other tools' formats: our coders exported to the layouts SAELens and circuit-tracer load, and their
//! published coders imported into ours so that `eval` and `interp` take them.
//!
//! Each format is one module (`saelens`, `circuit_tracer`, `delphi`, `features`, `gemma_scope`, `llama_scope`), holding both directions and the rules that
//! decide whether a coder can be carried exactly. A coder whose function the target cannot compute is
//! refused with one line naming the field, never exported as something else. Every export records where it
//! came from ([`Provenance`]: our checkpoint's sha256 and the cache's id) and writes a sample of held-out rows
//! with our coder's latents and output on them ([`sample`]), so that the other tool's own code can be checked
//! against ours (`scripts/check_exports.py`).

pub mod circuit_tracer;
pub mod delphi;
pub mod features;
pub mod gemma_scope;
pub mod llama_scope;
mod npz;
pub mod saelens;
pub mod sample;
mod tensors;

use anyhow::{bail, Context, Result};
use cache_format::{Cache, CacheSpec, Side};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use trainer::checkpoint::{for_cache, save_coder, CoderMeta, Imported, LoadedCoder};
use trainer::coder::{Activation, Kind, SparseCoder};

/// The layouts `sparsecoder export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ExportFormat {
    /// SAELens v6 `topk` SAEs (one folder per coder).
    Saelens,
    /// A circuit-tracer transcoder set (one file per layer).
    CircuitTracer,
    /// delphi's latent cache of a coder on our cache's sequences (one hookpoint per coder).
    Delphi,
}

/// The layouts `sparsecoder import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ImportFormat {
    /// A SAELens folder: `topk`, `jumprelu`, `jumprelu_transcoder`, `jumprelu_skip_transcoder`.
    Saelens,
    /// A circuit-tracer transcoder set (TopK with k, or JumpReLU).
    CircuitTracer,
    /// Gemma Scope's `params.npz` (1) or `params.safetensors` (2, lowercase keys, affine skip).
    GemmaScope,
    /// Llama Scope's `hyperparams.json` + `checkpoints/final.safetensors` (MLP-output SAEs, transcoders).
    LlamaScope,
}

/// A coder read from another tool's files, before it is saved in our layout.
pub struct ImportedCoder {
    pub coder: SparseCoder,
    pub layer: u32,
    /// The `Imported` record: format, file read (its sha256 is taken here), hooks.
    pub format: &'static str,
    pub source: PathBuf,
    pub hooks: Option<String>,
}

/// Saves an imported coder into `out` in our layout (sparsify's files + sparsecoder.json saying where it came
/// from). JumpReLU thresholds below 0 are refused: the releases' definitions differ there.
pub fn save_imported(out: &Path, c: ImportedCoder) -> Result<()> {
    if let Some(t) = &c.coder.threshold {
        if let Some((latent, v)) = trainer::jump_relu::negative_threshold(t) {
            bail!(
                "{}: threshold of latent {latent} is {v}: JumpReLU thresholds must be at least 0",
                c.source.display()
            );
        }
    }
    let meta = CoderMeta {
        config: c.coder.cfg.clone(),
        sae_on: (c.coder.cfg.kind == Kind::Sae).then_some(Side::MlpOut),
        cache: String::new(),
        layer: c.layer,
        step: 0,
        tokens: 0,
        imported: Some(Imported {
            format: c.format.to_string(),
            source: c.source.display().to_string(),
            sha256: sha256_file(&c.source)?,
            hooks: c.hooks,
        }),
        activation: match c.coder.threshold {
            Some(_) => Activation::JumpRelu,
            None => Activation::TopK,
        },
    };
    save_coder(out, &c.coder, &meta, false)
}

/// The layer L of the hook `blocks.L.hook_mlp_out` (the MLP's output), None for any other hook.
pub(crate) fn mlp_out_layer(hook: &str) -> Option<u32> {
    hook.strip_prefix("blocks.")?
        .strip_suffix(".hook_mlp_out")?
        .parse()
        .ok()
}

/// The layer of a TransformerLens hook `blocks.L.…`.
pub(crate) fn hook_layer(hook: &str) -> Option<u32> {
    hook.strip_prefix("blocks.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// For an SAE whose encoder reads x (not x − b_dec, as ours does): b_enc' = b_enc + W_enc·b_dec makes ours
/// compute the same pre-activations.
pub fn fold_input_bias(c: &mut SparseCoder) {
    let d = c.cfg.d_in;
    for (l, b) in c.b_enc.iter_mut().enumerate() {
        let row = &c.w_enc[l * d..(l + 1) * d];
        *b += row.iter().zip(&c.b_dec).map(|(w, x)| w * x).sum::<f32>();
    }
}

/// One of our coders, opened for export with the cache it was trained on.
pub struct ExportSource {
    pub dir: PathBuf,
    pub loaded: LoadedCoder,
    pub cache: Cache,
    pub provenance: Provenance,
}

/// Where an exported file came from.
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    pub exported_by: String,
    /// The coder's folder, as given.
    pub checkpoint: String,
    /// sha256 (hex) of its `sae.safetensors`.
    pub checkpoint_sha256: String,
    /// The cache's folder and id (`CacheSpec::id`: what the extraction computed).
    pub cache: String,
    pub cache_id: String,
    pub model: String,
    pub layer: u32,
}

/// Opens the coder in `dir` with its cache: `cache` when given (for a multi-layer extraction, its
/// `layer-L` for the coder's layer), else the one its `sparsecoder.json` names.
pub fn open_source(dir: &Path, cache: Option<&Path>) -> Result<ExportSource> {
    let (coder, meta) = trainer::checkpoint::load_coder(dir)?;
    let cache_dir = match cache {
        None => PathBuf::from(&meta.cache),
        Some(c) if c.join("manifest.json").exists() => c.to_path_buf(),
        Some(c) => c.join(format!("layer-{}", meta.layer)),
    };
    let cache = Cache::open(&cache_dir).with_context(|| {
        format!(
            "{}: an export needs the cache the coder was trained on (for its model, layer and held-out rows); \
             pass --cache",
            dir.display()
        )
    })?;
    let spec = &cache.manifest().spec;
    let loaded = for_cache(dir, coder, meta, spec)?;
    let provenance = Provenance {
        exported_by: format!("sparsecoder {}", env!("CARGO_PKG_VERSION")),
        checkpoint: dir.display().to_string(),
        checkpoint_sha256: sha256_file(&dir.join("sae.safetensors"))?,
        cache: cache_dir.display().to_string(),
        cache_id: spec.id(),
        model: spec.model.name.clone(),
        layer: spec.layer,
    };
    Ok(ExportSource {
        dir: dir.to_path_buf(),
        loaded,
        cache,
        provenance,
    })
}

/// sha256 of a file's bytes, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The model name an export writes: `--model-name` when given, else the cache's.
pub fn model_name(spec: &CacheSpec, given: Option<&str>) -> String {
    given.map_or_else(|| spec.model.name.clone(), str::to_string)
}

/// Refuses an output folder that already holds files, so an export never mixes with an earlier one.
pub fn fresh_out_dir(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("{}: cannot read output folder", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "{}: the output folder is not empty; give a new folder",
                out.display()
            );
        }
    }
    Ok(cache_format::fsutil::prepare_output_dir(out)?)
}
