//! The runtime both stages run on, with nothing of the project's own below it.
//!
//! - [`cpu`]: the one wrapper of the `gemm` crate (with the one rule for spreading a product over threads),
//!   CPU feature detection, the vector helpers, and [`cpu::SendPtr`] for tasks writing disjoint parts of one
//!   buffer;
//! - [`gpu`]: CUDA without panics — probing the libraries and the device before cudarc is touched, the device
//!   context and its streams, NVRTC compilation with an on-disk PTX cache, the registry of kernel sources, and
//!   pinned host buffers for uploads that overlap compute.
//!
//! `extractor` and `trainer` both build on this crate and never on each other.

pub mod cpu;
pub mod gpu;
