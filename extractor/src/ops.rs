//! The dense f32 operations of a transformer forward pass on the CPU. Matrices are row-major; weights are
//! `[out, in]` as in PyTorch's `nn.Linear`, so a linear layer is `y = x · Wᵀ`.

use compute::cpu::features::avx2_fma;
pub use compute::cpu::linear;
use compute::cpu::SendPtr;
use rayon::prelude::*;

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

/// `y[r] += bias` for every row `r` of width `bias.len()`.
pub fn add_bias(y: &mut [f32], bias: &[f32]) {
    y.par_chunks_mut(bias.len()).for_each(|row| {
        for (a, b) in row.iter_mut().zip(bias) {
            *a += b;
        }
    });
}

/// LayerNorm over rows of width `d`: `(x − mean) / sqrt(var + eps) · weight + bias` (biased variance).
pub fn layer_norm(x: &[f32], d: usize, weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(out, row)| {
            let mean = row.iter().sum::<f32>() / d as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let scale = 1.0 / (var + eps).sqrt();
            for (((o, v), w), b) in out.iter_mut().zip(row).zip(weight).zip(bias) {
                *o = (v - mean) * scale * w + b;
            }
        });
    y
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

/// Rotary frequencies `base^(-2i/rotary_dims)` for `i < rotary_dims/2`, and how to rescale them.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeSpec {
    pub rotary_dims: usize,
    pub base: f64,
    pub scaling: RopeScaling,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Llama 3.1's: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: f64,
    },
}

impl RopeSpec {
    pub fn inv_freq(&self) -> Vec<f32> {
        let rd = self.rotary_dims;
        (0..rd / 2)
            .map(|i| {
                let f = 1.0 / self.base.powf(2.0 * i as f64 / rd as f64);
                match self.scaling {
                    RopeScaling::None => f as f32,
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_positions,
                    } => {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let (low_wavelen, high_wavelen) = (
                            original_max_positions / low_freq_factor,
                            original_max_positions / high_freq_factor,
                        );
                        let scaled = if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (original_max_positions / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        };
                        scaled as f32
                    }
                }
            })
            .collect()
    }
}

/// Cos/sin tables `[positions × rotary_dims/2]` for rotary embeddings.
pub struct Rope {
    pub half: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Rope {
    pub fn new(spec: &RopeSpec, max_pos: usize) -> Rope {
        let inv_freq = spec.inv_freq();
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Rope { half, cos, sin }
    }

    /// Rotates the first `rotary_dims` of each head of `x[rows × heads·head_dim]` in place, "rotate-half"
    /// style (pairs `i`, `i + rotary_dims/2`); the rest of each head passes unchanged (partial rotary).
    /// Row `r` is at position `r % seq_len`.
    pub fn apply(&self, x: &mut [f32], heads: usize, head_dim: usize, seq_len: usize) {
        self.rotate(x, heads, head_dim, |r| r % seq_len);
    }

    /// As [`Rope::apply`] for one sequence whose rows start at position `first` (decoding after a KV cache).
    pub fn apply_from(&self, x: &mut [f32], heads: usize, head_dim: usize, first: usize) {
        self.rotate(x, heads, head_dim, |r| first + r);
    }

    fn rotate(
        &self,
        x: &mut [f32],
        heads: usize,
        hd: usize,
        position: impl Fn(usize) -> usize + Sync,
    ) {
        x.par_chunks_mut(heads * hd)
            .enumerate()
            .for_each(|(r, row)| {
                let p = position(r);
                let (cos, sin) = (
                    &self.cos[p * self.half..][..self.half],
                    &self.sin[p * self.half..][..self.half],
                );
                for head in row.chunks_mut(hd) {
                    let (a, b) = head[..2 * self.half].split_at_mut(self.half);
                    for i in 0..self.half {
                        let (x1, x2) = (a[i], b[i]);
                        a[i] = x1 * cos[i] - x2 * sin[i];
                        b[i] = x2 * cos[i] + x1 * sin[i];
                    }
                }
            });
    }
}

/// The shape and variations of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttentionSpec {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies q·k (usually `head_dim^-1/2`).
    pub scale: f32,
    /// Gemma 2: scores become `cap · tanh(scores / cap)` before the softmax.
    pub softcap: Option<f32>,
    /// Sliding window: query `i` sees keys `j` with `i − window < j ≤ i`.
    pub window: Option<usize>,
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
    spec: &AttentionSpec,
) -> Vec<f32> {
    const QB: usize = 64;
    let (heads, kv_heads, hd, scale) = (spec.heads, spec.kv_heads, spec.head_dim, spec.scale);
    let rows = q.len() / (heads * hd);
    let n_seqs = rows / seq_len;
    let group = heads / kv_heads;
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
                let q = q.as_ptr().add(q0 * qw + h * hd);
                head_scores(
                    nq,
                    nk,
                    hd,
                    q,
                    qw,
                    k.as_ptr().add(k0 * kw + kvh * hd),
                    kw,
                    scale,
                    &mut scores,
                );
            }
            for i in 0..nq {
                masked_softmax(&mut scores[i * nk..(i + 1) * nk], b * QB + i + 1, spec);
            }
            unsafe {
                let out = out_ptr.get().add(q0 * qw + h * hd);
                head_mix(
                    nq,
                    nk,
                    hd,
                    &scores,
                    v.as_ptr().add(k0 * kw + kvh * hd),
                    kw,
                    out,
                    qw,
                );
            }
        });
    out
}

/// One query's scores → attention weights: keys `visible..` are in its future and keys before the sliding
/// window are out of sight (both get weight 0); the rest are soft-capped (Gemma 2) and softmaxed.
fn masked_softmax(row: &mut [f32], visible: usize, spec: &AttentionSpec) {
    let first = spec.window.map_or(0, |w| visible.saturating_sub(w));
    if let Some(cap) = spec.softcap {
        for x in row[first..visible].iter_mut() {
            *x = softcap(*x, cap);
        }
    }
    let max = row[first..visible]
        .iter()
        .cloned()
        .fold(f32::NEG_INFINITY, f32::max);
    let inv = 1.0 / exp_shifted(&mut row[first..visible], max);
    for x in row[first..visible].iter_mut() {
        *x *= inv;
    }
    row[..first].fill(0.0);
    row[visible..].fill(0.0);
}

/// Attention of `nq` new queries of one sequence, at positions `past..past + nq`, over all its keys so far:
/// `keys`, `values` `[(past + nq) × kv_heads·hd]` (the KV cache with the new rows appended). The same masking
/// as [`causal_attention`]; used for decoding token by token. Returns `[nq × heads·hd]`.
pub fn cached_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    past: usize,
    spec: &AttentionSpec,
) -> Vec<f32> {
    let (heads, kv_heads, hd) = (spec.heads, spec.kv_heads, spec.head_dim);
    let (qw, kw) = (heads * hd, kv_heads * hd);
    let nq = q.len() / qw;
    let nk = past + nq;
    assert_eq!(
        keys.len(),
        nk * kw,
        "the cache must hold every key up to the last query"
    );
    let group = heads / kv_heads;
    let mut out = vec![0f32; nq * qw];
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..heads).into_par_iter().for_each(|h| {
        let kvh = h / group;
        let mut scores = vec![0f32; nq * nk];
        // SAFETY: strided views inside q, keys and values (bounds asserted above); each task writes its own head
        // columns of `out`.
        unsafe {
            let (qh, kh) = (q.as_ptr().add(h * hd), keys.as_ptr().add(kvh * hd));
            head_scores(nq, nk, hd, qh, qw, kh, kw, spec.scale, &mut scores);
        }
        for i in 0..nq {
            masked_softmax(&mut scores[i * nk..(i + 1) * nk], past + i + 1, spec);
        }
        unsafe {
            let vh = values.as_ptr().add(kvh * hd);
            head_mix(nq, nk, hd, &scores, vh, kw, out_ptr.get().add(h * hd), qw);
        }
    });
    out
}

/// One head's `scores[nq × nk] = scale · Q Kᵀ`, where row i of Q starts at `q + i·q_stride` and row j of K at
/// `k + j·k_stride` (each `hd` long).
///
/// # Safety
/// Every row read must lie inside its buffer.
#[allow(clippy::too_many_arguments)]
unsafe fn head_scores(
    nq: usize,
    nk: usize,
    hd: usize,
    q: *const f32,
    q_stride: usize,
    k: *const f32,
    k_stride: usize,
    scale: f32,
    scores: &mut [f32],
) {
    assert!(scores.len() >= nq * nk);
    gemm::gemm(
        nq,
        nk,
        hd,
        scores.as_mut_ptr(),
        1,
        nk as isize,
        false,
        q,
        1,
        q_stride as isize,
        k,
        k_stride as isize,
        1,
        0.0,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// One head's output `out[nq × hd] = weights[nq × nk] · V`, row j of V at `v + j·v_stride`, row i of the
/// output at `out + i·out_stride`.
///
/// # Safety
/// Every row read or written must lie inside its buffer, and no other thread may write those outputs.
#[allow(clippy::too_many_arguments)]
unsafe fn head_mix(
    nq: usize,
    nk: usize,
    hd: usize,
    weights: &[f32],
    v: *const f32,
    v_stride: usize,
    out: *mut f32,
    out_stride: usize,
) {
    assert!(weights.len() >= nq * nk);
    gemm::gemm(
        nq,
        hd,
        nk,
        out,
        1,
        out_stride as isize,
        false,
        weights.as_ptr(),
        1,
        nk as isize,
        v,
        1,
        v_stride as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `xs[i] = e^(xs[i] − shift)`, returning their sum: a softmax's numerators. Eight at a time through
/// [`exp_avx2`] with AVX2 and FMA (values under e^−87.3 come out as e^−87.3, nothing next to the 1 of the row's
/// maximum), else the scalar `exp`.
pub fn exp_shifted(xs: &mut [f32], shift: f32) -> f32 {
    let mut whole = 0;
    let mut sum = 0.0;
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        whole = xs.len() / 8 * 8;
        // SAFETY: the CPU runs AVX2 and FMA.
        sum = unsafe { exp_shifted_avx2(&mut xs[..whole], shift) };
    }
    for x in xs[whole..].iter_mut() {
        *x = (*x - shift).exp();
        sum += *x;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shifted_avx2(xs: &mut [f32], shift: f32) -> f32 {
    use std::arch::x86_64::*;
    let (shift, mut sums) = (_mm256_set1_ps(shift), _mm256_setzero_ps());
    for x in xs.chunks_exact_mut(8) {
        let e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr()), shift));
        _mm256_storeu_ps(x.as_mut_ptr(), e);
        sums = _mm256_add_ps(sums, e);
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
    lanes.iter().sum()
}

/// SwiGLU's elementwise step, `gate[i] = silu(gate[i]) · up[i]`, in parallel. With AVX2 and FMA, eight at a time
/// through [`exp_avx2`] (the scalar `exp` call was a tenth of the forward pass); else the scalar [`silu`].
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len());
    let vector = avx2_fma();
    gate.par_chunks_mut(4096)
        .zip(up.par_chunks(4096))
        .for_each(|(g, u)| {
            let whole = if vector { g.len() / 8 * 8 } else { 0 };
            #[cfg(target_arch = "x86_64")]
            if vector {
                // SAFETY: the CPU runs AVX2 and FMA; `whole` ≤ both lengths.
                unsafe { silu_mul_avx2(&mut g[..whole], &u[..whole]) };
            }
            for (g, u) in g[whole..].iter_mut().zip(&u[whole..]) {
                *g = silu(*g) * u;
            }
        });
}

/// `g = silu(g) · u` over whole vectors of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(g: &mut [f32], u: &[f32]) {
    use std::arch::x86_64::*;
    let (one, low, zero) = (
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(-88.0),
        _mm256_setzero_ps(),
    );
    for (g, u) in g.chunks_exact_mut(8).zip(u.chunks_exact(8)) {
        let x = _mm256_loadu_ps(g.as_ptr());
        let e = exp_avx2(_mm256_sub_ps(zero, x));
        // Below −88, e^−x was clamped: the true value is under 6e−37 in size, so x·0 there, which is 0 (as the
        // scalar gives once e^−x overflows) and NaN for −∞ (as there).
        let below = _mm256_cmp_ps::<_CMP_LT_OQ>(x, low);
        let s = _mm256_blendv_ps(
            _mm256_div_ps(x, _mm256_add_ps(one, e)),
            _mm256_mul_ps(x, zero),
            below,
        );
        _mm256_storeu_ps(
            g.as_mut_ptr(),
            _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr())),
        );
    }
}

/// e^x for 8 lanes, within 2 ulp of the true value for x in [−87.3, 88]; arguments are clamped to that range
/// (so e^x never overflows: silu's x / (1 + e^−x) still tends to 0 and x at the two ends) and NaN stays NaN.
/// The usual method: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r from a degree-6 polynomial (Cephes' `expf`
/// coefficients), 2^n put into the exponent bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // Operands in this order so that a NaN passes through both.
    let x = _mm256_min_ps(
        _mm256_set1_ps(88.0),
        _mm256_max_ps(_mm256_set1_ps(-87.3), x),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // ln 2 in two parts, so n·ln2_hi is exact and r keeps its low bits.
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let r2 = _mm256_mul_ps(r, r);
    let p = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
    let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_mul_ps(p, two_n)
}

/// GELU with the exact error function (PyTorch's default, GPT-NeoX's `gelu`).
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation (`gelu_pytorch_tanh`, Gemma's).
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
}

/// `y = act(y)` elementwise, in parallel.
pub fn map_in_place(y: &mut [f32], act: fn(f32) -> f32) {
    y.par_chunks_mut(4096).for_each(|c| {
        for v in c {
            *v = act(*v);
        }
    });
}

/// Gemma 2's final logits: `cap · tanh(logits / cap)`.
pub fn softcap(x: f32, cap: f32) -> f32 {
    (x / cap).tanh() * cap
}

/// Per position: log-softmax of a row of logits, in place (the log-sum-exp in f64).
pub fn log_softmax(logits: &mut [f32], vocab: usize) {
    for row in logits.chunks_mut(vocab) {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = row
            .iter()
            .map(|&v| ((v - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32
            + max;
        row.iter_mut().for_each(|v| *v -= lse);
    }
}

/// (summed next-token cross-entropy, positions counted) of log-probabilities `lp[rows × vocab]` for
/// sequences of `seq_len` tokens (a sequence's last position has no target).
pub fn ce_sum(lp: &[f32], vocab: usize, tokens: &[u32], seq_len: usize) -> (f64, u64) {
    let mut total = (0.0, 0);
    for (r, row) in lp.chunks(vocab).enumerate() {
        if (r + 1) % seq_len != 0 {
            total.0 -= row[tokens[r + 1] as usize] as f64;
            total.1 += 1;
        }
    }
    total
}

/// Mean next-token cross-entropy of `logits[rows × vocab]` for sequences of `seq_len`.
pub fn next_token_loss(logits: &[f32], vocab: usize, tokens: &[u32], seq_len: usize) -> f64 {
    let mut lp = logits.to_vec();
    log_softmax(&mut lp, vocab);
    let (sum, count) = ce_sum(&lp, vocab, tokens, seq_len);
    sum / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Softmax numerators against exp in f64, from 0 down to far below e^−87 (where the clamp gives a number
    /// 1e−38 from the true one), with a scalar tail.
    #[test]
    fn exp_shifted_matches_f64() {
        let xs: Vec<f32> = (0..2003).map(|i| 5.0 - i as f32 * 0.05).collect();
        let mut got = xs.clone();
        let sum = exp_shifted(&mut got, 5.0);
        let mut want_sum = 0.0;
        for (&x, &g) in xs.iter().zip(&got) {
            let want = (x as f64 - 5.0).exp();
            want_sum += want;
            assert!(
                (g as f64 - want).abs() <= 3.0 * f32::EPSILON as f64 * want + 2e-38,
                "e^({x} − 5): got {g}, want {want}"
            );
        }
        assert!((sum as f64 - want_sum).abs() <= 1e-6 * want_sum);
        // A NaN score spoils its softmax row, as with the scalar exp, in the vector part and in the tail.
        for (len, at) in [(13, 2), (13, 12), (5, 1)] {
            let mut row: Vec<f32> = (0..len).map(|i| i as f32).collect();
            row[at] = f32::NAN;
            assert!(exp_shifted(&mut row, 3.0).is_nan());
        }
    }

    /// The vectorised SwiGLU step against silu in f64, over the range activations take and beyond, with the
    /// clamped ends and a length that leaves a scalar tail.
    #[test]
    fn silu_mul_matches_f64() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.01).collect();
        xs.extend([
            -200.0, -100.0, -88.5, -87.0, -30.0, 1e-30, -1e-30, 0.0, 30.0, 88.5, 100.0, 1e38, -1e38,
        ]);
        let up: Vec<f32> = (0..xs.len()).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
        let mut got = xs.clone();
        silu_mul(&mut got, &up);
        for ((&x, &u), &g) in xs.iter().zip(&up).zip(&got) {
            let x64 = x as f64;
            let want = x64 / (1.0 + (-x64).exp()) * u as f64;
            let err = (g as f64 - want).abs();
            assert!(
                err <= 4.0 * f32::EPSILON as f64 * want.abs() + 1e-36,
                "silu({x}) · {u}: got {g}, want {want}"
            );
        }
        // Non-finite inputs as the scalar silu treats them, in the vector part and in the tail.
        for len in [8, 3] {
            let mut g = vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
            g.resize(len, 1.0);
            silu_mul(&mut g, &vec![2.0; len]);
            assert!(
                g[0] == f32::INFINITY && g[1].is_nan() && g[2].is_nan(),
                "{g:?}"
            );
        }
    }
}
