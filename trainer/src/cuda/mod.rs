//! The GPU trainer: one training step written once ([`engine`]) against a small set of operations ([`ops`]),
//! implemented twice: by plain CPU loops ([`ops::CpuTwins`]) and by hand-written CUDA kernels plus cuBLAS
//! ([`gpu_ops::GpuOps`]). The kernels (`*.cu` beside this file) are compiled at run time by NVRTC for the GPU
//! present, so the binary builds and runs on machines without CUDA.
//!
//! cudarc panics when a CUDA library is missing, so nothing here touches it before [`probe`] has checked that
//! the driver, NVRTC and cuBLAS libraries load and a device exists.

pub mod engine;
pub mod gpu_ops;
pub mod ops;

use anyhow::{anyhow, Result};

/// Every kernel source, by file name. Each file is compiled on its own.
pub const KERNEL_SOURCES: &[(&str, &str)] = &[
    ("topk.cu", include_str!("topk.cu")),
    ("decode.cu", include_str!("decode.cu")),
    ("backward.cu", include_str!("backward.cu")),
    ("adam.cu", include_str!("adam.cu")),
    ("reduce.cu", include_str!("reduce.cu")),
];

/// What [`probe`] found.
#[derive(Clone, Debug)]
pub enum Probe {
    /// A usable GPU: its name and compute capability.
    Ready {
        name: String,
        capability: (i32, i32),
    },
    /// Why the GPU path cannot run, in one line.
    Unavailable(String),
}

/// Whether the NVRTC library loads (all that compiling kernels to PTX needs; no GPU, no driver).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Looks for the CUDA driver, NVRTC, cuBLAS and a device, without ever letting cudarc panic.
pub fn probe() -> Probe {
    // SAFETY: each call only tries to dlopen a library by its usual names.
    let (driver, nvrtc, cublas) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    };
    if !driver {
        return Probe::Unavailable("no CUDA driver (libcuda.so not found)".into());
    }
    if !nvrtc {
        return Probe::Unavailable(
            "the CUDA driver is there but NVRTC is not (libnvrtc.so not found; it compiles the kernels)".into(),
        );
    }
    if !cublas {
        return Probe::Unavailable(
            "the CUDA driver is there but cuBLAS is not (libcublas.so not found)".into(),
        );
    }
    match cudarc::driver::CudaContext::device_count() {
        Ok(n) if n > 0 => {}
        Ok(_) => return Probe::Unavailable("the CUDA driver reports no device".into()),
        Err(e) => return Probe::Unavailable(format!("the CUDA driver does not initialise: {e:?}")),
    }
    match cudarc::driver::CudaContext::new(0) {
        Ok(ctx) => Probe::Ready {
            name: ctx.name().unwrap_or_else(|_| "unknown GPU".into()),
            capability: ctx.compute_capability().unwrap_or((0, 0)),
        },
        Err(e) => Probe::Unavailable(format!("cannot open GPU 0: {e:?}")),
    }
}

/// Compiles one kernel source to PTX for `arch` (e.g. `compute_90`). Errors carry NVRTC's log.
pub fn compile(file: &str, source: &str, arch: &str) -> Result<cudarc::nvrtc::Ptx> {
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()],
        name: Some(file.to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            anyhow!(
                "{file}: NVRTC failed for {arch}:\n{}",
                log.to_string_lossy()
            )
        }
        other => anyhow!("{file}: NVRTC failed for {arch}: {other:?}"),
    })
}
