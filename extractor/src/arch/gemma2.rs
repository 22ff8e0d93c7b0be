//! `Gemma2ForCausalLM`: the Llama block with Gemma 2's switches ([`Variant::gemma`]): √d embedding scale,
//! (1 + w) RMSNorms before and after attention and the MLP, GeGLU (tanh GELU), attention and final logit
//! soft-capping, alternating sliding-window layers, `query_pre_attn_scalar`, tied embeddings.

use super::llama_family::Variant;
use super::{Block, Descriptor};

pub const DESCRIPTOR: Descriptor = Descriptor {
    name: "gemma2",
    hf_class: "Gemma2ForCausalLM",
    model_type: "gemma2",
    hookpoints,
    block: Block::Llama(&Variant {
        default_activation: "gelu_pytorch_tanh",
        gemma: true,
    }),
};

/// The MLP's input is the `pre_feedforward_layernorm` output; its output is taken before the post-norm.
pub fn hookpoints(layer: usize) -> (String, String) {
    (
        format!("model.layers.{layer}.mlp input (pre_feedforward_layernorm output)"),
        format!(
            "model.layers.{layer}.mlp output (down_proj, before post_feedforward_layernorm and the residual add)"
        ),
    )
}
