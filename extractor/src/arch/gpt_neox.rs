//! `GPTNeoXForCausalLM` (Pythia): LayerNorms, fused QKV with biases, partial rotary embeddings, GELU MLP,
//! parallel or sequential residual, untied output head (`embed_out`). The block is [`crate::neox`]'s.

use super::{Block, Descriptor};
use crate::hf::HfFolder;
use crate::neox::{NeoX, NeoXConfig, NeoXLayer};
use anyhow::{bail, Result};
use rayon::prelude::*;

pub const DESCRIPTOR: Descriptor = Descriptor {
    name: "gpt_neox",
    hf_class: "GPTNeoXForCausalLM",
    model_type: "gpt_neox",
    hookpoints,
    block: Block::NeoX,
};

pub fn hookpoints(layer: usize) -> (String, String) {
    (
        format!("gpt_neox.layers.{layer}.mlp input (post_attention_layernorm output)"),
        format!("gpt_neox.layers.{layer}.mlp output (dense_4h_to_h, before the residual add)"),
    )
}

fn config(folder: &HfFolder) -> Result<NeoXConfig> {
    let c = &folder.config;
    let d = c.usize("hidden_size")?;
    let heads = c.usize("num_attention_heads")?;
    if heads == 0 || d % heads != 0 {
        bail!(
            "{}: {heads} heads do not divide hidden_size {d}",
            c.path.display()
        );
    }
    let head_dim = d / heads;
    let act = c.str("hidden_act").unwrap_or("gelu");
    if act != "gelu" {
        bail!(
            "{}: MLP activation {act:?} is not supported for gpt_neox (supported: gelu)",
            c.path.display()
        );
    }
    if !c.bool_or("attention_bias", true)? {
        bail!(
            "{}: attention_bias = false is not supported for gpt_neox",
            c.path.display()
        );
    }
    let config = NeoXConfig {
        num_layers: c.usize("num_hidden_layers")?,
        d_model: d,
        d_ffn: c.usize("intermediate_size")?,
        heads,
        head_dim,
        rope: c.rope(head_dim, "rotary_emb_base", "rotary_pct")?,
        eps: c.f64_or("layer_norm_eps", 1e-5)? as f32,
        vocab_size: c.usize("vocab_size")?,
        parallel_residual: c.bool_or("use_parallel_residual", true)?,
    };
    if !config.rope.rotary_dims.is_multiple_of(2) || config.rope.rotary_dims > head_dim {
        bail!(
            "{}: {} rotary dimensions do not fit head size {head_dim}",
            c.path.display(),
            config.rope.rotary_dims
        );
    }
    Ok(config)
}

/// Layers `0..=last` (`gpt_neox.layers.{l}.…`), and the final LayerNorm and output head when `with_head`.
pub fn load(folder: &HfFolder, last: usize, with_head: bool) -> Result<NeoX> {
    let config = config(folder)?;
    let (d, f, heads, head_dim) = (config.d_model, config.d_ffn, config.heads, config.head_dim);
    let layers = (0..=last)
        .into_par_iter()
        .map(|l| -> Result<NeoXLayer> {
            let p = format!("gpt_neox.layers.{l}");
            let t = |name: &str, shape: &[usize]| folder.tensor(&format!("{p}.{name}"), shape);
            let (qkv_w, qkv_b) = (
                t("attention.query_key_value.weight", &[3 * d, d])?,
                t("attention.query_key_value.bias", &[3 * d])?,
            );
            let [wq, wk, wv] = split_fused_qkv(&qkv_w, heads, head_dim, d);
            let [bq, bk, bv] = split_fused_qkv(&qkv_b, heads, head_dim, 1);
            Ok(NeoXLayer {
                ln1: (
                    t("input_layernorm.weight", &[d])?,
                    t("input_layernorm.bias", &[d])?,
                ),
                wq,
                bq,
                wk,
                bk,
                wv,
                bv,
                wo: t("attention.dense.weight", &[d, d])?,
                bo: t("attention.dense.bias", &[d])?,
                ln2: (
                    t("post_attention_layernorm.weight", &[d])?,
                    t("post_attention_layernorm.bias", &[d])?,
                ),
                w_in: t("mlp.dense_h_to_4h.weight", &[f, d])?,
                b_in: t("mlp.dense_h_to_4h.bias", &[f])?,
                w_out: t("mlp.dense_4h_to_h.weight", &[d, f])?,
                b_out: t("mlp.dense_4h_to_h.bias", &[d])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let embed = folder.tensor("gpt_neox.embed_in.weight", &[config.vocab_size, d])?;
    let head = if with_head {
        Some((
            (
                folder.tensor("gpt_neox.final_layer_norm.weight", &[d])?,
                folder.tensor("gpt_neox.final_layer_norm.bias", &[d])?,
            ),
            folder.output_head("embed_out.weight", false, &embed, config.vocab_size, d)?,
        ))
    } else {
        None
    };
    Ok(NeoX::new(folder.name(), config, embed, layers, head))
}

/// GPT-NeoX fuses Q, K and V into one projection whose output rows are grouped per head:
/// `[head 0: q(hd) k(hd) v(hd), head 1: …]`. Splits it into separate `[heads·hd × cols]` Q, K, V.
fn split_fused_qkv(w: &[f32], heads: usize, hd: usize, cols: usize) -> [Vec<f32>; 3] {
    let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| Vec::with_capacity(w.len() / 3));
    for h in 0..heads {
        for (part, dst) in out.iter_mut().enumerate() {
            let start = (h * 3 + part) * hd * cols;
            dst.extend_from_slice(&w[start..start + hd * cols]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fused_qkv_split_follows_the_per_head_layout() {
        // 2 heads of width 2, one column: rows q0 q0 k0 k0 v0 v0 q1 q1 k1 k1 v1 v1.
        let w: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let [q, k, v] = super::split_fused_qkv(&w, 2, 2, 1);
        assert_eq!(q, [0.0, 1.0, 6.0, 7.0]);
        assert_eq!(k, [2.0, 3.0, 8.0, 9.0]);
        assert_eq!(v, [4.0, 5.0, 10.0, 11.0]);
    }
}
