//! The dense f32 operations of a transformer forward pass on the CPU. Matrices are row-major; weights are
//! `[out, in]` as in PyTorch's `nn.Linear`, so a linear layer is `y = x · Wᵀ`.

use rayon::prelude::*;

/// `y[rows × out] = x[rows × inp] · w[out × inp]ᵀ`, multi-threaded.
pub fn linear(x: &[f32], rows: usize, inp: usize, w: &[f32], out: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * inp);
    assert_eq!(w.len(), out * inp);
    let mut y = vec![0f32; rows * out];
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && rows * out * inp > 1 << 18 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every pointer/stride pair describes a buffer of the asserted size.
    unsafe {
        gemm::gemm(
            rows,
            out,
            inp,
            y.as_mut_ptr(),
            1,
            out as isize,
            false,
            x.as_ptr(),
            1,
            inp as isize,
            w.as_ptr(),
            inp as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    y
}

/// `x += y`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096)
        .zip(y.par_chunks(4096))
        .for_each(|(a, b)| {
            for (a, b) in a.iter_mut().zip(b) {
                *a += b;
            }
        });
}

/// RMSNorm over rows of width `d`: `x / sqrt(mean(x²) + eps) · weight`.
pub fn rms_norm(x: &[f32], d: usize, weight: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(out, row)| {
            let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let scale = 1.0 / (mean_sq + eps).sqrt();
            for ((o, v), w) in out.iter_mut().zip(row).zip(weight) {
                *o = w * (v * scale);
            }
        });
    y
}

/// Cos/sin tables `[positions × head_dim/2]` for rotary embeddings with frequency `base^(-2i/head_dim)`.
pub struct Rope {
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Rope {
    pub fn new(head_dim: usize, base: f64, max_pos: usize) -> Rope {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for i in 0..half {
                let inv_freq = (1.0 / base.powf(2.0 * i as f64 / head_dim as f64)) as f32;
                let angle = p as f32 * inv_freq;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Rope { half, cos, sin }
    }

    /// Rotates each head of `x[rows × heads·head_dim]` in place, "rotate-half" style (pairs `i`, `i + half`).
    /// Row `r` is at position `r % seq_len`.
    pub fn apply(&self, x: &mut [f32], heads: usize, seq_len: usize) {
        let hd = 2 * self.half;
        x.par_chunks_mut(heads * hd)
            .enumerate()
            .for_each(|(r, row)| {
                let p = r % seq_len;
                let (cos, sin) = (
                    &self.cos[p * self.half..][..self.half],
                    &self.sin[p * self.half..][..self.half],
                );
                for head in row.chunks_mut(hd) {
                    let (a, b) = head.split_at_mut(self.half);
                    for i in 0..self.half {
                        let (x1, x2) = (a[i], b[i]);
                        a[i] = x1 * cos[i] - x2 * sin[i];
                        b[i] = x2 * cos[i] + x1 * sin[i];
                    }
                }
            });
    }
}

/// Causal grouped-query attention. `q[rows × heads·hd]`, `k`, `v[rows × kv_heads·hd]`; rows are `n_seqs`
/// sequences of `seq_len` tokens. Returns `[rows × heads·hd]`.
///
/// One task per (sequence, head, block of `QB` queries): such a block attends only to keys up to its last
/// query, so the masked upper triangle is never computed.
pub fn causal_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    seq_len: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
) -> Vec<f32> {
    const QB: usize = 64;
    let rows = q.len() / (heads * hd);
    let n_seqs = rows / seq_len;
    let group = heads / kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let (qw, kw) = (heads * hd, kv_heads * hd);
    let blocks = seq_len.div_ceil(QB);
    let mut out = vec![0f32; rows * qw];
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..n_seqs * heads * blocks)
        .into_par_iter()
        .for_each(|task| {
            let (s, h, b) = (
                task / (heads * blocks),
                (task / blocks) % heads,
                task % blocks,
            );
            let kvh = h / group;
            let q0 = s * seq_len + b * QB; // first query row
            let nq = QB.min(seq_len - b * QB);
            let nk = b * QB + nq; // keys 0..nk of this sequence
            let k0 = s * seq_len;
            let mut scores = vec![0f32; nq * nk];
            // SAFETY: strided views inside q, k, v; each task writes its own rows × head columns of `out`.
            unsafe {
                gemm::gemm(
                    nq,
                    nk,
                    hd,
                    scores.as_mut_ptr(),
                    1,
                    nk as isize,
                    false,
                    q.as_ptr().add(q0 * qw + h * hd),
                    1,
                    qw as isize,
                    k.as_ptr().add(k0 * kw + kvh * hd),
                    kw as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for i in 0..nq {
                let visible = b * QB + i + 1;
                let row = &mut scores[i * nk..(i + 1) * nk];
                let max = row[..visible]
                    .iter()
                    .cloned()
                    .fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for x in row[..visible].iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                let inv = 1.0 / sum;
                for x in row[..visible].iter_mut() {
                    *x *= inv;
                }
                row[visible..].fill(0.0);
            }
            unsafe {
                gemm::gemm(
                    nq,
                    hd,
                    nk,
                    out_ptr.get().add(q0 * qw + h * hd),
                    1,
                    qw as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    nk as isize,
                    v.as_ptr().add(k0 * kw + kvh * hd),
                    1,
                    kw as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    out
}

/// A raw pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Mean next-token cross-entropy of `logits[rows × vocab]` for sequences of `seq_len` (last token has no target).
pub fn next_token_loss(logits: &[f32], vocab: usize, tokens: &[u32], seq_len: usize) -> f64 {
    let mut total = 0f64;
    let mut count = 0usize;
    for (r, row) in logits.chunks(vocab).enumerate() {
        if (r + 1) % seq_len == 0 {
            continue;
        }
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        total += lse - row[tokens[r + 1] as usize] as f64;
        count += 1;
    }
    total / count as f64
}
