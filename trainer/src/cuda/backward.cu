// Sparse backward of one decode term whose output gradient is dy[rows × d_out]. Only the k active (row, latent)
// pairs are touched; no dense rows × latents gradient exists. CPU twins: cuda::ops::CpuTwins::{latent_grads,
// scatter_rows}.

// g_pre[r,j] = dy[r] · w_dec[idx[r,j]] where the activation is positive (ReLU passes it), else 0.
// One warp per (row, slot) pair.
extern "C" __global__ void latent_grads(const float* __restrict__ dy, const float* __restrict__ acts,
                                        const unsigned* __restrict__ idx, const float* __restrict__ w_dec,
                                        int pairs, int k, int d_out, float* __restrict__ g_pre) {
    int pair = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (pair >= pairs) return;
    int row = pair / k;
    float s = 0.0f;
    if (acts[pair] > 0.0f) {
        const float* d = dy + (size_t)row * d_out;
        const float* w = w_dec + (size_t)idx[pair] * d_out;
        for (int c = lane; c < d_out; c += 32) s += d[c] * w[c];
    }
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) g_pre[pair] = s;
}

// grad[idx[r,j]] += coef[r,j] · src[r] for every pair with coef ≠ 0; bias_grad[idx] += coef when given.
// W_dec: coef = activations, src = dy. W_enc and b_enc: coef = g_pre, src = the encoder input.
// One block per row, threads over columns; atomics, since rows share latents.
extern "C" __global__ void scatter_rows(const float* __restrict__ coef, const unsigned* __restrict__ idx,
                                        const float* __restrict__ src, int rows, int k, int d,
                                        float* __restrict__ grad, float* __restrict__ bias_grad) {
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* s = src + (size_t)row * d;
    for (int j = 0; j < k; j++) {
        float a = coef[(size_t)row * k + j];
        if (a == 0.0f) continue;
        float* g = grad + (size_t)idx[(size_t)row * k + j] * d;
        for (int c = threadIdx.x; c < d; c += blockDim.x) atomicAdd(&g[c], a * s[c]);
        if (bias_grad && threadIdx.x == 0) atomicAdd(&bias_grad[idx[(size_t)row * k + j]], a);
    }
}
