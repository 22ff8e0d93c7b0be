//! The Llama architecture (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU MLP), loaded from GGUF.
//!
//! Hookpoints follow sparsify's hooks on `model.layers.L.mlp`: the MLP input is the output of
//! `post_attention_layernorm` (GGUF `ffn_norm`), the MLP output is `down_proj`'s output before the residual add.

use crate::gguf::GgufFile;
use crate::model::{LanguageModel, MlpHook, ModelInfo, Stop};
use crate::ops::{add_assign, causal_attention, linear, rms_norm, silu, Rope};
use anyhow::{bail, Result};
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub num_layers: usize,
    pub d_model: usize,
    pub d_ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_base: f64,
    pub rms_eps: f32,
    pub vocab_size: usize,
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    ffn_norm: Vec<f32>,
    w_gate: Vec<f32>,
    w_up: Vec<f32>,
    w_down: Vec<f32>,
}

pub struct Llama {
    info: ModelInfo,
    pub config: LlamaConfig,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    /// Final norm and output projection; absent when loaded for extraction only.
    head: Option<(Vec<f32>, Vec<f32>)>,
}

/// GGUF stores Q and K rows permuted for interleaved rotary pairs: within each head, GGUF row `2i + j` is
/// row `j·hd/2 + i` of the original checkpoint. This undoes it, so rotate-half RoPE applies.
fn unpermute_qk(w: &[f32], heads: usize, hd: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = (h * hd + 2 * i + j) * cols;
                let dst = (h * hd + j * (hd / 2) + i) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

impl Llama {
    /// Loads layers `0..=max_layer` (all when `None`), and the output head when `with_head`.
    pub fn from_gguf(g: &GgufFile, max_layer: Option<usize>, with_head: bool) -> Result<Llama> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            bail!(
                "{}: architecture {arch:?} is not supported from GGUF (supported: llama)",
                g.path().display()
            );
        }
        let num = |k: &str| g.get_u64(&format!("llama.{k}")).map(|v| v as usize);
        let d_model = num("embedding_length")?;
        let heads = num("attention.head_count")?;
        let kv_heads = g
            .get_u64("llama.attention.head_count_kv")
            .map(|v| v as usize)
            .unwrap_or(heads);
        let vocab_size = g.tensor("token_embd.weight")?.dims[1] as usize;
        let config = LlamaConfig {
            num_layers: num("block_count")?,
            d_model,
            d_ffn: num("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim: d_model / heads,
            rope_base: g.get_f64("llama.rope.freq_base").unwrap_or(10000.0),
            rms_eps: g.get_f64("llama.attention.layer_norm_rms_epsilon")? as f32,
            vocab_size,
        };
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || d_model % heads != 0 {
            bail!(
                "{}: head counts {heads}/{kv_heads} do not divide width {d_model}",
                g.path().display()
            );
        }
        let last = max_layer.unwrap_or(config.num_layers - 1);
        if last >= config.num_layers {
            bail!(
                "layer {last} is out of range: {} has layers 0..={}",
                g.path().display(),
                config.num_layers - 1
            );
        }
        let (d, f, hd, kvd) = (
            d_model as u64,
            config.d_ffn as u64,
            config.head_dim,
            (kv_heads * config.head_dim) as u64,
        );
        let layers = (0..=last)
            .into_par_iter()
            .map(|l| -> Result<Layer> {
                let t = |name: &str, dims: &[u64]| -> Result<Vec<f32>> {
                    let full = format!("blk.{l}.{name}.weight");
                    g.expect_dims(&full, dims)?;
                    g.tensor_f32(&full)
                };
                Ok(Layer {
                    attn_norm: t("attn_norm", &[d])?,
                    wq: unpermute_qk(&t("attn_q", &[d, d])?, heads, hd, d_model),
                    wk: unpermute_qk(&t("attn_k", &[d, kvd])?, kv_heads, hd, d_model),
                    wv: t("attn_v", &[d, kvd])?,
                    wo: t("attn_output", &[d, d])?,
                    ffn_norm: t("ffn_norm", &[d])?,
                    w_gate: t("ffn_gate", &[d, f])?,
                    w_up: t("ffn_up", &[d, f])?,
                    w_down: t("ffn_down", &[f, d])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        g.expect_dims("token_embd.weight", &[d, vocab_size as u64])?;
        let embed = g.tensor_f32("token_embd.weight")?;
        let head = if with_head {
            let norm = g.tensor_f32("output_norm.weight")?;
            // Tied embeddings: no separate output tensor.
            let out = if g.tensors.contains_key("output.weight") {
                g.tensor_f32("output.weight")?
            } else {
                embed.clone()
            };
            Some((norm, out))
        } else {
            None
        };
        let name = g.get_str("general.name").unwrap_or("llama").to_string();
        let info = ModelInfo {
            name,
            architecture: "llama".into(),
            num_layers: config.num_layers,
            d_model,
            vocab_size,
        };
        Ok(Llama {
            info,
            config,
            embed,
            layers,
            head,
        })
    }
}

impl LanguageModel for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn hookpoints(&self, layer: usize) -> (String, String) {
        (
            format!("model.layers.{layer}.mlp (input)"),
            format!("model.layers.{layer}.mlp (output)"),
        )
    }

    fn mlp(&self, layer: usize, x: &[f32]) -> Vec<f32> {
        let (c, w) = (&self.config, &self.layers[layer]);
        let rows = x.len() / c.d_model;
        let mut gate = linear(x, rows, c.d_model, &w.w_gate, c.d_ffn);
        let up = linear(x, rows, c.d_model, &w.w_up, c.d_ffn);
        gate.par_iter_mut()
            .zip(up.par_iter())
            .for_each(|(g, u)| *g = silu(*g) * u);
        linear(&gate, rows, c.d_ffn, &w.w_down, c.d_model)
    }

    fn forward(
        &self,
        tokens: &[u32],
        seq_len: usize,
        stop: Stop,
        hook: &mut MlpHook,
    ) -> Option<Vec<f32>> {
        let c = &self.config;
        let (d, rows) = (c.d_model, tokens.len());
        assert!(rows % seq_len == 0, "tokens must be whole sequences");
        let last = match stop {
            Stop::AfterLayer(l) => l,
            Stop::Logits => c.num_layers - 1,
        };
        assert!(last < self.layers.len(), "layer {last} was not loaded");
        let rope = Rope::new(c.head_dim, c.rope_base, seq_len);
        let mut x = vec![0f32; rows * d];
        for (row, &t) in x.chunks_mut(d).zip(tokens) {
            row.copy_from_slice(&self.embed[t as usize * d..(t as usize + 1) * d]);
        }
        let kvd = c.kv_heads * c.head_dim;
        for (l, w) in self.layers[..=last].iter().enumerate() {
            let h = rms_norm(&x, d, &w.attn_norm, c.rms_eps);
            let mut q = linear(&h, rows, d, &w.wq, d);
            let mut k = linear(&h, rows, d, &w.wk, kvd);
            let v = linear(&h, rows, d, &w.wv, kvd);
            rope.apply(&mut q, c.heads, seq_len);
            rope.apply(&mut k, c.kv_heads, seq_len);
            let attn = causal_attention(&q, &k, &v, seq_len, c.heads, c.kv_heads, c.head_dim);
            add_assign(&mut x, &linear(&attn, rows, d, &w.wo, d));

            let mlp_in = rms_norm(&x, d, &w.ffn_norm, c.rms_eps);
            let mut mlp_out = self.mlp(l, &mlp_in);
            hook(l, &mlp_in, &mut mlp_out);
            add_assign(&mut x, &mlp_out);
        }
        if stop != Stop::Logits {
            return None;
        }
        let (norm, out) = self
            .head
            .as_ref()
            .expect("model loaded without its output head");
        let h = rms_norm(&x, d, norm, c.rms_eps);
        Some(linear(&h, rows, d, out, c.vocab_size))
    }
}
