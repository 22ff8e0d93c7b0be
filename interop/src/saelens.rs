//! SAELens (v6) folders: `cfg.json`, `sae_weights.safetensors` and `sparsity.safetensors`, as
//! `SAE.load_from_disk` reads them.
//!
//! ```text
//! architecture "topk":  acts = ReLU(TopK(W_encᵀ-form (x − b_dec·apply_b_dec_to_input) + b_enc, k))
//!                       out  = acts · W_dec + b_dec
//! tensors: W_enc [d_in × d_sae], b_enc [d_sae], W_dec [d_sae × d_in], b_dec [d_in]
//! ```
//! ReLU after TopK keeps the same latents as our TopK after ReLU (only the positive ones survive either way),
//! so an SAE is carried exactly: W_enc is our encoder transposed, the rest is copied. SAELens's transcoder
//! classes are ReLU or JumpReLU and read no k, so our transcoders are refused rather than exported as a
//! different function. Only an SAE on the MLP's output has a TransformerLens hook that holds what it read
//! (`blocks.L.hook_mlp_out`); our mlp_in is the MLP's input after the RMSNorm weight, which no TL hook holds.
//!
//! Import reads `topk` SAEs, folding `apply_b_dec_to_input: false` into b_enc and
//! `rescale_acts_by_decoder_norm: true` into W_enc, b_enc and W_dec (both exact up to rounding).

use crate::tensors::{self, Values};
use crate::{sample, ExportSource};
use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use cache_format::Side;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use trainer::checkpoint::{save_coder, CoderMeta, Imported};
use trainer::coder::{CoderConfig, Kind, SparseCoder};

pub const CFG: &str = "cfg.json";
pub const WEIGHTS: &str = "sae_weights.safetensors";
pub const SPARSITY: &str = "sparsity.safetensors";

/// SAELens adds this to each latent's firing frequency before log10 (its training runner's convention), so
/// a dead latent reads -10.
const SPARSITY_EPS: f64 = 1e-10;

/// The TransformerLens hook holding what an SAE of ours read, or a one-line refusal.
fn hook_name(src: &ExportSource) -> Result<String> {
    let meta = &src.loaded.meta;
    if meta.config.kind != Kind::Sae {
        bail!(
            "{}: config.kind is {}: SAELens 6's transcoder and skip_transcoder are ReLU or JumpReLU and read \
             no k, so a TopK transcoder there would compute a different function; use --format circuit-tracer",
            src.dir.display(),
            meta.config.kind.short()
        );
    }
    match meta.sae_on.unwrap_or(Side::MlpOut) {
        Side::MlpOut => Ok(format!("blocks.{}.hook_mlp_out", meta.layer)),
        Side::MlpIn => bail!(
            "{}: sae_on is mlp_in: no TransformerLens hook holds the MLP's input after the RMSNorm weight \
             (ln2.hook_normalized is taken before it), so SAELens could not run this SAE where it was trained",
            src.dir.display()
        ),
    }
}

/// Exports one SAE into `out` (a new folder): cfg.json, the weights, the held-out sparsity and our check
/// rows.
pub fn export(src: &ExportSource, out: &Path, model_name: &str, sample_rows: usize) -> Result<()> {
    let hook = hook_name(src)?;
    let c = &src.loaded.coder;
    let (d, latents) = (c.cfg.d_in, c.cfg.num_latents);
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let cfg = json!({
        "architecture": "topk",
        "d_in": d,
        "d_sae": latents,
        "k": c.cfg.k,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": true,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "rescale_acts_by_decoder_norm": false,
        "metadata": {
            "model_name": model_name,
            "hook_name": hook,
            "hook_head_index": null,
            "context_size": src.cache.manifest().spec.ctx_len,
            "sparsecoder": src.provenance,
        },
    });
    let w_enc = tensors::transpose(&c.w_enc, latents, d);
    let weights = [
        ("W_enc", vec![d, latents], Values::F32(&w_enc)),
        ("b_enc", vec![latents], Values::F32(&c.b_enc)),
        ("W_dec", vec![latents, d], Values::F32(&c.w_dec)),
        ("b_dec", vec![d], Values::F32(&c.b_dec)),
    ]
    .map(|(n, s, v)| (n.to_string(), s, v));
    let provenance = HashMap::from([(
        "sparsecoder".to_string(),
        serde_json::to_string(&src.provenance)?,
    )]);
    tensors::write(&out.join(WEIGHTS), &weights, provenance.clone())?;
    let sparsity = log10_sparsity(src)?;
    tensors::write(
        &out.join(SPARSITY),
        &[(
            "sparsity".to_string(),
            vec![latents],
            Values::F32(&sparsity),
        )],
        provenance,
    )?;
    sample::write(out, &[(String::new(), sample::take(src, sample_rows)?)])?;
    write_atomic(&out.join(CFG), |w| {
        w.write_all(serde_json::to_string_pretty(&cfg)?.as_bytes())
    })?;
    Ok(())
}

/// log10 of each latent's firing frequency on the cache's held-out shard, as SAELens's `sparsity` tensor.
fn log10_sparsity(src: &ExportSource) -> Result<Vec<f32>> {
    let (_, held) = src.cache.split(1)?;
    let c = &src.loaded.coder;
    let stats = evals::activations::stats(&src.cache, &held, c, &c.encoder(), &src.loaded.meta)?;
    Ok(stats
        .fired
        .iter()
        .map(|&f| (f as f64 / stats.rows.max(1) as f64 + SPARSITY_EPS).log10() as f32)
        .collect())
}

fn field<'a>(cfg: &'a Value, name: &str, path: &Path) -> Result<&'a Value> {
    cfg.get(name)
        .ok_or_else(|| anyhow!("{}: field {name} is missing", path.display()))
}

fn usize_field(cfg: &Value, name: &str, path: &Path) -> Result<usize> {
    let v = field(cfg, name, path)?;
    v.as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| {
            anyhow!(
                "{}: {name} must be a positive integer, found {v}",
                path.display()
            )
        })
}

/// The layer of a `blocks.L.hook_mlp_out` hook, or a refusal naming what was found.
fn layer_of_hook(hook: &str, path: &Path) -> Result<u32> {
    hook.strip_prefix("blocks.")
        .and_then(|rest| rest.strip_suffix(".hook_mlp_out"))
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| {
            anyhow!(
                "{}: metadata.hook_name is {hook:?}, expected blocks.L.hook_mlp_out (our coders read one MLP's \
                 input or output)",
                path.display()
            )
        })
}

/// Imports the SAELens `topk` SAE in `dir` into our layout in `out`.
pub fn import(dir: &Path, out: &Path) -> Result<()> {
    let cfg_path = dir.join(CFG);
    let text =
        std::fs::read(&cfg_path).with_context(|| format!("{}: cannot read", cfg_path.display()))?;
    let cfg: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not valid JSON", cfg_path.display()))?;
    let arch = field(&cfg, "architecture", &cfg_path)?;
    if arch != "topk" {
        bail!(
            "{}: architecture is {arch}, expected \"topk\" (our coders are TopK; SAELens's other architectures \
             compute a different function)",
            cfg_path.display()
        );
    }
    for (name, want) in [
        ("normalize_activations", "none"),
        ("reshape_activations", "none"),
    ] {
        if let Some(v) = cfg.get(name).filter(|v| *v != want) {
            bail!("{}: {name} is {v}, expected \"{want}\"", cfg_path.display());
        }
    }
    let (d, latents, k) = (
        usize_field(&cfg, "d_in", &cfg_path)?,
        usize_field(&cfg, "d_sae", &cfg_path)?,
        usize_field(&cfg, "k", &cfg_path)?,
    );
    let hook = cfg
        .pointer("/metadata/hook_name")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{}: metadata.hook_name is missing", cfg_path.display()))?;
    let layer = layer_of_hook(hook, &cfg_path)?;
    let flag =
        |name: &str, default: bool| cfg.get(name).and_then(Value::as_bool).unwrap_or(default);
    let weights_path = dir.join(WEIGHTS);
    let bytes = tensors::read_file(&weights_path)?;
    let st = tensors::parse(&bytes, &weights_path)?;
    let w_enc_t = tensors::read_f32(&st, "W_enc", &[d, latents], &weights_path)?;
    let mut coder = SparseCoder {
        cfg: CoderConfig {
            kind: Kind::Sae,
            d_in: d,
            d_out: d,
            num_latents: latents,
            k,
        },
        w_enc: tensors::transpose(&w_enc_t, d, latents),
        b_enc: tensors::read_f32(&st, "b_enc", &[latents], &weights_path)?,
        w_dec: tensors::read_f32(&st, "W_dec", &[latents, d], &weights_path)?,
        b_dec: tensors::read_f32(&st, "b_dec", &[d], &weights_path)?,
        w_skip: None,
    };
    if k > latents {
        bail!(
            "{}: k is {k}, more than d_sae ({latents})",
            cfg_path.display()
        );
    }
    if !flag("apply_b_dec_to_input", true) {
        fold_input_bias(&mut coder);
    }
    if flag("rescale_acts_by_decoder_norm", false) {
        fold_decoder_norm(&mut coder);
    }
    let meta = CoderMeta {
        config: coder.cfg.clone(),
        sae_on: Some(Side::MlpOut),
        cache: String::new(),
        layer,
        step: 0,
        tokens: 0,
        imported: Some(Imported {
            format: "saelens".into(),
            source: dir.display().to_string(),
            sha256: crate::sha256_file(&weights_path)?,
        }),
    };
    save_coder(out, &coder, &meta, false)
}

/// SAELens without `apply_b_dec_to_input` encodes W·x + b; ours encodes W·(x − b_dec) + b', so b' = b + W·b_dec.
fn fold_input_bias(c: &mut SparseCoder) {
    let d = c.cfg.d_in;
    for (l, b) in c.b_enc.iter_mut().enumerate() {
        let row = &c.w_enc[l * d..(l + 1) * d];
        *b += row.iter().zip(&c.b_dec).map(|(w, x)| w * x).sum::<f32>();
    }
}

/// `rescale_acts_by_decoder_norm`: SAELens ranks pre·‖W_dec[l]‖ and decodes acts/‖W_dec[l]‖·W_dec[l]; scaling
/// W_enc's row l and b_enc[l] by that norm and dividing W_dec's row l by it computes the same.
fn fold_decoder_norm(c: &mut SparseCoder) {
    let (d_in, d_out) = (c.cfg.d_in, c.cfg.d_out);
    for l in 0..c.cfg.num_latents {
        let dec = &mut c.w_dec[l * d_out..(l + 1) * d_out];
        let norm = dec.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm == 0.0 {
            continue;
        }
        dec.iter_mut().for_each(|v| *v /= norm);
        c.w_enc[l * d_in..(l + 1) * d_in]
            .iter_mut()
            .for_each(|v| *v *= norm);
        c.b_enc[l] *= norm;
    }
}
