//! Where one coder's training step runs: the CPU trainer ([`crate::coder`] + [`crate::adam`]), or the GPU step
//! sequence of [`crate::cuda::engine`] on the CUDA kernels, or on their CPU twins (which lets every test run
//! exercise the exact step the GPU runs). The training loop ([`crate::train`]) sees one interface: queue a
//! step, read its statistics, bring the state back to the host for checkpoints.

use crate::adam::{adam_step, AdamStep};
use crate::checkpoint::CoderState;
use crate::coder::{Grads, Losses, SparseCoder, StepStats};
use crate::cuda::engine::Engine;
use crate::cuda::gpu_ops::{GemmPrecision, GpuOps};
use crate::cuda::ops::{CpuTwins, Ops};
use crate::fused_topk::QuantizedEncoder;
use anyhow::{bail, Result};
use cache_format::Side;
use cudarc::driver::CudaSlice;
use rayon::prelude::*;

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

/// What the step of one batch reads: the host batch, and on the GPU its copy on the device.
pub struct StepInput<'a> {
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub device: Option<(&'a CudaSlice<f32>, &'a CudaSlice<f32>)>,
    pub rows: usize,
    pub lr: f32,
    /// 1-based optimiser step.
    pub t: u64,
    pub dead_tokens: u64,
    pub losses: Losses,
}

pub enum Backend {
    Cpu {
        grads: Grads,
        last: StepStats,
        /// W_enc rounded for the screened encoder, kept in step with it by the Adam pass (None until the first
        /// step, with AuxK or Multi-TopK, and on CPUs without the screened encoder).
        quantized: Option<Box<QuantizedEncoder>>,
    },
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
            Device::Cpu => Backend::Cpu {
                grads: state.coder.zero_grads(),
                last: StepStats::default(),
                quantized: None,
            },
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
            state.coder.init_from_batch(input.x, input.y, input.rows);
            match self {
                Backend::Cpu { .. } => {}
                Backend::Twins(e) => e.upload_params(&CpuTwins, &state.coder)?,
                Backend::Cuda(e) => e.upload_params(gpu.unwrap(), &state.coder)?,
            }
        }
        match self {
            Backend::Cpu {
                grads,
                last,
                quantized,
            } => *last = cpu_step(state, grads, quantized, input),
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
            Backend::Cpu { last, .. } => *last,
            Backend::Twins(e) => e.stats(&CpuTwins)?,
            Backend::Cuda(e) => e.stats(gpu.unwrap())?,
        })
    }

    /// The CPU trainer's rounded copy of W_enc, as the last step left it (None before the first step, with AuxK
    /// or Multi-TopK, on other backends, and on CPUs without the screened encoder). For the trainer's tests.
    #[doc(hidden)]
    pub fn quantized_encoder(&self) -> Option<&QuantizedEncoder> {
        match self {
            Backend::Cpu { quantized, .. } => quantized.as_deref(),
            _ => None,
        }
    }

    /// Brings parameters, moments and counters back into `state` (a no-op on the CPU, where they live).
    pub fn sync_to_host(&self, state: &mut CoderState, gpu: Option<&GpuOps>) -> Result<()> {
        match self {
            Backend::Cpu { .. } => Ok(()),
            Backend::Twins(e) => e.download_into(&CpuTwins, state),
            Backend::Cuda(e) => e.download_into(gpu.unwrap(), state),
        }
    }
}

/// The CPU trainer's step: forward and exact sparse gradients (with the optional losses), the SAE's decoder
/// projection, Adam on each tensor, the unit-norm constraint, dead-latent counters.
fn cpu_step(
    state: &mut CoderState,
    grads: &mut Grads,
    quantized: &mut Option<Box<QuantizedEncoder>>,
    input: &StepInput,
) -> StepStats {
    let coder = &mut state.coder;
    let c = coder.cfg.clone();
    // AuxK and Multi-TopK select from the dense product, so the rounded copy would go unused.
    if quantized.is_none() && input.losses == Losses::default() {
        *quantized = coder.quantize_encoder().map(Box::new);
    }
    let dead_mask: Option<Vec<bool>> = (input.losses.auxk_alpha > 0.0).then(|| {
        state
            .tokens_since_fired
            .iter()
            .map(|&f| f > input.dead_tokens)
            .collect()
    });
    let (stats, enc) = coder.forward_backward(
        input.x,
        input.y,
        input.rows,
        grads,
        &input.losses,
        dead_mask.as_deref(),
        quantized.as_deref(),
    );
    coder.project_decoder_grad(grads);
    let (lr, t) = (input.lr, input.t);
    let m = &mut state.moments;
    match quantized {
        // W_enc's panels are rounded again as Adam leaves them, while they are in cache.
        Some(q) => {
            let (step, chunk) = (
                AdamStep::new(lr, t),
                QuantizedEncoder::rows_per_panel() * c.d_in,
            );
            let moments = &mut m.w_enc;
            coder
                .w_enc
                .par_chunks_mut(chunk)
                .zip(grads.w_enc.par_chunks(chunk))
                .zip(
                    moments
                        .m
                        .par_chunks_mut(chunk)
                        .zip(moments.v.par_chunks_mut(chunk)),
                )
                .zip(q.slots())
                .for_each(|(((p, g), (m, v)), mut slot)| {
                    step.apply(p, g, m, v);
                    slot.round(p);
                });
            q.join_bounds();
        }
        None => adam_step(&mut coder.w_enc, &grads.w_enc, &mut m.w_enc, lr, t),
    }
    adam_step(&mut coder.b_enc, &grads.b_enc, &mut m.b_enc, lr, t);
    adam_step(&mut coder.w_dec, &grads.w_dec, &mut m.w_dec, lr, t);
    adam_step(&mut coder.b_dec, &grads.b_dec, &mut m.b_dec, lr, t);
    if let (Some(w), Some(g), Some(m)) = (
        coder.w_skip.as_mut(),
        grads.w_skip.as_ref(),
        m.w_skip.as_mut(),
    ) {
        adam_step(w, g, m, lr, t);
    }
    coder.normalize_decoder();
    let fired = &mut state.tokens_since_fired;
    fired.iter_mut().for_each(|f| *f += input.rows as u64);
    for i in SparseCoder::fired(&enc) {
        fired[i as usize] = 0;
    }
    let dead = fired.iter().filter(|&&f| f > input.dead_tokens).count();
    StepStats {
        dead_fraction: dead as f64 / c.num_latents as f64,
        ..stats
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
