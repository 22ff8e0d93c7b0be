//! What the architectures that run the Llama block ([`crate::llama`]) share: reading their `config.json`
//! into a [`LlamaConfig`] and their weights into [`Layer`]s, with each architecture's differences given by
//! its [`Variant`].

use crate::hf::HfFolder;
use crate::llama::{GateActivation, Layer, Llama, LlamaConfig};
use anyhow::{bail, Result};
use rayon::prelude::*;
use serde_json::Value;

/// How an architecture differs from plain Llama.
pub struct Variant {
    /// The MLP activation when `config.json` names none.
    pub default_activation: &'static str,
    /// Gemma 2: RMSNorms multiply by (1 + weight); norms after attention and after the MLP as well as before
    /// (the MLP's input norm is then `pre_feedforward_layernorm`); embeddings scaled by √d; attention scaled by
    /// `query_pre_attn_scalar`, soft-capped attention and final logits; sliding-window attention on
    /// alternate layers (from the first) unless `layer_types` says otherwise; embeddings tied by default.
    pub gemma: bool,
}

/// `config.json` of a Llama-block architecture.
pub fn config(folder: &HfFolder, v: &Variant) -> Result<LlamaConfig> {
    let c = &folder.config;
    let gemma = v.gemma;
    let d_model = c.usize("hidden_size")?;
    let heads = c.usize("num_attention_heads")?;
    let kv_heads = c.usize_or("num_key_value_heads", heads)?;
    if heads == 0 {
        bail!("{}: num_attention_heads is 0", c.path.display());
    }
    let head_dim = c.usize_or("head_dim", d_model / heads)?;
    let num_layers = c.usize("num_hidden_layers")?;
    for flag in ["attention_bias", "mlp_bias"] {
        if c.bool_or(flag, false)? {
            bail!(
                "{}: {flag} = true is not supported for {}",
                c.path.display(),
                folder.architecture.name
            );
        }
    }
    let act = c
        .str("hidden_activation")
        .or_else(|| c.str("hidden_act"))
        .unwrap_or(v.default_activation);
    let mlp_activation = match act {
        "silu" | "swish" => GateActivation::Silu,
        "gelu_pytorch_tanh" | "gelu_tanh" => GateActivation::GeluTanh,
        other => bail!(
            "{}: MLP activation {other:?} is not supported (supported: silu, gelu_pytorch_tanh)",
            c.path.display()
        ),
    };
    let sliding_layers = match c.get("layer_types").and_then(Value::as_array) {
        Some(types) if types.len() == num_layers => types
            .iter()
            .map(|t| t.as_str() == Some("sliding_attention"))
            .collect(),
        Some(types) => bail!(
            "{}: layer_types lists {} layers, num_hidden_layers is {num_layers}",
            c.path.display(),
            types.len()
        ),
        None => (0..num_layers).map(|l| gemma && l % 2 == 0).collect(),
    };
    let softcap = |k: &str| -> Result<Option<f32>> {
        if !gemma {
            return Ok(None);
        }
        Ok(c.number(k, c.get(k))?.map(|v| v as f32))
    };
    let config = LlamaConfig {
        architecture: folder.architecture.name.into(),
        num_layers,
        d_model,
        d_ffn: c.usize("intermediate_size")?,
        heads,
        kv_heads,
        head_dim,
        rope: c.rope(head_dim, "rope_theta", "partial_rotary_factor")?,
        rms_eps: c.f64_or("rms_norm_eps", 1e-6)? as f32,
        vocab_size: c.usize("vocab_size")?,
        attn_scale: if gemma {
            (c.f64_or("query_pre_attn_scalar", head_dim as f64)?).powf(-0.5) as f32
        } else {
            1.0 / (head_dim as f32).sqrt()
        },
        attn_softcap: softcap("attn_logit_softcapping")?,
        final_softcap: softcap("final_logit_softcapping")?,
        sliding_window: if gemma {
            Some(c.usize("sliding_window")?)
        } else {
            None
        },
        sliding_layers,
        embed_scale: gemma.then(|| (d_model as f64).sqrt() as f32),
        mlp_activation,
        local_rope: None,
    };
    config.check(&c.path.display().to_string())?;
    Ok(config)
}

/// Layers `0..=last` of a Llama-block folder (`model.layers.{l}.…`), and the output head when `with_head`.
pub fn load(folder: &HfFolder, v: &Variant, last: usize, with_head: bool) -> Result<Llama> {
    let config = config(folder, v)?;
    let gemma = v.gemma;
    let (d, f) = (config.d_model, config.d_ffn);
    let (qd, kvd) = (
        config.heads * config.head_dim,
        config.kv_heads * config.head_dim,
    );
    // Gemma's RMSNorm multiplies by (1 + weight); adding the 1 here is the same f32 operation.
    let norm = |name: &str| -> Result<Vec<f32>> {
        let mut w = folder.tensor(name, &[d])?;
        if gemma {
            w.iter_mut().for_each(|v| *v += 1.0);
        }
        Ok(w)
    };
    let layers = (0..=last)
        .into_par_iter()
        .map(|l| -> Result<Layer> {
            let p = format!("model.layers.{l}");
            let t =
                |name: &str, shape: &[usize]| folder.tensor(&format!("{p}.{name}.weight"), shape);
            let n = |name: &str| norm(&format!("{p}.{name}.weight"));
            Ok(Layer {
                attn_norm: n("input_layernorm")?,
                wq: t("self_attn.q_proj", &[qd, d])?,
                wk: t("self_attn.k_proj", &[kvd, d])?,
                wv: t("self_attn.v_proj", &[kvd, d])?,
                qkv_bias: None,
                wo: t("self_attn.o_proj", &[d, qd])?,
                post_attn_norm: if gemma {
                    Some(n("post_attention_layernorm")?)
                } else {
                    None
                },
                ffn_norm: if gemma {
                    n("pre_feedforward_layernorm")?
                } else {
                    n("post_attention_layernorm")?
                },
                w_gate: t("mlp.gate_proj", &[f, d])?,
                w_up: t("mlp.up_proj", &[f, d])?,
                w_down: t("mlp.down_proj", &[d, f])?,
                post_ffn_norm: if gemma {
                    Some(n("post_feedforward_layernorm")?)
                } else {
                    None
                },
                qk_norm: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let embed = folder.tensor("model.embed_tokens.weight", &[config.vocab_size, d])?;
    let head = if with_head {
        Some((
            norm("model.norm.weight")?,
            folder.output_head("lm_head.weight", gemma, &embed, config.vocab_size, d)?,
        ))
    } else {
        None
    };
    Ok(Llama::new(folder.name(), config, embed, layers, head))
}
