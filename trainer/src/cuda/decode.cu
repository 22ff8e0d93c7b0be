// Sparse decode: out[r] = (accumulate ? out[r] : 0) + (bias or 0) + Σ_j acts[r,j] · w[idx[r,j]], skipping zero
// activations. Used for the decoder (w = W_dec, bias = b_dec) and, with w = W_enc and acts = the gradient
// reaching each latent, for the SAE's gradient through x − b_dec. CPU twin: cuda::ops::CpuTwins::sparse_decode.
//
// One block per row; threads over the output columns; the row's k (activation, index) pairs in shared memory.

#define DECODE_MAX_K 512

extern "C" __global__ void sparse_decode(const float* __restrict__ acts, const unsigned* __restrict__ idx,
                                         const float* __restrict__ w, const float* __restrict__ bias, int rows,
                                         int k, int d, int accumulate, float* __restrict__ out) {
    int row = blockIdx.x;
    if (row >= rows) return;
    __shared__ float a[DECODE_MAX_K];
    __shared__ unsigned ix[DECODE_MAX_K];
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        a[j] = acts[(size_t)row * k + j];
        ix[j] = idx[(size_t)row * k + j];
    }
    __syncthreads();
    float* o = out + (size_t)row * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float s = (accumulate ? o[c] : 0.0f) + (bias ? bias[c] : 0.0f);
        for (int j = 0; j < k; j++)
            if (a[j] != 0.0f) s += a[j] * w[(size_t)ix[j] * d + c];
        o[c] = s;
    }
}
