//! Where one coder's training step runs: the CPU trainer ([`crate::cpu_step`]), or the GPU step
//! sequence of [`crate::cuda::engine`] on the CUDA kernels, or on their CPU twins (which lets every test run
//! exercise the exact step the GPU runs). The training loop ([`crate::train`]) sees one interface: queue a
//! step, read its statistics, bring the state back to the host for checkpoints.

use crate::checkpoint::CoderState;
use crate::coder::StepStats;
use crate::cpu_step::CpuStep;
use crate::cuda::engine::Engine;
use crate::cuda::gpu_ops::{GemmPrecision, GpuOps};
use crate::cuda::ops::{CpuTwins, Ops};
use crate::fused_topk::QuantizedEncoder;
use crate::step::StepInput;
use anyhow::{bail, Result};
use cache_format::Side;
use cudarc::driver::CudaSlice;

/// Which implementation trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    #[default]
    Cpu,
    /// The GPU (device 0), with cuBLAS at this precision.
    Cuda(GemmPrecision),
    /// The GPU's step sequence on the kernels' CPU twins: slow, for tests.
    Twins,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda(_) => "cuda",
            Device::Twins => "cpu-twins",
        }
    }
}

pub enum Backend {
    Cpu(Box<CpuStep>),
    Twins(Box<Engine<CpuTwins>>),
    Cuda(Box<Engine<GpuOps>>),
}

impl Backend {
    pub fn new(
        device: Device,
        gpu: Option<&GpuOps>,
        state: &CoderState,
        batch_rows: usize,
    ) -> Result<Backend> {
        Ok(match device {
            Device::Cpu => Backend::Cpu(Box::new(CpuStep::new(state))),
            Device::Twins => Backend::Twins(Box::new(Engine::new(&CpuTwins, state, batch_rows)?)),
            Device::Cuda(_) => {
                let Some(gpu) = gpu else {
                    bail!("the CUDA backend needs an open GPU")
                };
                Backend::Cuda(Box::new(Engine::new(gpu, state, batch_rows)?))
            }
        })
    }

    /// Queues (GPU) or runs (CPU) one step. At step 0 (`t == 1`) the coder is first initialised from the batch.
    pub fn step(
        &mut self,
        state: &mut CoderState,
        gpu: Option<&GpuOps>,
        input: &StepInput,
    ) -> Result<()> {
        if input.t == 1 {
            state.init_from_batch(input.x, input.y, input.rows);
            match self {
                Backend::Cpu(_) => {}
                Backend::Twins(e) => e.upload_params(&CpuTwins, &state.coder)?,
                Backend::Cuda(e) => e.upload_params(gpu.unwrap(), &state.coder)?,
            }
        }
        match self {
            Backend::Cpu(c) => c.step(state, input),
            Backend::Twins(e) => e.step(
                &CpuTwins,
                &input.x.to_vec(),
                &input.y.to_vec(),
                input.rows,
                input.lr,
                input.t,
                input.dead_tokens,
            )?,
            Backend::Cuda(e) => {
                let (x, y) = input.device.expect("the batch is on the GPU");
                e.step(
                    gpu.unwrap(),
                    x,
                    y,
                    input.rows,
                    input.lr,
                    input.t,
                    input.dead_tokens,
                )?
            }
        }
        Ok(())
    }

    /// The last step's results (on the GPU, waits for it).
    pub fn result(&self, gpu: Option<&GpuOps>) -> Result<StepStats> {
        Ok(match self {
            Backend::Cpu(c) => c.last,
            Backend::Twins(e) => e.stats(&CpuTwins)?,
            Backend::Cuda(e) => e.stats(gpu.unwrap())?,
        })
    }

    /// The CPU trainer's rounded copy of W_enc, as the last step left it (None before the first step, with AuxK
    /// or Multi-TopK, on other backends, and on CPUs without the screened encoder). For the trainer's tests.
    #[doc(hidden)]
    pub fn quantized_encoder(&self) -> Option<&QuantizedEncoder> {
        match self {
            Backend::Cpu(c) => c.quantized.as_deref(),
            _ => None,
        }
    }

    /// Brings parameters, moments and counters back into `state` (a no-op on the CPU, where they live).
    pub fn sync_to_host(&self, state: &mut CoderState, gpu: Option<&GpuOps>) -> Result<()> {
        match self {
            Backend::Cpu(_) => Ok(()),
            Backend::Twins(e) => e.download_into(&CpuTwins, state),
            Backend::Cuda(e) => e.download_into(gpu.unwrap(), state),
        }
    }
}

/// The GPU's copy of a batch: both sides, uploaded once for every coder of a sweep.
pub struct DeviceBatch {
    pub mlp_in: CudaSlice<f32>,
    pub mlp_out: CudaSlice<f32>,
}

impl DeviceBatch {
    pub fn new(gpu: &GpuOps, rows: usize, d_in: usize, d_out: usize) -> Result<DeviceBatch> {
        Ok(DeviceBatch {
            mlp_in: gpu.zeros_f32(rows * d_in)?,
            mlp_out: gpu.zeros_f32(rows * d_out)?,
        })
    }

    pub fn side(&self, side: Side) -> &CudaSlice<f32> {
        match side {
            Side::MlpIn => &self.mlp_in,
            Side::MlpOut => &self.mlp_out,
        }
    }

    /// Queues the copy of `mlp_in` and `mlp_out` (returns once they are in pinned staging memory).
    pub fn upload(&mut self, gpu: &GpuOps, mlp_in: &[f32], mlp_out: &[f32]) -> Result<()> {
        gpu.upload_f32(mlp_in, &mut self.mlp_in)?;
        gpu.upload_f32(mlp_out, &mut self.mlp_out)
    }
}
