//! Stage two: trains TopK sparse coders (SAE, transcoder, skip transcoder) on batches streamed from an
//! activation cache.
//!
//! - [`coder`]: the model, its initialisation and exact gradients;
//! - [`topk`], [`linalg`]: the selection and dense products it is built on;
//! - [`adam`]: the fused Adam step and sparsify's learning-rate schedule;
//! - [`checkpoint`]: sparsify's checkpoint layout (`cfg.json` + `sae.safetensors`) and our training state;
//! - [`train`]: the training loop, several coders on the same batches (sweeps), metrics, resume.

pub mod adam;
pub mod checkpoint;
pub mod coder;
pub mod linalg;
pub mod topk;
pub mod train;
