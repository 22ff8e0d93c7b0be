//! One coder's training step as a sequence of [`Ops`]: encoder GEMM, TopK, sparse decode (+ skip GEMM), FVU,
//! sparse backward, Adam, the SAE decoder constraint and dead-latent counters. Parameters, moments, gradients
//! and scratch buffers live wherever `O` keeps them (GPU memory for [`super::gpu_ops::GpuOps`]); the host sees
//! only the two sums of the FVU and two counts per step.
//!
//! The same formulas as [`crate::coder::SparseCoder::forward_backward`] (whose results it must reproduce), without
//! the optional AuxK and Multi-TopK terms.

use super::ops::Ops;
use crate::adam::{Moments, BETA1, BETA2};
use crate::checkpoint::CoderState;
use crate::coder::{CoderConfig, SparseCoder, StepStats};
use crate::tensors::Tensors;
use anyhow::{bail, Result};

pub struct Engine<O: Ops> {
    pub cfg: CoderConfig,
    batch_rows: usize,
    params: Tensors<O::F32>,
    grads: Tensors<O::F32>,
    m: Tensors<O::F32>,
    v: Tensors<O::F32>,
    since_fired: O::U64,
    /// x − b_dec (SAE only).
    xc: O::F32,
    pre: O::F32,
    acts: O::F32,
    idx: O::U32,
    g_pre: O::F32,
    y_hat: O::F32,
    /// The prediction's error, then the loss gradient with respect to the prediction.
    dy: O::F32,
    mean: O::F32,
    /// SAE: the gradient reaching x − b_dec, and its column sums.
    g_xc: O::F32,
    col: O::F32,
    /// The FVU's sums `[total variance, squared error]` and the counts `[live activations, dead latents]` of
    /// the last step, left on the device until [`Engine::stats`] reads them.
    sums: O::F64,
    counts: O::U64,
}

/// The largest k the TopK kernel takes (TOPK_MAX_K in topk.cu).
pub const MAX_K: usize = 128;

impl<O: Ops> Engine<O> {
    /// Buffers for batches of `batch_rows`, parameters and optimiser state from `state`.
    pub fn new(ops: &O, state: &CoderState, batch_rows: usize) -> Result<Engine<O>> {
        let cfg = state.coder.cfg.clone();
        if cfg.k > MAX_K {
            bail!(
                "k = {} is above {MAX_K}, the largest the GPU TopK kernel takes; use --device cpu",
                cfg.k
            );
        }
        let (rows, n) = (batch_rows, cfg.num_latents);
        let sae = !cfg.kind.transcodes();
        Ok(Engine {
            batch_rows,
            params: state.coder.tensors().try_map(|_, t| ops.uploaded_f32(t))?,
            grads: state
                .coder
                .tensors()
                .try_map(|_, t| ops.zeros_f32(t.len()))?,
            m: state.moments.try_map(|_, mo| ops.uploaded_f32(&mo.m))?,
            v: state.moments.try_map(|_, mo| ops.uploaded_f32(&mo.v))?,
            since_fired: ops.uploaded_u64(&state.tokens_since_fired)?,
            xc: ops.zeros_f32(if sae { rows * cfg.d_in } else { 0 })?,
            pre: ops.zeros_f32(rows * n)?,
            acts: ops.zeros_f32(rows * cfg.k)?,
            idx: ops.zeros_u32(rows * cfg.k)?,
            g_pre: ops.zeros_f32(rows * cfg.k)?,
            y_hat: ops.zeros_f32(rows * cfg.d_out)?,
            dy: ops.zeros_f32(rows * cfg.d_out)?,
            mean: ops.zeros_f32(cfg.d_out)?,
            g_xc: ops.zeros_f32(if sae { rows * cfg.d_in } else { 0 })?,
            col: ops.zeros_f32(cfg.d_in)?,
            sums: ops.zeros_f64(2)?,
            counts: ops.zeros_u64(2)?,
            cfg,
        })
    }

    /// Replaces the parameters (after the host's step-0 initialisation from the first batch).
    pub fn upload_params(&mut self, ops: &O, coder: &SparseCoder) -> Result<()> {
        self.params = coder.tensors().try_map(|_, t| ops.uploaded_f32(t))?;
        Ok(())
    }

    /// Parameters, moments and counters back into `state`, for checkpoints.
    pub fn download_into(&self, ops: &O, state: &mut CoderState) -> Result<()> {
        let download = |_, t: &O::F32| ops.download_f32(t);
        state.coder.set_tensors(self.params.try_map(download)?);
        state.moments = self
            .m
            .try_map(download)?
            .zip(self.v.try_map(download)?)
            .into_map(|(m, v)| Moments { m, v });
        state.tokens_since_fired = ops.download_u64(&self.since_fired)?;
        Ok(())
    }

    /// Queues one optimisation step on the batch `x → y` (`rows` must be the batch size given to
    /// [`Engine::new`]); [`Engine::stats`] waits for it and reads its loss and counts.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        ops: &O,
        x: &O::F32,
        y: &O::F32,
        rows: usize,
        lr: f32,
        t: u64,
        dead_after: u64,
    ) -> Result<()> {
        assert_eq!(
            rows, self.batch_rows,
            "the engine's buffers are sized for one batch size"
        );
        self.forward(ops, x, y, rows)?;
        self.backward(ops, x, rows)?;
        self.optimise(ops, lr, t)?;
        let c = &self.cfg;
        ops.track_fired(
            &self.acts,
            &self.idx,
            rows,
            c.k,
            &mut self.since_fired,
            c.num_latents,
            dead_after,
            &mut self.counts,
        )
    }

    /// Encode, decode, the FVU's sums and its gradient with respect to the prediction (in `dy`).
    fn forward(&mut self, ops: &O, x: &O::F32, y: &O::F32, rows: usize) -> Result<()> {
        let c = &self.cfg;
        let (k, d_in, d_out, n) = (c.k, c.d_in, c.d_out, c.num_latents);
        let p = &self.params;
        let xc = if !c.kind.transcodes() {
            ops.sub_row_vector(x, &p.b_dec, rows, d_in, &mut self.xc)?;
            &self.xc
        } else {
            x
        };
        ops.linear(xc, rows, d_in, &p.w_enc, n, &mut self.pre, false)?;
        ops.topk_relu(
            &self.pre,
            &p.b_enc,
            rows,
            n,
            k,
            &mut self.acts,
            &mut self.idx,
        )?;
        if let Some(w_skip) = &p.w_skip {
            ops.linear(x, rows, d_in, w_skip, d_out, &mut self.y_hat, false)?;
        }
        let accumulate = p.w_skip.is_some();
        ops.sparse_decode(
            &self.acts,
            &self.idx,
            &p.w_dec,
            Some(&p.b_dec),
            rows,
            k,
            d_out,
            accumulate,
            &mut self.y_hat,
        )?;
        ops.column_sums(y, rows, d_out, rows as f32, &mut self.mean)?;
        ops.fvu_sums(
            y,
            &self.mean,
            &self.y_hat,
            rows,
            d_out,
            &mut self.dy,
            &mut self.sums,
        )?;
        ops.fvu_grad(&mut self.dy, &self.sums)
    }

    /// Gradients of every tensor from `dy`, touching only the k active latents per row.
    fn backward(&mut self, ops: &O, x: &O::F32, rows: usize) -> Result<()> {
        let c = &self.cfg;
        let (k, d_in, d_out, n) = (c.k, c.d_in, c.d_out, c.num_latents);
        let sae = !c.kind.transcodes();
        let (p, g) = (&self.params, &mut self.grads);
        for t in [&mut g.w_enc, &mut g.b_enc, &mut g.w_dec, &mut g.b_dec] {
            ops.fill_zero(t)?;
        }
        let xc = if sae { &self.xc } else { x };
        ops.column_sums(&self.dy, rows, d_out, 1.0, &mut g.b_dec)?;
        ops.latent_grads(
            &self.dy,
            &self.acts,
            &self.idx,
            &p.w_dec,
            rows,
            k,
            d_out,
            &mut self.g_pre,
        )?;
        ops.scatter_rows(
            &self.acts,
            &self.idx,
            &self.dy,
            rows,
            k,
            d_out,
            &mut g.w_dec,
            None,
        )?;
        ops.scatter_rows(
            &self.g_pre,
            &self.idx,
            xc,
            rows,
            k,
            d_in,
            &mut g.w_enc,
            Some(&mut g.b_enc),
        )?;
        if sae {
            // b_dec also enters through x − b_dec.
            ops.sparse_decode(
                &self.g_pre,
                &self.idx,
                &p.w_enc,
                None,
                rows,
                k,
                d_in,
                false,
                &mut self.g_xc,
            )?;
            ops.column_sums(&self.g_xc, rows, d_in, 1.0, &mut self.col)?;
            ops.sub_assign(&mut g.b_dec, &self.col)?;
            ops.project_decoder_grad(&p.w_dec, &mut g.w_dec, n, d_out)?;
        }
        if let Some(gs) = g.w_skip.as_mut() {
            ops.outer_grad(&self.dy, x, rows, d_out, d_in, gs)?;
        }
        Ok(())
    }

    /// Adam on every tensor (step `t`, 1-based), then the SAE's unit-norm decoder rows.
    fn optimise(&mut self, ops: &O, lr: f32, t: u64) -> Result<()> {
        let bias1 = 1.0 - (BETA1 as f64).powi(t as i32);
        let bias2 = 1.0 - (BETA2 as f64).powi(t as i32);
        let (step_size, bias2_sqrt) = ((lr as f64 / bias1) as f32, bias2.sqrt() as f32);
        let (p, g, m, v) = (&mut self.params, &self.grads, &mut self.m, &mut self.v);
        let adam = |p: &mut O::F32, g: &O::F32, m: &mut O::F32, v: &mut O::F32| {
            ops.adam(p, g, m, v, step_size, bias2_sqrt)
        };
        adam(&mut p.w_enc, &g.w_enc, &mut m.w_enc, &mut v.w_enc)?;
        adam(&mut p.b_enc, &g.b_enc, &mut m.b_enc, &mut v.b_enc)?;
        adam(&mut p.w_dec, &g.w_dec, &mut m.w_dec, &mut v.w_dec)?;
        adam(&mut p.b_dec, &g.b_dec, &mut m.b_dec, &mut v.b_dec)?;
        if let (Some(w), Some(gw), Some(mw), Some(vw)) = (
            p.w_skip.as_mut(),
            g.w_skip.as_ref(),
            m.w_skip.as_mut(),
            v.w_skip.as_mut(),
        ) {
            adam(w, gw, mw, vw)?;
        }
        if !self.cfg.kind.transcodes() {
            ops.normalize_rows(&mut p.w_dec, self.cfg.num_latents, self.cfg.d_out)?;
        }
        Ok(())
    }

    /// The last step's FVU, L0 and dead fraction (waits for the step to finish).
    pub fn stats(&self, ops: &O) -> Result<StepStats> {
        let sums = ops.download_f64(&self.sums)?;
        let counts = ops.download_u64(&self.counts)?;
        Ok(StepStats {
            fvu: sums[1] / sums[0],
            l0: counts[0] as f64 / self.batch_rows as f64,
            dead_fraction: counts[1] as f64 / self.cfg.num_latents as f64,
            ..Default::default()
        })
    }
}
