//! Finding out whether CUDA can run here, without ever letting cudarc panic.

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

/// Looks for the CUDA driver, NVRTC, cuBLAS and a device.
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
