//! The GPU trainer: one training step written once ([`engine`]) against a small set of operations ([`ops`]),
//! implemented twice: by plain CPU loops ([`ops::CpuTwins`]) and by hand-written CUDA kernels plus cuBLAS
//! ([`gpu_ops::GpuOps`]). The kernels (`*.cu` beside this file) are compiled at run time by NVRTC for the GPU
//! present, so the binary builds and runs on machines without CUDA.
//!
//! Probing for CUDA, the device context, NVRTC with its PTX cache, kernel loading and pinned uploads come from
//! `compute::gpu`, which the extractor shares; this module owns the trainer's kernels and its step.

pub mod engine;
pub mod gpu_ops;
pub mod ops;

use compute::gpu::KernelSource;

/// One `.cu` file beside this one.
macro_rules! cu {
    ($file:literal) => {
        KernelSource {
            file: $file,
            source: include_str!($file),
        }
    };
}

/// Every kernel source of the trainer. Each file is compiled on its own.
pub const KERNEL_SOURCES: &[KernelSource] = &[
    cu!("topk.cu"),
    cu!("decode.cu"),
    cu!("backward.cu"),
    cu!("adam.cu"),
    cu!("reduce.cu"),
];
