//! `LlamaForCausalLM`: Llama 2/3 (with Llama 3 rope scaling), SmolLM2, and the Llama GGUF files. The block
//! is [`crate::llama`]'s; RMSNorm before attention and before the MLP, SwiGLU MLP.

use super::llama_family::Variant;
use super::{Block, Descriptor};

pub const DESCRIPTOR: Descriptor = Descriptor {
    name: "llama",
    hf_class: "LlamaForCausalLM",
    model_type: "llama",
    hookpoints,
    block: Block::Llama(&Variant {
        default_activation: "silu",
        gemma: false,
    }),
};

/// As sparsify's hooks on the `mlp` module: what it receives, what it returns.
pub fn hookpoints(layer: usize) -> (String, String) {
    (
        format!("model.layers.{layer}.mlp input (post_attention_layernorm output)"),
        format!("model.layers.{layer}.mlp output (down_proj, before the residual add)"),
    )
}
