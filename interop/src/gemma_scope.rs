//! Gemma Scope's JumpReLU coders, read from their release files into our layout.
//!
//! ```text
//! Gemma Scope 1  <release>/layer_L/width_16k/average_l0_N/params.npz
//!                W_enc [d_model × d_sae], W_dec [d_sae × d_model], b_enc, b_dec, threshold
//! Gemma Scope 2  <site>/layer_L_width_16k_l0_small/params.safetensors
//!                w_enc [d_in × d_sae], w_dec [d_sae × d_out], b_enc, b_dec, threshold,
//!                affine_skip_connection [d_in × d_out] (skip transcoders)
//! encode: pre = x·W_enc + b_enc; acts = pre where pre > threshold (with ReLU, the same for threshold ≥ 0)
//! decode: acts·W_dec + b_dec (+ x·affine_skip_connection)
//! ```
//! Key case is ignored (Gemma Scope 2 writes lowercase). An SAE's encoder reads x, not x − b_dec as ours
//! does, so b_dec is folded into b_enc (`fold_input_bias`); the affine skip is our W_skip transposed.
//!
//! What a file is comes from its path, as the releases name their folders: `layer_L` gives the layer, a
//! `transcoder` component a transcoder (a skip transcoder when it has the affine skip), an `mlp` component an
//! SAE on the MLP's output; `--layer` and `--site` say it when the path does not. Residual-stream and
//! attention SAEs are refused: our coders read one MLP. The hooks are recorded as the releases define them
//! (docs/interop.md says where they differ from our sides).

use crate::npz::{self, Array};
use crate::{tensors, ImportedCoder};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trainer::coder::{CoderConfig, Kind, SparseCoder};

/// What a Gemma Scope file codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Site {
    /// An SAE on the MLP's output (`hook_mlp_out`).
    MlpOut,
    /// A transcoder of the MLP (input → output), with or without the affine skip.
    Transcoder,
}

/// The params file: `path` itself, or `params.npz` / `params.safetensors` in the folder `path`.
fn params_file(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    ["params.npz", "params.safetensors"]
        .iter()
        .map(|f| path.join(f))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!(
                "{}: holds no params.npz or params.safetensors",
                path.display()
            )
        })
}

/// The layer in a path component `layer_L` or `layer_L_…`.
fn layer_in_path(path: &Path) -> Option<u32> {
    path.components().find_map(|c| {
        let s = c.as_os_str().to_str()?;
        s.strip_prefix("layer_")?.split('_').next()?.parse().ok()
    })
}

/// The site its folder names say, or None when they say nothing we read.
fn site_in_path(path: &Path) -> Result<Option<Site>> {
    let text = path.display().to_string().to_lowercase();
    if text.contains("transcoder") {
        return Ok(Some(Site::Transcoder));
    }
    for (word, what) in [
        ("resid", "residual-stream"),
        ("-res", "residual-stream"),
        ("att", "attention"),
    ] {
        if text.contains(word) {
            bail!(
                "{}: a {what} SAE: our coders read one MLP's input or output",
                path.display()
            );
        }
    }
    Ok(text.contains("mlp").then_some(Site::MlpOut))
}

/// Every array of the file, keys lowercased.
fn arrays(file: &Path) -> Result<BTreeMap<String, Array>> {
    let mut out = BTreeMap::new();
    if file.extension().is_some_and(|e| e == "npz") {
        for (name, a) in npz::read(file)? {
            out.insert(name.to_lowercase(), a);
        }
        return Ok(out);
    }
    let bytes = tensors::read_file(file)?;
    let st = tensors::parse(&bytes, file)?;
    for name in st.names() {
        let shape = tensors::shape_of(&st, name).unwrap_or_default();
        let values = tensors::read_f32(&st, name, &shape, file)?;
        out.insert(name.to_lowercase(), Array { shape, values });
    }
    Ok(out)
}

/// Imports the Gemma Scope coder at `path` (a params file or its folder) into `out`.
pub fn import(path: &Path, out: &Path, layer: Option<u32>, site: Option<Site>) -> Result<()> {
    let file = params_file(path)?;
    let layer = layer
        .or_else(|| layer_in_path(&file))
        .ok_or_else(|| anyhow!("{}: no layer_L in the path; give --layer", file.display()))?;
    let site = match site {
        Some(s) => s,
        None => site_in_path(&file)?.ok_or_else(|| {
            anyhow!(
                "{}: the path names no transcoder or mlp site; give --site",
                file.display()
            )
        })?,
    };
    let mut a = arrays(&file)?;
    let mut take = |name: &str| {
        a.remove(name)
            .map(|a| (a.shape, a.values))
            .ok_or_else(|| anyhow!("{}: array {name} is missing", file.display()))
    };
    let (enc_shape, w_enc_t) = take("w_enc")?;
    let [d_in, latents] = enc_shape[..] else {
        bail!(
            "{}: w_enc has shape {enc_shape:?}, expected [d_in, d_sae]",
            file.display()
        );
    };
    let (dec_shape, w_dec) = take("w_dec")?;
    let d_out = match dec_shape[..] {
        [l, d] if l == latents => d,
        _ => bail!(
            "{}: w_dec has shape {dec_shape:?}, expected [{latents}, d_out]",
            file.display()
        ),
    };
    let mut vector = |name: &str, len: usize| -> Result<Vec<f32>> {
        let (shape, v) = take(name)?;
        if shape != [len] {
            bail!(
                "{}: {name} has shape {shape:?}, expected [{len}]",
                file.display()
            );
        }
        Ok(v)
    };
    let (b_enc, b_dec, threshold) = (
        vector("b_enc", latents)?,
        vector("b_dec", d_out)?,
        vector("threshold", latents)?,
    );
    let w_skip = match a
        .remove("affine_skip_connection")
        .map(|a| (a.shape, a.values))
    {
        Some((shape, v)) if shape == [d_in, d_out] => Some(tensors::transpose(&v, d_in, d_out)),
        Some((shape, _)) => bail!(
            "{}: affine_skip_connection has shape {shape:?}, expected [{d_in}, {d_out}]",
            file.display()
        ),
        None => None,
    };
    let kind = match (site, &w_skip) {
        (Site::MlpOut, None) if d_in == d_out => Kind::Sae,
        (Site::MlpOut, _) => bail!(
            "{}: --site mlp-out, but the file has an affine skip or d_in ≠ d_out: a transcoder",
            file.display()
        ),
        (Site::Transcoder, None) => Kind::Transcoder,
        (Site::Transcoder, Some(_)) => Kind::SkipTranscoder,
    };
    let mut coder = SparseCoder {
        cfg: CoderConfig {
            kind,
            d_in,
            d_out,
            num_latents: latents,
            k: latents,
        },
        w_enc: tensors::transpose(&w_enc_t, d_in, latents),
        b_enc,
        w_dec,
        b_dec,
        w_skip,
        threshold: Some(threshold),
    };
    if kind == Kind::Sae {
        crate::fold_input_bias(&mut coder);
    }
    // As circuit-tracer maps them onto Gemma's modules: ln2.hook_normalized is pre_feedforward_layernorm
    // before its gain, mlp.hook_in after it, hook_mlp_out after post_feedforward_layernorm.
    let input = match file.extension().is_some_and(|e| e == "npz") {
        true => "ln2.hook_normalized",
        false => "mlp.hook_in",
    };
    let hooks = match kind {
        Kind::Sae => format!("blocks.{layer}.hook_mlp_out"),
        _ => format!("blocks.{layer}.{input} → blocks.{layer}.hook_mlp_out"),
    };
    crate::save_imported(
        out,
        ImportedCoder {
            coder,
            layer,
            format: "gemma-scope",
            source: file.clone(),
            hooks: Some(hooks),
        },
    )
    .with_context(|| format!("{}: import", file.display()))
}
