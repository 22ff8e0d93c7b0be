//! Stage two: trains TopK sparse coders (SAE, transcoder, skip transcoder) on batches streamed from an
//! activation cache.
//!
//! - [`coder`]: the model, its initialisation and exact gradients;
//! - [`topk`], [`fused_topk`]: the selection it is built on (the second screens the encoder's product in
//!   16-bit integers fused with its selection, then finishes it exactly, on AVX2 CPUs); dense products and
//!   vector helpers come from `compute::cpu`;
//! - [`jump_relu`]: JumpReLU's selection, for imported coders (inference only);
//! - [`huge_pages`]: 2 MiB pages for the large tensors;
//! - [`adam`]: the fused Adam step and sparsify's learning-rate schedule;
//! - [`tensors`]: a coder's parameter tensors by name (parameters, moments, device copies);
//! - [`regression`]: the ridge-regression affine map between the cache's sides (the linear baseline);
//! - [`checkpoint`]: sparsify's checkpoint layout (`cfg.json` + `sae.safetensors`) and our training state;
//! - [`heldout`]: FVU on held-out rows (eval's sums, and train's `--eval-every` curve);
//! - [`train`]: the training loop, several coders on the same batches (sweeps), metrics, resume;
//! - [`step`]: what one coder's step reads (the batch, on the host and on the GPU, and its settings);
//! - [`cpu_step`]: one coder's CPU step (gradients, Adam with the rounded encoder kept in step, counters);
//! - [`backend`]: where one coder's step runs (the CPU step, or the GPU engine of [`cuda`]): dispatch only;
//! - [`cuda`]: the GPU trainer: CUDA kernels with their CPU twins, and the step written against both.

pub mod adam;
pub mod backend;
pub mod checkpoint;
pub mod coder;
pub mod cpu_step;
pub mod cuda;
pub mod fused_topk;
pub mod heldout;
pub mod huge_pages;
pub mod jump_relu;
pub mod regression;
pub mod step;
pub mod tensors;
pub mod topk;
pub mod train;
