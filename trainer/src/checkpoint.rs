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
use crate::coder::{CoderConfig, Kind, SparseCoder};
use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Our own description of a coder, beside sparsify's `cfg.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoderMeta {
    pub config: CoderConfig,
    /// For an SAE: the side it reconstructs (`mlp_in` or `mlp_out`); transcoders read `mlp_in`, predict `mlp_out`.
    pub sae_on: Option<String>,
    pub cache: String,
    pub layer: u32,
    pub step: u64,
    pub tokens: u64,
}

fn bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
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

fn params_of(c: &SparseCoder) -> Vec<(String, Vec<usize>, &[f32])> {
    let cfg = &c.cfg;
    let mut v = vec![
        (
            "encoder.weight".to_string(),
            vec![cfg.num_latents, cfg.d_in],
            c.w_enc.as_slice(),
        ),
        (
            "encoder.bias".to_string(),
            vec![cfg.num_latents],
            c.b_enc.as_slice(),
        ),
        (
            "W_dec".to_string(),
            vec![cfg.num_latents, cfg.d_out],
            c.w_dec.as_slice(),
        ),
        ("b_dec".to_string(), vec![cfg.d_out], c.b_dec.as_slice()),
    ];
    if let Some(w) = &c.w_skip {
        v.push((
            "W_skip".to_string(),
            vec![cfg.d_out, cfg.d_in],
            w.as_slice(),
        ));
    }
    v
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
        "activation": "topk",
        "expansion_factor": c.num_latents / c.d_in.max(1),
        "normalize_decoder": c.kind == Kind::Sae,
        "num_latents": c.num_latents,
        "k": c.k,
        "multi_topk": multi_topk,
        "skip_connection": c.kind == Kind::SkipTranscoder,
        "transcode": c.kind.transcodes(),
        "d_in": c.d_in,
    });
    let tensors: Vec<_> = params_of(coder)
        .into_iter()
        .map(|(n, s, d)| (n, s, bytes(d), Dtype::F32))
        .collect();
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

/// Loads a coder saved by [`save_coder`] (its `sparsecoder.json` gives the kind and widths).
pub fn load_coder(dir: &Path) -> Result<(SparseCoder, CoderMeta)> {
    let meta_path = dir.join("sparsecoder.json");
    let meta: CoderMeta = serde_json::from_slice(
        &std::fs::read(&meta_path)
            .with_context(|| format!("{}: cannot read", meta_path.display()))?,
    )
    .with_context(|| {
        format!(
            "{}: not a sparsecoder checkpoint description",
            meta_path.display()
        )
    })?;
    let path = dir.join("sae.safetensors");
    let data = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let st = SafeTensors::deserialize(&data)
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
        cfg: c,
    };
    Ok((coder, meta))
}

/// Everything needed to continue training one coder.
#[derive(Clone, Debug)]
pub struct CoderState {
    pub coder: SparseCoder,
    /// Adam moments, in the order of the parameter tensors (`encoder.weight`, `encoder.bias`, `W_dec`, `b_dec`,
    /// `W_skip`).
    pub moments: Vec<Moments>,
    pub tokens_since_fired: Vec<u64>,
}

impl CoderState {
    /// A coder before its first step: zero moments, no latent counted as silent yet.
    pub fn fresh(coder: SparseCoder) -> CoderState {
        let mut moments = vec![
            Moments::zeros(coder.w_enc.len()),
            Moments::zeros(coder.b_enc.len()),
            Moments::zeros(coder.w_dec.len()),
            Moments::zeros(coder.b_dec.len()),
        ];
        if let Some(w) = &coder.w_skip {
            moments.push(Moments::zeros(w.len()));
        }
        CoderState {
            tokens_since_fired: vec![0; coder.cfg.num_latents],
            coder,
            moments,
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
    for ((name, shape, data), m) in params.iter().zip(&s.moments) {
        tensors.push((
            format!("param.{name}"),
            shape.clone(),
            bytes(data),
            Dtype::F32,
        ));
        tensors.push((
            format!("adam_m.{name}"),
            shape.clone(),
            bytes(&m.m),
            Dtype::F32,
        ));
        tensors.push((
            format!("adam_v.{name}"),
            shape.clone(),
            bytes(&m.v),
            Dtype::F32,
        ));
    }
    // SAFETY: u64 has no padding.
    let fired = unsafe {
        std::slice::from_raw_parts(
            s.tokens_since_fired.as_ptr() as *const u8,
            s.tokens_since_fired.len() * 8,
        )
    };
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
    let shapes: Vec<(String, Vec<usize>)> = params_of(&coder)
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    let mut moments = Vec::new();
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let p = f32s(&st, &format!("param.{name}"), shape, path)?;
        match i {
            0 => coder.w_enc = p,
            1 => coder.b_enc = p,
            2 => coder.w_dec = p,
            3 => coder.b_dec = p,
            _ => coder.w_skip = Some(p),
        }
        moments.push(Moments {
            m: f32s(&st, &format!("adam_m.{name}"), shape, path)?,
            v: f32s(&st, &format!("adam_v.{name}"), shape, path)?,
        });
    }
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
    })
}
