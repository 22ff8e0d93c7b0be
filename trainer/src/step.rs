//! What one training step of one coder reads, on every backend.

use crate::coder::Losses;
use cudarc::driver::CudaSlice;

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
