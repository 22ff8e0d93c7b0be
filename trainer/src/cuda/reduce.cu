// Small dense helpers: column sums, the FVU's sums of squares, element-wise updates, dead-latent counters.
// CPU twins: cuda::ops::CpuTwins::{column_sums, fvu_sums, fvu_grad, sub_row_vector, sub_assign, track_fired}.

// Column sums in two deterministic passes. Pass one: block (x, y) sums rows [y·COL_CHUNK, (y+1)·COL_CHUNK) of
// 32 columns starting at 32·x; 8 threads share a column, then add their parts in shared memory.
#define COL_CHUNK 256

extern "C" __global__ void column_partial_sums(const float* __restrict__ m, int rows, int d,
                                               double* __restrict__ partial) {
    __shared__ double part[8][32];
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * COL_CHUNK, r1 = min(rows, r0 + COL_CHUNK);
    double s = 0.0;
    if (c < d)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) s += m[(size_t)r * d + c];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < d) {
        for (int t = 1; t < 8; t++) s += part[t][threadIdx.x];
        partial[(size_t)blockIdx.y * d + c] = s;
    }
}

// Pass two: out[c] = (Σ_chunk partial[chunk, c]) / divisor, chunks in order.
extern "C" __global__ void column_sums_finish(const double* __restrict__ partial, int chunks, int d, float divisor,
                                              float* __restrict__ out) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    double s = 0.0;
    for (int i = 0; i < chunks; i++) s += partial[(size_t)i * d + c];
    out[c] = (float)s / divisor;
}

// The FVU's sums, in double: sums[0] += Σ (y − mean[c])², sums[1] += Σ (y_hat − y)²; diff = y_hat − y.
// sums must be zero before the launch. Grid-stride; a warp reduction, then one atomic per warp and sum.
extern "C" __global__ void fvu_sums(const float* __restrict__ y, const float* __restrict__ mean,
                                    const float* __restrict__ y_hat, long long n, int d, float* __restrict__ diff,
                                    double* __restrict__ sums) {
    double tv = 0.0, sse = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double c = (double)(y[i] - mean[i % d]);
        float e = y_hat[i] - y[i];
        diff[i] = e;
        tv += c * c;
        sse += (double)e * (double)e;
    }
    for (int off = 16; off > 0; off >>= 1) {
        tv += __shfl_down_sync(0xffffffffu, tv, off);
        sse += __shfl_down_sync(0xffffffffu, sse, off);
    }
    if ((threadIdx.x & 31) == 0) {
        atomicAdd(&sums[0], tv);
        atomicAdd(&sums[1], sse);
    }
}

// diff *= 2 / sums[0]: the error becomes dFVU/dy_hat, with the total variance read where fvu_sums left it.
extern "C" __global__ void fvu_grad(float* __restrict__ diff, long long n, const double* __restrict__ sums) {
    float s = (float)(2.0 / sums[0]);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        diff[i] *= s;
}

// out[r, c] = x[r, c] − b[c] (the SAE's encoder input).
extern "C" __global__ void sub_row_vector(const float* __restrict__ x, const float* __restrict__ b, int rows,
                                          int d, float* __restrict__ out) {
    long long n = (long long)rows * d;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        out[i] = x[i] - b[i % d];
}

// a −= b.
extern "C" __global__ void sub_assign(float* __restrict__ a, const float* __restrict__ b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] -= b[i];
}

// Dead-latent bookkeeping for one batch of `rows` tokens: every counter grows by rows, then the latents that
// fired (positive activation) restart at 0. Launch `age` before `reset_fired`.
extern "C" __global__ void age(unsigned long long* __restrict__ since_fired, int latents, int rows) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < latents) since_fired[i] += rows;
}

extern "C" __global__ void reset_fired(const float* __restrict__ acts, const unsigned* __restrict__ idx, int n,
                                       unsigned long long* __restrict__ since_fired) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && acts[i] > 0.0f) since_fired[idx[i]] = 0;
}

// counts[0] += activations > 0 (for L0); counts[1] += latents not fired for more than `dead_after` tokens.
// Launch over max(n, latents) threads; each warp counts with a ballot and adds once.
extern "C" __global__ void count_stats(const float* __restrict__ acts, int n,
                                       const unsigned long long* __restrict__ since_fired, int latents,
                                       unsigned long long dead_after, unsigned long long* __restrict__ counts) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned live = __popc(__ballot_sync(0xffffffffu, i < n && acts[i] > 0.0f));
    unsigned dead = __popc(__ballot_sync(0xffffffffu, i < latents && since_fired[i] > dead_after));
    if ((threadIdx.x & 31) == 0) {
        if (live) atomicAdd(&counts[0], (unsigned long long)live);
        if (dead) atomicAdd(&counts[1], (unsigned long long)dead);
    }
}
