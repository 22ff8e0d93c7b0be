//! Checkpoints. Each coder's folder holds sparsify's layout, so `sparsify.SparseCoder.load_from_disk` loads it
//! unchanged:
//!
//! ```text
//! <coder>/cfg.json            sparsify's SparseCoderConfig keys + d_in
//! <coder>/sae.safetensors     encoder.weight [L×d_in], encoder.bias [L], W_dec [L×d_out], b_dec [d_out],
//!                             W_skip [d_out×d_in] (SST only); f32
//! <coder>/sparsecoder.json    what sparsify's files cannot say: kind, which side an SAE reads, the cache
//! <coder>/state-{0,1}.safetensors   training state: parameters, Adam moments, dead-latent counters
//! ```
//! The run folder's `train_state.json` names the state generation that is complete; a save writes the other
//! generation first and switches the pointer last, so a crash at any moment leaves a resumable run.

use crate::adam::Moments;
use crate::coder::{Activation, CoderConfig, Kind, SparseCoder};
use crate::regression::AffineMap;
use crate::tensors::Tensors;
use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use cache_format::{CacheSpec, Side};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Our own description of a coder, beside sparsify's `cfg.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoderMeta {
    pub config: CoderConfig,
    /// For an SAE: the side it reconstructs (`mlp_in` or `mlp_out`); transcoders read `mlp_in`, predict `mlp_out`.
    pub sae_on: Option<Side>,
    pub cache: String,
    pub layer: u32,
    pub step: u64,
    pub tokens: u64,
    /// Where a coder made by `sparsecoder import` came from (None for coders we trained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// TopK, or JumpReLU for an imported coder (its thresholds are the tensor `threshold`).
    #[serde(default, skip_serializing_if = "Activation::is_topk")]
    pub activation: Activation,
}

/// The published coder an imported one was converted from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    /// The source layout: `saelens`, `circuit-tracer`, ...
    pub format: String,
    /// The file or folder read, as given.
    pub source: String,
    /// sha256 (hex) of the weights file read.
    pub sha256: String,
    /// The hooks it read and wrote, as its files name them (e.g. `blocks.3.ln2.hook_normalized →
    /// blocks.3.hook_mlp_out`), where they say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<String>,
}

impl CoderMeta {
    /// The cache sides the coder reads: (input, target).
    pub fn sides(&self) -> (Side, Side) {
        io_sides(self.config.kind, self.sae_on.unwrap_or(Side::MlpOut))
    }
}

/// The cache sides a coder of `kind` reads, (input, target): an SAE reconstructs `sae_on`; transcoders map
/// the MLP's input to its output.
pub fn io_sides(kind: Kind, sae_on: Side) -> (Side, Side) {
    match kind {
        Kind::Sae => (sae_on, sae_on),
        _ => (Side::MlpIn, Side::MlpOut),
    }
}

fn serialize(
    tensors: &[(String, Vec<usize>, &[u8], Dtype)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, shape, data, dt)| Ok((n.clone(), TensorView::new(*dt, shape.clone(), data)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, metadata)?)
}

/// Each parameter tensor of `c` with its name and shape, in checkpoint order.
fn params_of(c: &SparseCoder) -> Vec<(&'static str, Vec<usize>, &[f32])> {
    let shapes = c.shapes();
    c.tensors()
        .named()
        .into_iter()
        .zip(shapes.list())
        .map(|((name, data), shape)| (name, shape.clone(), *data))
        .collect()
}

/// Writes `cfg.json`, `sae.safetensors` and `sparsecoder.json` into `dir`, each atomically.
pub fn save_coder(
    dir: &Path,
    coder: &SparseCoder,
    meta: &CoderMeta,
    multi_topk: bool,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create checkpoint folder", dir.display()))?;
    let c = &coder.cfg;
    let cfg = serde_json::json!({
        "activation": if coder.threshold.is_some() { "jumprelu" } else { "topk" },
        "expansion_factor": c.num_latents / c.d_in.max(1),
        "normalize_decoder": c.kind == Kind::Sae,
        "num_latents": c.num_latents,
        "k": c.k,
        "multi_topk": multi_topk,
        "skip_connection": c.kind == Kind::SkipTranscoder,
        "transcode": c.kind.transcodes(),
        "d_in": c.d_in,
    });
    let mut tensors: Vec<_> = params_of(coder)
        .into_iter()
        .map(|(n, s, d)| (n.to_string(), s, bytemuck::cast_slice(d), Dtype::F32))
        .collect();
    if let Some(t) = &coder.threshold {
        tensors.push((
            "threshold".into(),
            vec![t.len()],
            bytemuck::cast_slice(t),
            Dtype::F32,
        ));
    }
    if coder.threshold.is_some() != (meta.activation == Activation::JumpRelu) {
        bail!(
            "{}: a JumpReLU coder needs thresholds, a TopK one none",
            dir.display()
        );
    }
    let st = serialize(&tensors, None)?;
    write_atomic(&dir.join("sae.safetensors"), |w| w.write_all(&st))?;
    write_atomic(&dir.join("cfg.json"), |w| {
        w.write_all(serde_json::to_string_pretty(&cfg)?.as_bytes())
    })?;
    write_atomic(&dir.join("sparsecoder.json"), |w| {
        w.write_all(serde_json::to_string_pretty(meta)?.as_bytes())
    })?;
    Ok(())
}

fn f32s(st: &SafeTensors, name: &str, want: &[usize], path: &Path) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .map_err(|_| anyhow!("{}: tensor {name} is missing", path.display()))?;
    if t.dtype() != Dtype::F32 {
        bail!(
            "{}: tensor {name} is {:?}, expected F32",
            path.display(),
            t.dtype()
        );
    }
    if t.shape() != want {
        bail!(
            "{}: tensor {name} has shape {:?}, expected {want:?}",
            path.display(),
            t.shape()
        );
    }
    let mut values: Vec<f32> = crate::huge_pages::zeros(t.data().len() / 4);
    for (v, c) in values.iter_mut().zip(t.data().chunks_exact(4)) {
        *v = f32::from_le_bytes(c.try_into().unwrap());
    }
    Ok(values)
}

/// A coder description read from disk, refused unless its sizes can describe a coder.
fn check_config(c: &CoderConfig, path: &Path) -> Result<()> {
    for (field, v) in [
        ("d_in", c.d_in),
        ("d_out", c.d_out),
        ("num_latents", c.num_latents),
    ] {
        if v == 0 {
            bail!(
                "{}: config.{field} must be at least 1, found 0",
                path.display()
            );
        }
    }
    if c.k == 0 || c.k > c.num_latents {
        bail!(
            "{}: config.k must be between 1 and config.num_latents ({}), found {}",
            path.display(),
            c.num_latents,
            c.k
        );
    }
    if !c.kind.transcodes() && c.d_in != c.d_out {
        bail!(
            "{}: an SAE reconstructs its input, so config.d_in and config.d_out must agree, found {} and {}",
            path.display(),
            c.d_in,
            c.d_out
        );
    }
    Ok(())
}

/// sparsify's `cfg.json` beside our description must describe the same coder (what sparsify loads is what we
/// evaluate): k, num_latents, d_in and the kind's flags; a disagreement is refused naming both files.
fn check_agrees_with_cfg(
    c: &CoderConfig,
    text: &[u8],
    cfg_path: &Path,
    meta_path: &Path,
) -> Result<()> {
    let cfg: serde_json::Value = serde_json::from_slice(text)
        .with_context(|| format!("{}: not valid JSON", cfg_path.display()))?;
    let ours = [
        ("k", serde_json::json!(c.k)),
        ("num_latents", serde_json::json!(c.num_latents)),
        ("d_in", serde_json::json!(c.d_in)),
        ("transcode", serde_json::json!(c.kind.transcodes())),
        (
            "skip_connection",
            serde_json::json!(c.kind == Kind::SkipTranscoder),
        ),
    ];
    for (field, want) in ours {
        if cfg.get(field) != Some(&want) {
            bail!(
                "{}: {field} is {}, but {} describes {want}; the two files must agree",
                cfg_path.display(),
                cfg.get(field)
                    .map_or("missing".to_string(), |v| v.to_string()),
                meta_path.display()
            );
        }
    }
    Ok(())
}

/// Loads a coder saved by [`save_coder`] (its `sparsecoder.json` gives the kind and widths).
pub fn load_coder(dir: &Path) -> Result<(SparseCoder, CoderMeta)> {
    let read = |name: &str, what: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("{}: cannot read{what}", path.display()))
    };
    let meta = read("sparsecoder.json", "")?;
    let cfg = read("cfg.json", " (sparsify's half of the checkpoint)")?;
    let tensors = read("sae.safetensors", "")?;
    parse_coder(&meta, &cfg, &tensors, dir)
}

/// A coder from the bytes of its three files (`sparsecoder.json`, `cfg.json`, `sae.safetensors`) in `dir`
/// (named in errors): every field checked before use, so no input panics (fuzzed: `fuzz/`).
pub fn parse_coder(
    meta: &[u8],
    cfg: &[u8],
    tensors: &[u8],
    dir: &Path,
) -> Result<(SparseCoder, CoderMeta)> {
    let meta_path = dir.join("sparsecoder.json");
    let meta: CoderMeta = serde_json::from_slice(meta).with_context(|| {
        format!(
            "{}: not a sparsecoder checkpoint description",
            meta_path.display()
        )
    })?;
    check_config(&meta.config, &meta_path)?;
    check_agrees_with_cfg(&meta.config, cfg, &dir.join("cfg.json"), &meta_path)?;
    let path = dir.join("sae.safetensors");
    let st = SafeTensors::deserialize(tensors)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let c = meta.config.clone();
    let coder = SparseCoder {
        w_enc: f32s(&st, "encoder.weight", &[c.num_latents, c.d_in], &path)?,
        b_enc: f32s(&st, "encoder.bias", &[c.num_latents], &path)?,
        w_dec: f32s(&st, "W_dec", &[c.num_latents, c.d_out], &path)?,
        b_dec: f32s(&st, "b_dec", &[c.d_out], &path)?,
        w_skip: if c.kind == Kind::SkipTranscoder {
            Some(f32s(&st, "W_skip", &[c.d_out, c.d_in], &path)?)
        } else {
            None
        },
        threshold: match meta.activation {
            Activation::JumpRelu => Some(f32s(&st, "threshold", &[c.num_latents], &path)?),
            Activation::TopK => None,
        },
        cfg: c,
    };
    Ok((coder, meta))
}

/// Everything needed to continue training one coder.
#[derive(Clone, Debug)]
pub struct CoderState {
    pub coder: SparseCoder,
    /// Adam moments of each parameter tensor.
    pub moments: Tensors<Moments>,
    pub tokens_since_fired: Vec<u64>,
    /// A skip transcoder's W_skip and b_dec from the linear baseline (`--skip-init regression`), applied after
    /// the step-0 initialisation; never saved (it only matters before the first step).
    pub skip_init: Option<AffineMap>,
}

impl CoderState {
    /// A coder before its first step: zero moments, no latent counted as silent yet.
    pub fn fresh(coder: SparseCoder) -> CoderState {
        CoderState {
            tokens_since_fired: vec![0; coder.cfg.num_latents],
            moments: coder.tensors().map(|t| Moments::zeros(t.len())),
            coder,
            skip_init: None,
        }
    }

    /// Step 0: the initialisation from the first batch (b_dec = mean target, b_enc centring the
    /// pre-activations), then for a skip transcoder with a regression skip-init W_skip and b_dec from the
    /// linear map, so that its first prediction is the map's.
    pub fn init_from_batch(&mut self, x: &[f32], y: &[f32], rows: usize) {
        self.coder.init_from_batch(x, y, rows);
        if let Some(map) = self.skip_init.take() {
            assert!(
                self.coder.w_skip.is_some(),
                "a skip init needs a skip transcoder"
            );
            self.coder.w_skip = Some(map.w);
            self.coder.b_dec = map.b;
        }
    }
}

pub fn save_state(path: &Path, s: &CoderState) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create checkpoint folder", dir.display()))?;
    }
    let params = params_of(&s.coder);
    let mut tensors: Vec<(String, Vec<usize>, &[u8], Dtype)> = Vec::new();
    for ((name, shape, data), m) in params.iter().zip(s.moments.list()) {
        tensors.push((
            format!("param.{name}"),
            shape.clone(),
            bytemuck::cast_slice(data),
            Dtype::F32,
        ));
        tensors.push((
            format!("adam_m.{name}"),
            shape.clone(),
            bytemuck::cast_slice(&m.m),
            Dtype::F32,
        ));
        tensors.push((
            format!("adam_v.{name}"),
            shape.clone(),
            bytemuck::cast_slice(&m.v),
            Dtype::F32,
        ));
    }
    let fired = bytemuck::cast_slice(&s.tokens_since_fired);
    tensors.push((
        "tokens_since_fired".into(),
        vec![s.tokens_since_fired.len()],
        fired,
        Dtype::U64,
    ));
    let st = serialize(&tensors, None)?;
    write_atomic(path, |w| w.write_all(&st))?;
    Ok(())
}

pub fn load_state(path: &Path, cfg: &CoderConfig) -> Result<CoderState> {
    let data = std::fs::read(path)
        .with_context(|| format!("{}: cannot read training state", path.display()))?;
    let st = SafeTensors::deserialize(&data)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let mut coder = SparseCoder::new(cfg.clone(), 0);
    let shapes = coder.shapes();
    let tensor = |prefix: &str| {
        shapes.try_map(|name, shape| f32s(&st, &format!("{prefix}.{name}"), shape, path))
    };
    coder.set_tensors(tensor("param")?);
    let moments = tensor("adam_m")?
        .zip(tensor("adam_v")?)
        .into_map(|(m, v)| Moments { m, v });
    let t = st
        .tensor("tokens_since_fired")
        .map_err(|_| anyhow!("{}: tensor tokens_since_fired is missing", path.display()))?;
    if t.dtype() != Dtype::U64 || t.shape() != [cfg.num_latents] {
        bail!(
            "{}: tokens_since_fired must be U64 [{}]",
            path.display(),
            cfg.num_latents
        );
    }
    let tokens_since_fired = t
        .data()
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Ok(CoderState {
        coder,
        moments,
        tokens_since_fired,
        skip_init: None,
    })
}

/// A trained coder read from its folder, with the folder's name.
pub struct LoadedCoder {
    pub name: String,
    pub coder: SparseCoder,
    pub meta: CoderMeta,
}

/// Every coder folder at or directly below each path, in sorted order.
pub fn find_coders(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for p in paths {
        if p.join("sparsecoder.json").exists() {
            found.push(p.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("{}: cannot read checkpoints folder", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|d| d.join("sparsecoder.json").exists())
            .collect();
        if subs.is_empty() {
            bail!(
                "{}: holds no coder (no sparsecoder.json in it or its subfolders)",
                p.display()
            );
        }
        subs.sort();
        found.extend(subs);
    }
    Ok(found)
}

/// The coder in `dir`, refused unless it was trained on the cache's layer and width.
pub fn load_for_cache(dir: &Path, spec: &CacheSpec) -> Result<LoadedCoder> {
    let (coder, meta) = load_coder(dir)?;
    for_cache(dir, coder, meta, spec)
}

/// A coder already read from `dir` ([`load_coder`]), refused unless it was trained on the cache's layer and
/// width.
pub fn for_cache(
    dir: &Path,
    coder: SparseCoder,
    meta: CoderMeta,
    spec: &CacheSpec,
) -> Result<LoadedCoder> {
    if meta.layer != spec.layer || coder.cfg.d_in != spec.d_in as usize {
        bail!(
            "{}: trained on layer {} width {}, but the cache holds layer {} width {}",
            dir.display(),
            meta.layer,
            coder.cfg.d_in,
            spec.layer,
            spec.d_in
        );
    }
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    Ok(LoadedCoder { name, coder, meta })
}
