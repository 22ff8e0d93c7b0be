//! The CPU trainer's step for one coder: forward and exact sparse gradients ([`crate::coder`], with the
//! optional AuxK and Multi-TopK terms), the SAE's decoder projection, Adam on each tensor ([`crate::adam`]),
//! the unit-norm constraint, dead-latent counters. It keeps W_enc's rounded copy for the screened encoder in
//! step with W_enc: each panel is rounded again as Adam leaves it, while it is in cache.

use crate::adam::{adam_step, AdamStep};
use crate::checkpoint::CoderState;
use crate::coder::{Grads, Losses, SparseCoder, StepStats};
use crate::fused_topk::QuantizedEncoder;
use crate::step::StepInput;
use rayon::prelude::*;

/// One coder's CPU step state: its gradient buffers, the last step's statistics, and the rounded W_enc.
pub struct CpuStep {
    grads: Grads,
    pub last: StepStats,
    /// W_enc rounded for the screened encoder, kept in step with it by the Adam pass (None until the first
    /// step, with AuxK or Multi-TopK, and on CPUs without the screened encoder).
    pub quantized: Option<Box<QuantizedEncoder>>,
}

impl CpuStep {
    pub fn new(state: &CoderState) -> CpuStep {
        CpuStep {
            grads: state.coder.zero_grads(),
            last: StepStats::default(),
            quantized: None,
        }
    }

    /// Runs one step on `input`, updating `state`; its statistics are then in `last`.
    pub fn step(&mut self, state: &mut CoderState, input: &StepInput) {
        self.last = cpu_step(state, &mut self.grads, &mut self.quantized, input);
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
