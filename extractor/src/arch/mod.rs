//! The model architectures `extract` runs, each described in one file: how its Hugging Face `config.json`
//! reads, what its weights are named, where its MLP hookpoints are, and which block it runs.
//!
//! - [`llama`]: `LlamaForCausalLM` (Llama 2/3, SmolLM2, with Llama 3 rope scaling);
//! - [`gemma2`]: `Gemma2ForCausalLM`, the Llama block with Gemma 2's switches;
//! - [`gpt_neox`]: `GPTNeoXForCausalLM` (Pythia);
//! - [`llama_family`]: the config parsing and weight loading the Llama-block architectures share, driven by
//!   each one's [`llama_family::Variant`].
//!
//! GGUF files hold the Llama, Qwen2 or Gemma 3 architecture ([`crate::llama::Llama::from_gguf`], hookpoints of
//! [`llama`]; Gemma 3's MLP input is its `ffn_norm` output and its output is taken before `post_ffw_norm`).
//!
//! To add an architecture: a file here with its [`Descriptor`], one entry in [`ALL`], and a fixture made by
//! `scripts/make_hf_fixtures.py` for the golden test; a block that no existing forward pass computes also
//! needs its forward pass (as [`crate::neox`]).

pub mod gemma2;
pub mod gpt_neox;
pub mod llama;
pub mod llama_family;

use crate::hf::HfFolder;
use crate::model::LanguageModel;
use anyhow::Result;
use llama_family::Variant;

/// Everything the rest of the extractor needs to know of one architecture.
pub struct Descriptor {
    /// Our name for it (the cache manifest's `architecture`).
    pub name: &'static str,
    /// transformers' class in `config.json`'s `architectures`.
    pub hf_class: &'static str,
    /// `config.json`'s `model_type`, read when `architectures` is absent.
    pub model_type: &'static str,
    /// The MLP input and output hookpoints of a layer, in the model's own module names.
    pub hookpoints: fn(layer: usize) -> (String, String),
    pub block: Block,
}

/// Which forward pass runs the architecture.
pub enum Block {
    /// [`crate::llama`]'s, with these switches (text generation with a KV cache runs these too).
    Llama(&'static Variant),
    /// [`crate::neox`]'s.
    NeoX,
}

impl Descriptor {
    /// Layers `0..=last` of `folder`, with the output head when `with_head`.
    pub fn load(
        &self,
        folder: &HfFolder,
        last: usize,
        with_head: bool,
    ) -> Result<Box<dyn LanguageModel>> {
        Ok(match self.block {
            Block::Llama(v) => Box::new(llama_family::load(folder, v, last, with_head)?),
            Block::NeoX => Box::new(gpt_neox::load(folder, last, with_head)?),
        })
    }
}

/// Every architecture read from Hugging Face folders.
pub const ALL: &[&Descriptor] = &[
    &llama::DESCRIPTOR,
    &gemma2::DESCRIPTOR,
    &gpt_neox::DESCRIPTOR,
];

/// The architecture `config.json` declares: by class name, or by `model_type` when no class is given.
pub fn find(declared: Option<&str>, model_type: Option<&str>) -> Option<&'static Descriptor> {
    ALL.iter().copied().find(|d| match declared {
        Some(class) => class == d.hf_class,
        None => model_type == Some(d.model_type),
    })
}

/// The supported classes, for messages.
pub fn supported() -> String {
    ALL.iter()
        .map(|d| d.hf_class)
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.hf_class)
    }
}
