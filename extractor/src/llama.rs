//! The Llama family (RMSNorm, rotary embeddings, grouped-query attention, gated MLP), loaded from GGUF or from
//! a Hugging Face folder ([`crate::hf`]). Gemma 2 is this family with switches: embeddings scaled by √d, norms
//! after attention and after the MLP too, GeGLU, soft-capped scores and logits, sliding-window layers. Gemma 3
//! (from GGUF) drops the soft caps and adds an RMSNorm of each head's q and k before rotary, and its
//! sliding-window ("local") layers rotate with their own base (10,000; the global layers' is the file's).
//!
//! Hookpoints follow sparsify's hooks on `model.layers.L.mlp`: the MLP input is what that module receives (the
//! output of the norm before it: Llama's `post_attention_layernorm`, GGUF `ffn_norm`, Gemma 2's
//! `pre_feedforward_layernorm`), the MLP output is what it returns (`down_proj`'s output), before any
//! post-norm and the residual add.

use crate::gguf::GgufFile;
use crate::model::{LanguageModel, MlpHook, ModelInfo, Stop};
use crate::ops::{
    add_assign, causal_attention, gelu_tanh, linear, rms_norm, silu_mul, softcap, AttentionSpec,
    Rope, RopeScaling, RopeSpec,
};
use anyhow::{bail, Result};
use rayon::prelude::*;

#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub architecture: String,
    pub num_layers: usize,
    pub d_model: usize,
    pub d_ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope: RopeSpec,
    pub rms_eps: f32,
    pub vocab_size: usize,
    /// Multiplies q·k: `head_dim^-1/2`, Gemma 2's `query_pre_attn_scalar^-1/2`.
    pub attn_scale: f32,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Sliding window of the layers marked in `sliding_layers`.
    pub sliding_window: Option<usize>,
    pub sliding_layers: Vec<bool>,
    /// Gemma: embeddings multiplied by √d.
    pub embed_scale: Option<f32>,
    pub mlp_activation: GateActivation,
    /// Gemma 3: the sliding-window layers' rotary, when it differs from `rope`.
    pub local_rope: Option<RopeSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateActivation {
    /// SwiGLU (Llama).
    Silu,
    /// GeGLU with tanh GELU (Gemma).
    GeluTanh,
}

impl LlamaConfig {
    /// Checks the widths and head counts fit together; `source` names the file for the error.
    pub fn check(&self, source: &str) -> Result<()> {
        let (h, kv) = (self.heads, self.kv_heads);
        if h == 0
            || kv == 0
            || h % kv != 0
            || self.head_dim == 0
            || !self.head_dim.is_multiple_of(2)
        {
            bail!(
                "{source}: head counts {h}/{kv} with head_dim {} do not fit (heads must be a multiple of KV heads, head_dim even)",
                self.head_dim
            );
        }
        if self.rope.rotary_dims > self.head_dim || !self.rope.rotary_dims.is_multiple_of(2) {
            bail!(
                "{source}: {} rotary dimensions do not fit head_dim {}",
                self.rope.rotary_dims,
                self.head_dim
            );
        }
        Ok(())
    }
}

/// One decoder layer's weights, `[out, in]` row-major. Norm weights already include Gemma's `1 +`.
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    /// Qwen2's biases of the Q, K and V projections.
    pub qkv_bias: Option<[Vec<f32>; 3]>,
    pub wo: Vec<f32>,
    /// Gemma 2's `post_attention_layernorm` (on the attention output, before the residual add).
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Vec<f32>,
    pub w_up: Vec<f32>,
    pub w_down: Vec<f32>,
    /// Gemma 2's `post_feedforward_layernorm`.
    pub post_ffn_norm: Option<Vec<f32>>,
    /// Gemma 3's RMSNorms of each head's q and of each head's k (`head_dim` weights each), before rotary.
    pub qk_norm: Option<[Vec<f32>; 2]>,
}

/// The rotary tables of a forward pass: the global layers', and the sliding-window layers' when they differ.
pub struct LayerRopes {
    global: Rope,
    local: Option<Rope>,
}

impl LayerRopes {
    pub fn new(c: &LlamaConfig, max_pos: usize) -> LayerRopes {
        LayerRopes {
            global: Rope::new(&c.rope, max_pos),
            local: c.local_rope.as_ref().map(|r| Rope::new(r, max_pos)),
        }
    }

    /// Layer `l`'s table.
    pub fn of(&self, c: &LlamaConfig, l: usize) -> &Rope {
        match &self.local {
            Some(local) if c.sliding_layers[l] => local,
            _ => &self.global,
        }
    }
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
    /// A model from its parts: `embed[vocab × d]`, layers `0..=max_layer`, and the final norm and output
    /// projection when logits are wanted.
    pub fn new(
        name: String,
        config: LlamaConfig,
        embed: Vec<f32>,
        layers: Vec<Layer>,
        head: Option<(Vec<f32>, Vec<f32>)>,
    ) -> Llama {
        let info = ModelInfo {
            name,
            architecture: config.architecture.clone(),
            num_layers: config.num_layers,
            d_model: config.d_model,
            vocab_size: config.vocab_size,
        };
        Llama {
            info,
            config,
            embed,
            layers,
            head,
        }
    }

    /// Loads layers `0..=max_layer` (all when `None`), and the output head when `with_head`.
    ///
    /// Llama's Q and K rows are stored permuted for interleaved rotary pairs ([`unpermute_qk`]); Qwen2's are
    /// not (llama.cpp runs it with NeoX-style rotary, as transformers does), and it adds Q/K/V biases.
    pub fn from_gguf(g: &GgufFile, max_layer: Option<usize>, with_head: bool) -> Result<Llama> {
        let arch = g.architecture()?.to_string();
        let qwen2 = arch == "qwen2";
        let gemma3 = arch == "gemma3";
        let key = |k: &str| format!("{arch}.{k}");
        let num = |k: &str| g.get_u64(&key(k)).map(|v| v as usize);
        let d_model = num("embedding_length")?;
        let heads = num("attention.head_count")?;
        let kv_heads = num("attention.head_count_kv").unwrap_or(heads);
        let vocab_size = g.tensor("token_embd.weight")?.dims[1] as usize;
        if heads == 0 || d_model % heads != 0 {
            bail!(
                "{}: {heads} heads do not divide width {d_model}",
                g.path().display()
            );
        }
        // Gemma 3's heads are wider than d / heads (270M: 4 × 256 over 640).
        let head_dim = num("attention.key_length").unwrap_or(d_model / heads);
        let num_layers = num("block_count")?;
        if g.get(&key("rope.scaling.type")).is_ok() {
            bail!(
                "{}: {} is set; rotary scaling is not supported from GGUF",
                g.path().display(),
                key("rope.scaling.type")
            );
        }
        let config = LlamaConfig {
            architecture: arch.clone(),
            num_layers,
            d_model,
            d_ffn: num("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            rope: RopeSpec {
                rotary_dims: head_dim,
                base: g.get_f64(&key("rope.freq_base")).unwrap_or(10000.0),
                scaling: RopeScaling::None,
            },
            rms_eps: g.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
            vocab_size,
            // llama.cpp's Gemma 3 scale: 1/√head_dim, except the 27B (62 layers): 1/√(d / heads).
            attn_scale: match gemma3 && num_layers == 62 {
                true => 1.0 / ((d_model / heads) as f32).sqrt(),
                false => 1.0 / (head_dim as f32).sqrt(),
            },
            attn_softcap: None,
            final_softcap: None,
            sliding_window: match gemma3 {
                true => Some(num("attention.sliding_window")?),
                false => None,
            },
            // Gemma 3: five local layers, then one global.
            sliding_layers: (0..num_layers)
                .map(|l| gemma3 && (l + 1) % 6 != 0)
                .collect(),
            embed_scale: gemma3.then(|| (d_model as f64).sqrt() as f32),
            mlp_activation: match gemma3 {
                true => GateActivation::GeluTanh,
                false => GateActivation::Silu,
            },
            local_rope: gemma3.then_some(RopeSpec {
                rotary_dims: head_dim,
                base: 10000.0,
                scaling: RopeScaling::None,
            }),
        };
        config.check(&g.path().display().to_string())?;
        let last = max_layer.unwrap_or(config.num_layers - 1);
        if last >= config.num_layers {
            bail!(
                "layer {last} is out of range: {} has layers 0..={}",
                g.path().display(),
                config.num_layers - 1
            );
        }
        let (d, f, hd, qd, kvd) = (
            d_model as u64,
            config.d_ffn as u64,
            config.head_dim,
            (heads * config.head_dim) as u64,
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
                let bias = |name: &str, len: u64| -> Result<Option<Vec<f32>>> {
                    if !qwen2 {
                        return Ok(None);
                    }
                    let full = format!("blk.{l}.{name}.bias");
                    g.expect_dims(&full, &[len])?;
                    g.tensor_f32(&full).map(Some)
                };
                // Only Llama's rows are stored permuted; Qwen2 and Gemma rotate NeoX-style in llama.cpp.
                let qk = |name: &str, dims: &[u64], heads: usize| -> Result<Vec<f32>> {
                    let w = t(name, dims)?;
                    Ok(if qwen2 || gemma3 {
                        w
                    } else {
                        unpermute_qk(&w, heads, hd, d_model)
                    })
                };
                let gemma_norm = |name: &str, len: u64| -> Result<Option<Vec<f32>>> {
                    // Stored with Gemma's 1 + already added (llama.cpp's converter adds it).
                    gemma3.then(|| t(name, &[len])).transpose()
                };
                Ok(Layer {
                    attn_norm: t("attn_norm", &[d])?,
                    wq: qk("attn_q", &[d, qd], heads)?,
                    wk: qk("attn_k", &[d, kvd], kv_heads)?,
                    wv: t("attn_v", &[d, kvd])?,
                    qkv_bias: match (
                        bias("attn_q", qd)?,
                        bias("attn_k", kvd)?,
                        bias("attn_v", kvd)?,
                    ) {
                        (Some(q), Some(k), Some(v)) => Some([q, k, v]),
                        _ => None,
                    },
                    wo: t("attn_output", &[qd, d])?,
                    post_attn_norm: gemma_norm("post_attention_norm", d)?,
                    ffn_norm: t("ffn_norm", &[d])?,
                    w_gate: t("ffn_gate", &[d, f])?,
                    w_up: t("ffn_up", &[d, f])?,
                    w_down: t("ffn_down", &[f, d])?,
                    post_ffn_norm: gemma_norm("post_ffw_norm", d)?,
                    qk_norm: match (
                        gemma_norm("attn_q_norm", hd as u64)?,
                        gemma_norm("attn_k_norm", hd as u64)?,
                    ) {
                        (Some(q), Some(k)) => Some([q, k]),
                        _ => None,
                    },
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
        let name = g.get_str("general.name").unwrap_or(&arch).to_string();
        Ok(Llama::new(name, config, embed, layers, head))
    }
}

/// A layer's attention core: rotates q and k (`[rows × heads·hd]`, `[rows × kv_heads·hd]`) for their positions
/// and attends over whatever keys the caller keeps, returning `[rows × heads·hd]`.
pub type Attend<'a> = dyn FnMut(&mut [f32], &mut [f32], Vec<f32>, &AttentionSpec) -> Vec<f32> + 'a;

impl Llama {
    /// Token embeddings `[tokens × d]` (scaled by √d for Gemma).
    pub fn embed_tokens(&self, tokens: &[u32]) -> Vec<f32> {
        let d = self.config.d_model;
        let mut x = vec![0f32; tokens.len() * d];
        for (row, &t) in x.chunks_mut(d).zip(tokens) {
            row.copy_from_slice(&self.embed[t as usize * d..(t as usize + 1) * d]);
            if let Some(s) = self.config.embed_scale {
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        x
    }

    /// Decoder layer `l` on the residual stream `x[rows × d]`, in place; `attend` supplies positions and keys
    /// (whole sequences for extraction, a KV cache for generation).
    pub fn layer(&self, l: usize, x: &mut [f32], hook: &mut MlpHook, attend: &mut Attend) {
        let (c, w) = (&self.config, &self.layers[l]);
        let (d, rows) = (c.d_model, x.len() / c.d_model);
        let (qd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let h = rms_norm(x, d, &w.attn_norm, c.rms_eps);
        let mut q = linear(&h, rows, d, &w.wq, qd);
        let mut k = linear(&h, rows, d, &w.wk, kvd);
        let mut v = linear(&h, rows, d, &w.wv, kvd);
        if let Some([bq, bk, bv]) = &w.qkv_bias {
            for (x, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                for row in x.chunks_mut(b.len()) {
                    row.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                }
            }
        }
        if let Some([nq, nk]) = &w.qk_norm {
            q = rms_norm(&q, c.head_dim, nq, c.rms_eps);
            k = rms_norm(&k, c.head_dim, nk, c.rms_eps);
        }
        let spec = AttentionSpec {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            scale: c.attn_scale,
            softcap: c.attn_softcap,
            window: c.sliding_window.filter(|_| c.sliding_layers[l]),
        };
        let attn = attend(&mut q, &mut k, v, &spec);
        let mut attn_out = linear(&attn, rows, qd, &w.wo, d);
        if let Some(norm) = &w.post_attn_norm {
            attn_out = rms_norm(&attn_out, d, norm, c.rms_eps);
        }
        add_assign(x, &attn_out);

        let mlp_in = rms_norm(x, d, &w.ffn_norm, c.rms_eps);
        let mut mlp_out = self.mlp(l, &mlp_in);
        hook(l, &mlp_in, &mut mlp_out);
        if let Some(norm) = &w.post_ffn_norm {
            mlp_out = rms_norm(&mlp_out, d, norm, c.rms_eps);
        }
        add_assign(x, &mlp_out);
    }

    /// The final norm and output projection (with Gemma's soft cap) of residual rows `x`.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        let c = &self.config;
        let (norm, out) = self
            .head
            .as_ref()
            .expect("model loaded without its output head");
        let h = rms_norm(x, c.d_model, norm, c.rms_eps);
        let mut logits = linear(&h, x.len() / c.d_model, c.d_model, out, c.vocab_size);
        if let Some(cap) = c.final_softcap {
            logits.par_iter_mut().for_each(|v| *v = softcap(*v, cap));
        }
        logits
    }

    /// How many layers were loaded.
    pub fn loaded_layers(&self) -> usize {
        self.layers.len()
    }
}

impl LanguageModel for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn mlp(&self, layer: usize, x: &[f32]) -> Vec<f32> {
        let (c, w) = (&self.config, &self.layers[layer]);
        let rows = x.len() / c.d_model;
        let mut gate = linear(x, rows, c.d_model, &w.w_gate, c.d_ffn);
        let up = linear(x, rows, c.d_model, &w.w_up, c.d_ffn);
        match c.mlp_activation {
            GateActivation::Silu => silu_mul(&mut gate, &up),
            GateActivation::GeluTanh => gate
                .par_iter_mut()
                .zip(up.par_iter())
                .for_each(|(g, u)| *g = gelu_tanh(*g) * u),
        }
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
        assert!(
            tokens.len().is_multiple_of(seq_len),
            "tokens must be whole sequences"
        );
        let last = match stop {
            Stop::AfterLayer(l) => l,
            Stop::Logits => c.num_layers - 1,
        };
        assert!(last < self.layers.len(), "layer {last} was not loaded");
        let ropes = LayerRopes::new(c, seq_len);
        let mut x = self.embed_tokens(tokens);
        for l in 0..=last {
            let rope = ropes.of(c, l);
            self.layer(l, &mut x, hook, &mut |q, k, v, spec| {
                rope.apply(q, c.heads, c.head_dim, seq_len);
                rope.apply(k, c.kv_heads, c.head_dim, seq_len);
                causal_attention(q, k, &v, seq_len, spec)
            });
        }
        if stop != Stop::Logits {
            return None;
        }
        Some(self.logits(&x))
    }
}
