//! The operations one training step is made of, as a trait with two implementations: [`CpuTwins`] (plain
//! loops, here) and the CUDA kernels ([`super::gpu_ops::GpuOps`]). The step itself ([`super::engine`]) is written
//! once against this trait, so the same sequence of operations runs on the CPU in every test run and on the
//! GPU where there is one; each kernel is tested against its twin on fresh random inputs.
//!
//! Matrices are row-major; weights `[out × in]` as PyTorch's.

use anyhow::Result;

pub trait Ops {
    type F32;
    type U32;
    type U64;
    type F64;

    fn zeros_f32(&self, n: usize) -> Result<Self::F32>;
    fn zeros_u32(&self, n: usize) -> Result<Self::U32>;
    fn uploaded_f32(&self, host: &[f32]) -> Result<Self::F32>;
    fn zeros_u64(&self, n: usize) -> Result<Self::U64>;
    fn zeros_f64(&self, n: usize) -> Result<Self::F64>;
    fn uploaded_u32(&self, host: &[u32]) -> Result<Self::U32>;
    fn uploaded_u64(&self, host: &[u64]) -> Result<Self::U64>;
    /// Copies `host` into the start of `dst`.
    fn upload_f32(&self, host: &[f32], dst: &mut Self::F32) -> Result<()>;
    fn download_f32(&self, src: &Self::F32) -> Result<Vec<f32>>;
    fn download_u32(&self, src: &Self::U32) -> Result<Vec<u32>>;
    fn download_u64(&self, src: &Self::U64) -> Result<Vec<u64>>;
    fn download_f64(&self, src: &Self::F64) -> Result<Vec<f64>>;
    fn fill_zero(&self, buf: &mut Self::F32) -> Result<()>;

    /// `y[rows × out] (+)= x[rows × inp] · w[out × inp]ᵀ`.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        x: &Self::F32,
        rows: usize,
        inp: usize,
        w: &Self::F32,
        out: usize,
        y: &mut Self::F32,
        accumulate: bool,
    ) -> Result<()>;

    /// `g[d_out × d_in] = dy[rows × d_out]ᵀ · x[rows × d_in]`.
    fn outer_grad(
        &self,
        dy: &Self::F32,
        x: &Self::F32,
        rows: usize,
        d_out: usize,
        d_in: usize,
        g: &mut Self::F32,
    ) -> Result<()>;

    /// Per row, the `k` largest ReLU(pre + bias) under (value desc, column asc), best first.
    #[allow(clippy::too_many_arguments)]
    fn topk_relu(
        &self,
        pre: &Self::F32,
        bias: &Self::F32,
        rows: usize,
        width: usize,
        k: usize,
        acts: &mut Self::F32,
        idx: &mut Self::U32,
    ) -> Result<()>;

    /// `out[r] = (accumulate ? out[r] : 0) + bias + Σ_j acts[r,j] · w[idx[r,j]]` (zero activations skipped).
    #[allow(clippy::too_many_arguments)]
    fn sparse_decode(
        &self,
        acts: &Self::F32,
        idx: &Self::U32,
        w: &Self::F32,
        bias: Option<&Self::F32>,
        rows: usize,
        k: usize,
        d: usize,
        accumulate: bool,
        out: &mut Self::F32,
    ) -> Result<()>;

    /// `g_pre[r,j] = dy[r] · w_dec[idx[r,j]]` where `acts[r,j] > 0`, else 0.
    #[allow(clippy::too_many_arguments)]
    fn latent_grads(
        &self,
        dy: &Self::F32,
        acts: &Self::F32,
        idx: &Self::U32,
        w_dec: &Self::F32,
        rows: usize,
        k: usize,
        d_out: usize,
        g_pre: &mut Self::F32,
    ) -> Result<()>;

    /// `grad[idx[r,j]] += coef[r,j] · src[r]` and `bias_grad[idx[r,j]] += coef[r,j]`, for `coef ≠ 0`.
    #[allow(clippy::too_many_arguments)]
    fn scatter_rows(
        &self,
        coef: &Self::F32,
        idx: &Self::U32,
        src: &Self::F32,
        rows: usize,
        k: usize,
        d: usize,
        grad: &mut Self::F32,
        bias_grad: Option<&mut Self::F32>,
    ) -> Result<()>;

    /// `out[c] = Σ_r m[r, c] / divisor`, summed in f64.
    fn column_sums(
        &self,
        m: &Self::F32,
        rows: usize,
        d: usize,
        divisor: f32,
        out: &mut Self::F32,
    ) -> Result<()>;

    /// The FVU's two sums, in f64, into `sums`: `[Σ (y − mean)², Σ (y_hat − y)²]`; `diff` receives `y_hat − y`.
    #[allow(clippy::too_many_arguments)]
    fn fvu_sums(
        &self,
        y: &Self::F32,
        mean: &Self::F32,
        y_hat: &Self::F32,
        rows: usize,
        d: usize,
        diff: &mut Self::F32,
        sums: &mut Self::F64,
    ) -> Result<()>;

    /// `diff *= 2 / sums[0]`: the error becomes the FVU's gradient with respect to the prediction. The total
    /// variance stays where [`Ops::fvu_sums`] left it, so the step needs no round trip to the host.
    fn fvu_grad(&self, diff: &mut Self::F32, sums: &Self::F64) -> Result<()>;
    /// `out[r, c] = x[r, c] − b[c]`.
    fn sub_row_vector(
        &self,
        x: &Self::F32,
        b: &Self::F32,
        rows: usize,
        d: usize,
        out: &mut Self::F32,
    ) -> Result<()>;
    /// `a −= b`.
    fn sub_assign(&self, a: &mut Self::F32, b: &Self::F32) -> Result<()>;

    /// One torch Adam step with `step_size = lr / (1 − β1^t)`, `bias2_sqrt = √(1 − β2^t)`.
    fn adam(
        &self,
        p: &mut Self::F32,
        g: &Self::F32,
        m: &mut Self::F32,
        v: &mut Self::F32,
        step_size: f32,
        bias2_sqrt: f32,
    ) -> Result<()>;
    fn project_decoder_grad(
        &self,
        w: &Self::F32,
        g: &mut Self::F32,
        latents: usize,
        d: usize,
    ) -> Result<()>;
    fn normalize_rows(&self, w: &mut Self::F32, latents: usize, d: usize) -> Result<()>;

    /// Dead-latent counters after a batch of `rows` tokens: all grow by `rows`, fired latents restart at 0.
    /// `counts` receives `[positive activations, latents not fired for more than dead_after tokens]`.
    #[allow(clippy::too_many_arguments)]
    fn track_fired(
        &self,
        acts: &Self::F32,
        idx: &Self::U32,
        rows: usize,
        k: usize,
        since_fired: &mut Self::U64,
        latents: usize,
        dead_after: u64,
        counts: &mut Self::U64,
    ) -> Result<()>;
}

/// The CPU twins of the kernels: each the plainest loop computing what its kernel computes.
pub struct CpuTwins;

fn ranks_before(va: f32, ca: u32, vb: f32, cb: u32) -> bool {
    va > vb || (va == vb && ca < cb)
}

impl Ops for CpuTwins {
    type F32 = Vec<f32>;
    type U32 = Vec<u32>;
    type U64 = Vec<u64>;
    type F64 = Vec<f64>;

    fn zeros_f32(&self, n: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; n])
    }
    fn zeros_u32(&self, n: usize) -> Result<Vec<u32>> {
        Ok(vec![0; n])
    }
    fn uploaded_f32(&self, host: &[f32]) -> Result<Vec<f32>> {
        Ok(host.to_vec())
    }
    fn zeros_u64(&self, n: usize) -> Result<Vec<u64>> {
        Ok(vec![0; n])
    }
    fn zeros_f64(&self, n: usize) -> Result<Vec<f64>> {
        Ok(vec![0.0; n])
    }
    fn uploaded_u32(&self, host: &[u32]) -> Result<Vec<u32>> {
        Ok(host.to_vec())
    }
    fn uploaded_u64(&self, host: &[u64]) -> Result<Vec<u64>> {
        Ok(host.to_vec())
    }
    fn upload_f32(&self, host: &[f32], dst: &mut Vec<f32>) -> Result<()> {
        dst[..host.len()].copy_from_slice(host);
        Ok(())
    }
    fn download_f32(&self, src: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(src.clone())
    }
    fn download_u32(&self, src: &Vec<u32>) -> Result<Vec<u32>> {
        Ok(src.clone())
    }
    fn download_u64(&self, src: &Vec<u64>) -> Result<Vec<u64>> {
        Ok(src.clone())
    }
    fn download_f64(&self, src: &Vec<f64>) -> Result<Vec<f64>> {
        Ok(src.clone())
    }
    fn fill_zero(&self, buf: &mut Vec<f32>) -> Result<()> {
        buf.fill(0.0);
        Ok(())
    }

    fn linear(
        &self,
        x: &Vec<f32>,
        rows: usize,
        inp: usize,
        w: &Vec<f32>,
        out: usize,
        y: &mut Vec<f32>,
        accumulate: bool,
    ) -> Result<()> {
        compute::cpu::matmul(
            &mut y[..rows * out],
            &x[..rows * inp],
            w,
            rows,
            inp,
            out,
            (1, inp),
            false,
            accumulate,
        );
        Ok(())
    }

    fn outer_grad(
        &self,
        dy: &Vec<f32>,
        x: &Vec<f32>,
        rows: usize,
        d_out: usize,
        d_in: usize,
        g: &mut Vec<f32>,
    ) -> Result<()> {
        compute::cpu::matmul(
            g,
            &dy[..rows * d_out],
            &x[..rows * d_in],
            d_out,
            rows,
            d_in,
            (d_in, 1),
            true,
            false,
        );
        Ok(())
    }

    fn topk_relu(
        &self,
        pre: &Vec<f32>,
        bias: &Vec<f32>,
        rows: usize,
        width: usize,
        k: usize,
        acts: &mut Vec<f32>,
        idx: &mut Vec<u32>,
    ) -> Result<()> {
        for r in 0..rows {
            let mut row: Vec<(f32, u32)> = (0..width)
                .map(|c| ((pre[r * width + c] + bias[c]).max(0.0), c as u32))
                .collect();
            row.sort_by(|a, b| {
                if ranks_before(a.0, a.1, b.0, b.1) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            });
            for (j, &(v, c)) in row[..k].iter().enumerate() {
                acts[r * k + j] = v;
                idx[r * k + j] = c;
            }
        }
        Ok(())
    }

    fn sparse_decode(
        &self,
        acts: &Vec<f32>,
        idx: &Vec<u32>,
        w: &Vec<f32>,
        bias: Option<&Vec<f32>>,
        rows: usize,
        k: usize,
        d: usize,
        accumulate: bool,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        for r in 0..rows {
            for c in 0..d {
                let mut s =
                    if accumulate { out[r * d + c] } else { 0.0 } + bias.map_or(0.0, |b| b[c]);
                for j in 0..k {
                    let a = acts[r * k + j];
                    if a != 0.0 {
                        s += a * w[idx[r * k + j] as usize * d + c];
                    }
                }
                out[r * d + c] = s;
            }
        }
        Ok(())
    }

    fn latent_grads(
        &self,
        dy: &Vec<f32>,
        acts: &Vec<f32>,
        idx: &Vec<u32>,
        w_dec: &Vec<f32>,
        rows: usize,
        k: usize,
        d_out: usize,
        g_pre: &mut Vec<f32>,
    ) -> Result<()> {
        for p in 0..rows * k {
            let r = p / k;
            let l = idx[p] as usize;
            g_pre[p] = if acts[p] > 0.0 {
                (0..d_out)
                    .map(|c| dy[r * d_out + c] * w_dec[l * d_out + c])
                    .sum()
            } else {
                0.0
            };
        }
        Ok(())
    }

    fn scatter_rows(
        &self,
        coef: &Vec<f32>,
        idx: &Vec<u32>,
        src: &Vec<f32>,
        rows: usize,
        k: usize,
        d: usize,
        grad: &mut Vec<f32>,
        mut bias_grad: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        for p in 0..rows * k {
            let (r, l, a) = (p / k, idx[p] as usize, coef[p]);
            if a == 0.0 {
                continue;
            }
            for c in 0..d {
                grad[l * d + c] += a * src[r * d + c];
            }
            if let Some(b) = bias_grad.as_deref_mut() {
                b[l] += a;
            }
        }
        Ok(())
    }

    fn column_sums(
        &self,
        m: &Vec<f32>,
        rows: usize,
        d: usize,
        divisor: f32,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        for c in 0..d {
            let s: f64 = (0..rows).map(|r| m[r * d + c] as f64).sum();
            out[c] = s as f32 / divisor;
        }
        Ok(())
    }

    fn fvu_sums(
        &self,
        y: &Vec<f32>,
        mean: &Vec<f32>,
        y_hat: &Vec<f32>,
        rows: usize,
        d: usize,
        diff: &mut Vec<f32>,
        sums: &mut Vec<f64>,
    ) -> Result<()> {
        let (mut tv, mut sse) = (0f64, 0f64);
        for i in 0..rows * d {
            tv += ((y[i] - mean[i % d]) as f64).powi(2);
            diff[i] = y_hat[i] - y[i];
            sse += (diff[i] as f64).powi(2);
        }
        sums[..2].copy_from_slice(&[tv, sse]);
        Ok(())
    }

    fn fvu_grad(&self, diff: &mut Vec<f32>, sums: &Vec<f64>) -> Result<()> {
        let s = (2.0 / sums[0]) as f32;
        diff.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    fn sub_row_vector(
        &self,
        x: &Vec<f32>,
        b: &Vec<f32>,
        rows: usize,
        d: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        for i in 0..rows * d {
            out[i] = x[i] - b[i % d];
        }
        Ok(())
    }

    fn sub_assign(&self, a: &mut Vec<f32>, b: &Vec<f32>) -> Result<()> {
        a.iter_mut().zip(b).for_each(|(a, b)| *a -= b);
        Ok(())
    }

    fn adam(
        &self,
        p: &mut Vec<f32>,
        g: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        step_size: f32,
        bias2_sqrt: f32,
    ) -> Result<()> {
        use crate::adam::{BETA1, BETA2, EPS};
        for i in 0..p.len() {
            m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
            v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
            p[i] -= step_size * m[i] / (v[i].sqrt() / bias2_sqrt + EPS);
        }
        Ok(())
    }

    fn project_decoder_grad(
        &self,
        w: &Vec<f32>,
        g: &mut Vec<f32>,
        latents: usize,
        d: usize,
    ) -> Result<()> {
        for l in 0..latents {
            let (wr, gr) = (&w[l * d..(l + 1) * d], &mut g[l * d..(l + 1) * d]);
            let dot: f32 = wr.iter().zip(gr.iter()).map(|(a, b)| a * b).sum();
            gr.iter_mut().zip(wr).for_each(|(g, w)| *g -= dot * w);
        }
        Ok(())
    }

    fn normalize_rows(&self, w: &mut Vec<f32>, latents: usize, d: usize) -> Result<()> {
        for row in w[..latents * d].chunks_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt() + f32::EPSILON;
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(())
    }

    fn track_fired(
        &self,
        acts: &Vec<f32>,
        idx: &Vec<u32>,
        rows: usize,
        k: usize,
        since_fired: &mut Vec<u64>,
        latents: usize,
        dead_after: u64,
        counts: &mut Vec<u64>,
    ) -> Result<()> {
        since_fired[..latents]
            .iter_mut()
            .for_each(|f| *f += rows as u64);
        let mut live = 0;
        for p in 0..rows * k {
            if acts[p] > 0.0 {
                since_fired[idx[p] as usize] = 0;
                live += 1;
            }
        }
        let dead = since_fired.iter().filter(|&&f| f > dead_after).count() as u64;
        counts[..2].copy_from_slice(&[live, dead]);
        Ok(())
    }
}
