// The optimiser step and the SAE decoder constraint. CPU twins: cuda::ops::CpuTwins::{adam,
// project_decoder_grad, normalize_rows} (as crate::adam::adam_step and the SparseCoder's decoder methods).

#define BETA1 0.9f
#define BETA2 0.999f
#define ADAM_EPS 1e-8f

// torch.optim.Adam, fused: step_size = lr / (1 − β1^t), bias2_sqrt = √(1 − β2^t).
extern "C" __global__ void adam(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                float* __restrict__ v, long long n, float step_size, float bias2_sqrt) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float gi = g[i];
        float mi = BETA1 * m[i] + (1.0f - BETA1) * gi;
        float vi = BETA2 * v[i] + (1.0f - BETA2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bias2_sqrt + ADAM_EPS;
        p[i] -= step_size * mi / denom;
    }
}

__device__ float block_sum(float s) {
    __shared__ float part[32];
    __shared__ float total;
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.0f;
        for (int w = 0; w < (blockDim.x + 31) / 32; w++) t += part[w];
        total = t;
    }
    __syncthreads();
    float t = total;
    __syncthreads();
    return t;
}

// Removes from each decoder row's gradient its component along the (unit-norm) row. One block per row.
extern "C" __global__ void project_decoder_grad(const float* __restrict__ w, float* __restrict__ g, int latents,
                                                int d) {
    int row = blockIdx.x;
    if (row >= latents) return;
    const float* wr = w + (size_t)row * d;
    float* gr = g + (size_t)row * d;
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) s += wr[c] * gr[c];
    float dot = block_sum(s);
    for (int c = threadIdx.x; c < d; c += blockDim.x) gr[c] -= dot * wr[c];
}

// Each row to unit norm (‖row‖ + FLT_EPSILON, as the CPU and sparsify). One block per row.
extern "C" __global__ void normalize_rows(float* __restrict__ w, int latents, int d) {
    int row = blockIdx.x;
    if (row >= latents) return;
    float* wr = w + (size_t)row * d;
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) s += wr[c] * wr[c];
    float norm = sqrtf(block_sum(s)) + 1.1920929e-7f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) wr[c] /= norm;
}
