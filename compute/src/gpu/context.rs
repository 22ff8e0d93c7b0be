//! One GPU opened for work: its context, a compute stream, and a second stream for copies that overlap it.

use anyhow::{anyhow, Result};
use cudarc::driver::{CudaContext, CudaStream};
use std::sync::Arc;

pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    /// Where kernels and library calls run, in order.
    pub stream: Arc<CudaStream>,
    /// Where uploads (and downloads) run beside the compute stream.
    pub copy_stream: Arc<CudaStream>,
    /// e.g. "NVIDIA H200 (sm_90)".
    pub name: String,
    pub capability: (i32, i32),
}

impl Gpu {
    /// Opens GPU `ordinal` with its two streams. Call only after [`super::probe`] returned `Ready`.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        let ctx =
            CudaContext::new(ordinal).map_err(|e| anyhow!("cannot open GPU {ordinal}: {e:?}"))?;
        let capability = ctx
            .compute_capability()
            .map_err(|e| anyhow!("GPU {ordinal}: no compute capability: {e:?}"))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let new_stream = || {
            ctx.new_stream()
                .map_err(|e| anyhow!("cannot create a CUDA stream: {e:?}"))
        };
        let (stream, copy_stream) = (new_stream()?, new_stream()?);
        Ok(Gpu {
            name: format!("{name} (sm_{}{})", capability.0, capability.1),
            ctx,
            stream,
            copy_stream,
            capability,
        })
    }

    /// The NVRTC target of this device, e.g. `compute_90`.
    pub fn arch(&self) -> String {
        format!("compute_{}{}", self.capability.0, self.capability.1)
    }

    /// Waits for everything queued on the compute stream.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| anyhow!("CUDA synchronize: {e:?}"))
    }

    /// Free and total device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .map_err(|e| anyhow!("CUDA memory info: {e:?}"))
    }
}
