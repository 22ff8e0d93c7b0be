//! Adam as `torch.optim.Adam` computes it (β 0.9/0.999, ε 1e-8, no weight decay), fused into one pass per
//! tensor, and sparsify's learning-rate schedule (linear warm-up, then linear decay to zero).

use crate::huge_pages;
use compute::dispatch_wide;
use rayon::prelude::*;

pub const BETA1: f32 = 0.9;
pub const BETA2: f32 = 0.999;
pub const EPS: f32 = 1e-8;

/// First and second moments of one parameter tensor.
#[derive(Clone, Debug)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl Moments {
    pub fn zeros(n: usize) -> Moments {
        Moments {
            m: huge_pages::zeros(n),
            v: huge_pages::zeros(n),
        }
    }
}

/// The coefficients of one Adam step: learning rate `lr` at 1-based step `t`.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    step_size: f32,
    bias2_sqrt: f32,
}

impl AdamStep {
    pub fn new(lr: f32, t: u64) -> AdamStep {
        let bias1 = 1.0 - (BETA1 as f64).powi(t as i32);
        let bias2 = 1.0 - (BETA2 as f64).powi(t as i32);
        AdamStep {
            step_size: (lr as f64 / bias1) as f32,
            bias2_sqrt: bias2.sqrt() as f32,
        }
    }

    /// The step on one stretch of a tensor: `param`, its gradient and its two moments, element by element.
    pub fn apply(&self, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
        #[inline(always)]
        fn body(
            p: &mut [f32],
            g: &[f32],
            m: &mut [f32],
            v: &mut [f32],
            step_size: f32,
            bias2_sqrt: f32,
        ) {
            let n = p.len();
            let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
            for i in 0..n {
                m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
                v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
                let denom = v[i].sqrt() / bias2_sqrt + EPS;
                p[i] -= step_size * m[i] / denom;
            }
        }
        let (s, b) = (self.step_size, self.bias2_sqrt);
        dispatch_wide!(body(param, grad, m, v, s, b) : body_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step_size: f32, bias2_sqrt: f32) -> ())
    }
}

/// One Adam step on `param` with gradient `grad`; `t` is the 1-based step count.
pub fn adam_step(param: &mut [f32], grad: &[f32], state: &mut Moments, lr: f32, t: u64) {
    let step = AdamStep::new(lr, t);
    const CHUNK: usize = 1 << 14;
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(
            state
                .m
                .par_chunks_mut(CHUNK)
                .zip(state.v.par_chunks_mut(CHUNK)),
        )
        .for_each(|((p, g), (m, v))| step.apply(p, g, m, v));
}

/// sparsify's default Adam learning rate: 2e-4 / √(latents / 2¹⁴).
pub fn default_lr(num_latents: usize) -> f32 {
    2e-4 / (num_latents as f32 / 16384.0).sqrt()
}

/// `transformers.get_linear_schedule_with_warmup`: the multiplier for 0-based step `step`.
pub fn lr_multiplier(step: u64, warmup: u64, total: u64) -> f32 {
    if step < warmup {
        step as f32 / warmup.max(1) as f32
    } else {
        (total.saturating_sub(step) as f32 / total.saturating_sub(warmup).max(1) as f32).max(0.0)
    }
}
