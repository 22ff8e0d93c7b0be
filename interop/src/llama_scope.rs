//! Llama Scope's JumpReLU coders (`hyperparams.json` + `checkpoints/final.safetensors`), read as SAELens reads
//! them (`get_llama_scope_config_from_hf`, `llama_scope_sae_huggingface_loader`, then
//! `fold_activation_norm_scaling_factor` in `SAE.from_pretrained`):
//!
//! ```text
//! tensors   encoder.weight [d_sae × d_model], encoder.bias, decoder.weight [d_model × d_sae], decoder.bias
//! hyperparams  d_model, d_sae, hook_point_in, hook_point_out, jump_relu_threshold (one scalar),
//!              dataset_average_activation_norm {in, out}
//! s_in = √d_model / norm_in,  s_out = √d_model / norm_out
//! encode: pre = s_in·(encoder.weight·x) + encoder.bias; acts = pre where pre > s_in·jump_relu_threshold
//! decode: (acts·decoder.weightᵀ + decoder.bias) / s_out
//! ```
//! SAELens folds one factor (the input's) into W_enc, W_dec and b_dec, as its SAEs read and write one hook; a
//! transcoder (`…TC…`, input and output hooks differ) takes s_out on the output side, by the same reasoning
//! (SAELens lists no Llama Scope transcoders, so that case is checked against these formulas only). Only coders
//! of an MLP are taken: an SAE on `blocks.L.hook_mlp_out`, or a transcoder writing it.

use crate::{tensors, ImportedCoder};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::Path;
use trainer::coder::{CoderConfig, Kind, SparseCoder};

fn number(h: &Value, pointer: &str, path: &Path) -> Result<f64> {
    h.pointer(pointer).and_then(Value::as_f64).ok_or_else(|| {
        anyhow!(
            "{}: {} is missing or not a number",
            path.display(),
            &pointer[1..]
        )
    })
}

/// Imports the Llama Scope coder in `dir` (holding hyperparams.json and checkpoints/final.safetensors).
pub fn import(dir: &Path, out: &Path) -> Result<()> {
    let hp_path = dir.join("hyperparams.json");
    let text =
        std::fs::read(&hp_path).with_context(|| format!("{}: cannot read", hp_path.display()))?;
    let h: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not valid JSON", hp_path.display()))?;
    let size = |name: &str| -> Result<usize> {
        let v = number(&h, &format!("/{name}"), &hp_path)?;
        (v >= 1.0 && v.fract() == 0.0)
            .then_some(v as usize)
            .ok_or_else(|| {
                anyhow!(
                    "{}: {name} must be a positive integer, found {v}",
                    hp_path.display()
                )
            })
    };
    let (d, latents) = (size("d_model")?, size("d_sae")?);
    let hook = |name: &str| {
        h.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: {name} is missing", hp_path.display()))
    };
    let (h_in, h_out) = (hook("hook_point_in")?, hook("hook_point_out")?);
    let layer = crate::mlp_out_layer(h_out).ok_or_else(|| {
        anyhow!(
            "{}: hook_point_out is {h_out:?}, expected blocks.L.hook_mlp_out (our coders read one MLP)",
            hp_path.display()
        )
    })?;
    let kind = if h_in == h_out {
        Kind::Sae
    } else {
        Kind::Transcoder
    };
    if kind == Kind::Transcoder && crate::hook_layer(h_in) != Some(layer) {
        bail!(
            "{}: hook_point_in {h_in:?} is not of layer {layer}",
            hp_path.display()
        );
    }
    let root_d = (d as f64).sqrt();
    let s_in = root_d / number(&h, "/dataset_average_activation_norm/in", &hp_path)?;
    let s_out = root_d / number(&h, "/dataset_average_activation_norm/out", &hp_path)?;
    let theta = number(&h, "/jump_relu_threshold", &hp_path)?;
    let file = dir.join("checkpoints/final.safetensors");
    let bytes = tensors::read_file(&file)?;
    let st = tensors::parse(&bytes, &file)?;
    let read = |name: &str, shape: &[usize]| tensors::read_f32(&st, name, shape, &file);
    let scale = |v: Vec<f32>, s: f64| {
        v.into_iter()
            .map(|x| (x as f64 * s) as f32)
            .collect::<Vec<_>>()
    };
    let dec_t = read("decoder.weight", &[d, latents])?;
    let mut coder = SparseCoder {
        cfg: CoderConfig {
            kind,
            d_in: d,
            d_out: d,
            num_latents: latents,
            k: latents,
        },
        w_enc: scale(read("encoder.weight", &[latents, d])?, s_in),
        b_enc: read("encoder.bias", &[latents])?,
        w_dec: scale(tensors::transpose(&dec_t, d, latents), 1.0 / s_out),
        b_dec: scale(read("decoder.bias", &[d])?, 1.0 / s_out),
        w_skip: None,
        threshold: Some(vec![(theta * s_in) as f32; latents]),
    };
    // Its encoder reads x as it is; our SAE's reads x − b_dec.
    if kind == Kind::Sae {
        crate::fold_input_bias(&mut coder);
    }
    crate::save_imported(
        out,
        ImportedCoder {
            coder,
            layer,
            format: "llama-scope",
            source: file,
            hooks: Some(match kind {
                Kind::Sae => h_out.to_string(),
                _ => format!("{h_in} → {h_out}"),
            }),
        },
    )
}
