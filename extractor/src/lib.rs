//! Stage one: runs a language model over text and writes its MLP inputs and outputs to an activation cache
//! through `cache-format`.
//!
//! - [`gguf`]: GGUF files, metadata and dequantisation ([`quants`]: the 5-bit blocks and K-quants);
//! - [`tokenizer`]: the tokenizer from GGUF metadata or a `tokenizer.json`;
//! - [`corpus`]: documents from text files, directories, JSONL and Parquet;
//! - [`sequences`]: documents → fixed-length token sequences, as sparsify's `chunk_and_tokenize`;
//! - [`source`]: what `--model` names (a GGUF file or a Hugging Face folder, [`hf`]);
//! - [`arch`]: each architecture in one file: its config, weight names, hookpoints and block;
//! - [`model`], [`llama`] (Llama, Gemma 2), [`neox`] (GPT-NeoX), [`ops`]: the forward pass on the CPU behind an
//!   architecture trait;
//! - [`extract`]: the extraction run (resumable, one forward pass for several layers);
//! - [`generate`]: text generation with a KV cache and the model's chat template (the offline explainer and
//!   scorer of `interp`).

pub mod arch;
pub mod corpus;
pub mod extract;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod llama;
pub mod model;
pub mod neox;
pub mod ops;
pub mod quants;
pub mod sequences;
pub mod source;
pub mod tokenizer;
