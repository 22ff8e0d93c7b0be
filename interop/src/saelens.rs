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
//! classes are ReLU or JumpReLU and read no k, so our TopK transcoders are refused rather than exported as a
//! different function; JumpReLU coders (imports) go to `jumprelu`, `jumprelu_transcoder` and
//! `jumprelu_skip_transcoder` exactly, with the hooks their release named. Only an SAE on the MLP's output has a TransformerLens hook that holds what it read
//! (`blocks.L.hook_mlp_out`); our mlp_in is the MLP's input after the RMSNorm weight, which no TL hook holds.
//!
//! Import reads `topk` and `jumprelu` SAEs and `jumprelu_transcoder`/`jumprelu_skip_transcoder`s (W_dec
//! `[d_sae × d_out]`, W_skip `[d_out × d_in]`, `threshold [d_sae]`), folding `apply_b_dec_to_input: false`
//! into b_enc and `rescale_acts_by_decoder_norm: true` into W_enc, b_enc and W_dec (exact up to rounding). A
//! transcoder's input hook is recorded as its files name it: SAELens's Gemma Scope configs name
//! `ln2.hook_normalized` or `hook_mlp_in`, which are not exactly our `mlp_in` (the MLP's input after the
//! RMSNorm gain); see docs/interop.md.

use crate::tensors::{self, Values};
use crate::{sample, ExportSource};
use anyhow::{anyhow, bail, Context, Result};
use cache_format::fsutil::write_atomic;
use cache_format::Side;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use trainer::coder::{CoderConfig, Kind, SparseCoder};

pub const CFG: &str = "cfg.json";
pub const WEIGHTS: &str = "sae_weights.safetensors";
pub const SPARSITY: &str = "sparsity.safetensors";

/// SAELens adds this to each latent's firing frequency before log10 (its training runner's convention), so
/// a dead latent reads -10.
const SPARSITY_EPS: f64 = 1e-10;

/// What an export of ours is in SAELens: its architecture and hooks (input, and output for a transcoder), or a
/// one-line refusal.
fn target(src: &ExportSource) -> Result<(&'static str, String, Option<String>)> {
    let meta = &src.loaded.meta;
    let jump = src.loaded.coder.threshold.is_some();
    if meta.config.kind == Kind::Sae {
        return match meta.sae_on.unwrap_or(Side::MlpOut) {
            Side::MlpOut => Ok((
                if jump { "jumprelu" } else { "topk" },
                format!("blocks.{}.hook_mlp_out", meta.layer),
                None,
            )),
            Side::MlpIn => bail!(
                "{}: sae_on is mlp_in: no TransformerLens hook holds the MLP's input after the RMSNorm weight \
                 (ln2.hook_normalized is taken before it), so SAELens could not run this SAE where it was trained",
                src.dir.display()
            ),
        };
    }
    if !jump {
        bail!(
            "{}: config.kind is {}: SAELens 6's transcoder and skip_transcoder are ReLU or JumpReLU and read \
             no k, so a TopK transcoder there would compute a different function; use --format circuit-tracer",
            src.dir.display(),
            meta.config.kind.short()
        );
    }
    // A JumpReLU transcoder is an import: its hooks are the ones its release named.
    let hooks = meta.imported.as_ref().and_then(|i| i.hooks.as_deref());
    let Some((h_in, h_out)) = hooks.and_then(|h| h.split_once(" → ")) else {
        bail!(
            "{}: imported.hooks does not name an input and an output hook, which SAELens's cfg needs",
            src.dir.display()
        );
    };
    let arch = match meta.config.kind {
        Kind::SkipTranscoder => "jumprelu_skip_transcoder",
        _ => "jumprelu_transcoder",
    };
    Ok((arch, h_in.to_string(), Some(h_out.to_string())))
}

/// Exports one coder into `out` (a new folder): cfg.json, the weights, the held-out sparsity and our check
/// rows.
pub fn export(src: &ExportSource, out: &Path, model_name: &str, sample_rows: usize) -> Result<()> {
    let (arch, hook, hook_out) = target(src)?;
    let c = &src.loaded.coder;
    let (d_in, d_out, latents) = (c.cfg.d_in, c.cfg.d_out, c.cfg.num_latents);
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let mut cfg = json!({
        "architecture": arch,
        "d_in": d_in,
        "d_sae": latents,
        "dtype": "float32",
        "device": "cpu",
        // Our SAE encodes x − b_dec; transcoders never subtract it (and SAELens requires false for them).
        "apply_b_dec_to_input": c.cfg.kind == Kind::Sae,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": model_name,
            "hook_name": hook,
            "hook_head_index": null,
            "context_size": src.cache.manifest().spec.ctx_len,
            "sparsecoder": src.provenance,
        },
    });
    if arch == "topk" {
        cfg["k"] = json!(c.cfg.k);
        cfg["rescale_acts_by_decoder_norm"] = json!(false);
    }
    if let Some(h) = hook_out {
        cfg["d_out"] = json!(d_out);
        cfg["metadata"]["hook_name_out"] = json!(h);
    }
    let w_enc = tensors::transpose(&c.w_enc, latents, d_in);
    let mut weights = vec![
        ("W_enc", vec![d_in, latents], Values::F32(&w_enc)),
        ("b_enc", vec![latents], Values::F32(&c.b_enc)),
        ("W_dec", vec![latents, d_out], Values::F32(&c.w_dec)),
        ("b_dec", vec![d_out], Values::F32(&c.b_dec)),
    ];
    if let Some(t) = &c.threshold {
        weights.push(("threshold", vec![latents], Values::F32(t)));
    }
    if let Some(w) = &c.w_skip {
        weights.push(("W_skip", vec![d_out, d_in], Values::F32(w)));
    }
    let weights: Vec<_> = weights
        .into_iter()
        .map(|(n, s, v)| (n.to_string(), s, v))
        .collect();
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
fn layer_of_hook(hook: &str, field: &str, path: &Path) -> Result<u32> {
    crate::mlp_out_layer(hook).ok_or_else(|| {
        anyhow!(
            "{}: {field} is {hook:?}, expected blocks.L.hook_mlp_out (our coders read one MLP's input or output)",
            path.display()
        )
    })
}

/// The architectures we import, and what each is in our terms: (kind, JumpReLU?).
fn our_terms(arch: &str) -> Option<(Kind, bool)> {
    match arch {
        "topk" => Some((Kind::Sae, false)),
        "jumprelu" => Some((Kind::Sae, true)),
        "jumprelu_transcoder" => Some((Kind::Transcoder, true)),
        "jumprelu_skip_transcoder" => Some((Kind::SkipTranscoder, true)),
        _ => None,
    }
}

/// Imports the SAELens SAE or transcoder in `dir` (see [`our_terms`]) into our layout in `out`.
pub fn import(dir: &Path, out: &Path) -> Result<()> {
    let cfg_path = dir.join(CFG);
    let text =
        std::fs::read(&cfg_path).with_context(|| format!("{}: cannot read", cfg_path.display()))?;
    let cfg: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not valid JSON", cfg_path.display()))?;
    let arch = field(&cfg, "architecture", &cfg_path)?;
    let Some((kind, jump)) = arch.as_str().and_then(our_terms) else {
        bail!(
            "{}: architecture is {arch}, expected \"topk\", \"jumprelu\", \"jumprelu_transcoder\" or \
             \"jumprelu_skip_transcoder\" (ReLU, gated and the rest compute functions our coders do not)",
            cfg_path.display()
        );
    };
    for (name, want) in [
        ("normalize_activations", "none"),
        ("reshape_activations", "none"),
    ] {
        if let Some(v) = cfg.get(name).filter(|v| *v != want) {
            bail!("{}: {name} is {v}, expected \"{want}\"", cfg_path.display());
        }
    }
    let (d_in, latents) = (
        usize_field(&cfg, "d_in", &cfg_path)?,
        usize_field(&cfg, "d_sae", &cfg_path)?,
    );
    let d_out = match kind {
        Kind::Sae => d_in,
        _ => usize_field(&cfg, "d_out", &cfg_path)?,
    };
    let k = if jump {
        latents
    } else {
        usize_field(&cfg, "k", &cfg_path)?
    };
    if k > latents {
        bail!(
            "{}: k is {k}, more than d_sae ({latents})",
            cfg_path.display()
        );
    }
    let (layer, hooks) = layer_and_hooks(&cfg, kind, &cfg_path)?;
    let flag =
        |name: &str, default: bool| cfg.get(name).and_then(Value::as_bool).unwrap_or(default);
    let weights_path = dir.join(WEIGHTS);
    let bytes = tensors::read_file(&weights_path)?;
    let st = tensors::parse(&bytes, &weights_path)?;
    let read = |name: &str, shape: &[usize]| tensors::read_f32(&st, name, shape, &weights_path);
    let w_enc_t = read("W_enc", &[d_in, latents])?;
    let mut coder = SparseCoder {
        cfg: CoderConfig {
            kind,
            d_in,
            d_out,
            num_latents: latents,
            k,
        },
        w_enc: tensors::transpose(&w_enc_t, d_in, latents),
        b_enc: read("b_enc", &[latents])?,
        w_dec: read("W_dec", &[latents, d_out])?,
        b_dec: read("b_dec", &[d_out])?,
        w_skip: match kind {
            Kind::SkipTranscoder => Some(read("W_skip", &[d_out, d_in])?),
            _ => None,
        },
        threshold: if jump {
            Some(read("threshold", &[latents])?)
        } else {
            None
        },
    };
    // Transcoders never subtract b_dec from their input, in SAELens as in ours.
    if kind == Kind::Sae && !flag("apply_b_dec_to_input", true) {
        crate::fold_input_bias(&mut coder);
    }
    if flag("rescale_acts_by_decoder_norm", false) {
        if jump {
            bail!(
                "{}: rescale_acts_by_decoder_norm is only read for topk",
                cfg_path.display()
            );
        }
        fold_decoder_norm(&mut coder);
    }
    crate::save_imported(
        out,
        crate::ImportedCoder {
            coder,
            layer,
            format: "saelens",
            source: weights_path,
            hooks: Some(hooks),
        },
    )
}

/// The layer and the hooks of a SAELens cfg.json: an SAE must read `blocks.L.hook_mlp_out`; a transcoder
/// must write the MLP output of a layer and read a hook of the same layer.
fn layer_and_hooks(cfg: &Value, kind: Kind, cfg_path: &Path) -> Result<(u32, String)> {
    let hook = |name: &str| {
        cfg.pointer(&format!("/metadata/{name}"))
            .or_else(|| cfg.get(name))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: metadata.{name} is missing", cfg_path.display()))
    };
    if kind == Kind::Sae {
        let h = hook("hook_name")?;
        return Ok((
            layer_of_hook(h, "metadata.hook_name", cfg_path)?,
            h.to_string(),
        ));
    }
    let (h_in, h_out) = (hook("hook_name")?, hook("hook_name_out")?);
    let layer = layer_of_hook(h_out, "metadata.hook_name_out", cfg_path)?;
    if crate::hook_layer(h_in) != Some(layer) {
        bail!(
            "{}: metadata.hook_name is {h_in:?}, expected a hook of layer {layer} (the layer its output hook \
             {h_out:?} names)",
            cfg_path.display()
        );
    }
    Ok((layer, format!("{h_in} → {h_out}")))
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
