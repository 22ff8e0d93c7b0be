//! GPT-NeoX (Pythia): LayerNorm with bias, partial rotary embeddings, biased projections, GELU MLP, parallel
//! residual (`x + attn(ln1(x)) + mlp(ln2(x))`) or sequential, untied output head. Loaded by [`crate::hf`].
//!
//! Hookpoints follow sparsify's hooks on `gpt_neox.layers.L.mlp`: the MLP input is the output of
//! `post_attention_layernorm`, the MLP output is `dense_4h_to_h`'s output (with its bias), before the residual
//! add.

use crate::model::{LanguageModel, MlpHook, ModelInfo, Stop};
use crate::ops::{
    add_assign, add_bias, causal_attention, gelu, layer_norm, linear, map_in_place, AttentionSpec,
    Rope, RopeSpec,
};

#[derive(Clone, Debug)]
pub struct NeoXConfig {
    pub num_layers: usize,
    pub d_model: usize,
    pub d_ffn: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub rope: RopeSpec,
    pub eps: f32,
    pub vocab_size: usize,
    pub parallel_residual: bool,
}

/// One layer's weights, `[out, in]` row-major; Q, K, V already split out of the fused projection.
pub struct NeoXLayer {
    pub ln1: (Vec<f32>, Vec<f32>),
    pub wq: Vec<f32>,
    pub bq: Vec<f32>,
    pub wk: Vec<f32>,
    pub bk: Vec<f32>,
    pub wv: Vec<f32>,
    pub bv: Vec<f32>,
    pub wo: Vec<f32>,
    pub bo: Vec<f32>,
    pub ln2: (Vec<f32>, Vec<f32>),
    pub w_in: Vec<f32>,
    pub b_in: Vec<f32>,
    pub w_out: Vec<f32>,
    pub b_out: Vec<f32>,
}

/// Final LayerNorm (weight, bias) and the output projection.
pub type NeoXHead = ((Vec<f32>, Vec<f32>), Vec<f32>);

pub struct NeoX {
    info: ModelInfo,
    config: NeoXConfig,
    embed: Vec<f32>,
    layers: Vec<NeoXLayer>,
    /// Absent when loaded for extraction only.
    head: Option<NeoXHead>,
}

/// `x · Wᵀ + b`.
fn affine(x: &[f32], rows: usize, inp: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = linear(x, rows, inp, w, b.len());
    add_bias(&mut y, b);
    y
}

impl NeoX {
    pub fn new(
        name: String,
        config: NeoXConfig,
        embed: Vec<f32>,
        layers: Vec<NeoXLayer>,
        head: Option<NeoXHead>,
    ) -> NeoX {
        let info = ModelInfo {
            name,
            architecture: "gpt_neox".into(),
            num_layers: config.num_layers,
            d_model: config.d_model,
            vocab_size: config.vocab_size,
        };
        NeoX {
            info,
            config,
            embed,
            layers,
            head,
        }
    }

    fn attention(&self, w: &NeoXLayer, h: &[f32], rope: &Rope, seq_len: usize) -> Vec<f32> {
        let c = &self.config;
        let (d, rows) = (c.d_model, h.len() / c.d_model);
        let mut q = affine(h, rows, d, &w.wq, &w.bq);
        let mut k = affine(h, rows, d, &w.wk, &w.bk);
        let v = affine(h, rows, d, &w.wv, &w.bv);
        rope.apply(&mut q, c.heads, c.head_dim, seq_len);
        rope.apply(&mut k, c.heads, c.head_dim, seq_len);
        let spec = AttentionSpec {
            heads: c.heads,
            kv_heads: c.heads,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
            softcap: None,
            window: None,
        };
        let attn = causal_attention(&q, &k, &v, seq_len, &spec);
        affine(&attn, rows, d, &w.wo, &w.bo)
    }
}

impl LanguageModel for NeoX {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn mlp(&self, layer: usize, x: &[f32]) -> Vec<f32> {
        let (c, w) = (&self.config, &self.layers[layer]);
        let rows = x.len() / c.d_model;
        let mut hidden = affine(x, rows, c.d_model, &w.w_in, &w.b_in);
        map_in_place(&mut hidden, gelu);
        affine(&hidden, rows, c.d_ffn, &w.w_out, &w.b_out)
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
        let rope = Rope::new(&c.rope, seq_len);
        let mut x = vec![0f32; rows * d];
        for (row, &t) in x.chunks_mut(d).zip(tokens) {
            row.copy_from_slice(&self.embed[t as usize * d..(t as usize + 1) * d]);
        }
        for (l, w) in self.layers[..=last].iter().enumerate() {
            let h = layer_norm(&x, d, &w.ln1.0, &w.ln1.1, c.eps);
            let attn_out = self.attention(w, &h, &rope, seq_len);
            // Parallel residual: the MLP reads the layer's input, not the input plus attention.
            if !c.parallel_residual {
                add_assign(&mut x, &attn_out);
            }
            let mlp_in = layer_norm(&x, d, &w.ln2.0, &w.ln2.1, c.eps);
            let mut mlp_out = self.mlp(l, &mlp_in);
            hook(l, &mlp_in, &mut mlp_out);
            if c.parallel_residual {
                add_assign(&mut x, &attn_out);
            }
            add_assign(&mut x, &mlp_out);
        }
        if stop != Stop::Logits {
            return None;
        }
        let ((norm_w, norm_b), out) = self
            .head
            .as_ref()
            .expect("model loaded without its output head");
        let h = layer_norm(&x, d, norm_w, norm_b, c.eps);
        Some(linear(&h, rows, d, out, c.vocab_size))
    }
}
