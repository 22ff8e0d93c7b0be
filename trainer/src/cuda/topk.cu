// TopK of ReLU(pre + bias) per row: the k largest under the order (value desc, column asc), which is what the
// CPU's partial selection (crate::topk::topk_relu) keeps. CPU twin: cuda::ops::CpuTwins::topk_relu.
//
// One block per row. Each thread keeps a sorted list of its own k best over a strided slice of the row, then
// the block merges the lists k times by a block-wide argmax over the list heads. Output is in descending order.

#define TOPK_THREADS 256
#define TOPK_MAX_K 128

// a ranks before b: larger value, or equal value and lower column.
__device__ __forceinline__ bool ranks_before(float va, unsigned ca, float vb, unsigned cb) {
    return va > vb || (va == vb && ca < cb);
}

extern "C" __global__ void topk_relu(const float* __restrict__ pre, const float* __restrict__ bias, int rows,
                                     int width, int k, float* __restrict__ acts, unsigned* __restrict__ idx) {
    int row = blockIdx.x;
    if (row >= rows) return;
    const float* p = pre + (size_t)row * width;

    float lv[TOPK_MAX_K];
    unsigned lc[TOPK_MAX_K];
    int n = 0;  // entries in this thread's list, sorted best first
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        float v = fmaxf(p[c] + bias[c], 0.0f);
        if (n == k && !ranks_before(v, c, lv[k - 1], lc[k - 1])) continue;
        int pos = (n < k) ? n++ : k - 1;
        while (pos > 0 && ranks_before(v, c, lv[pos - 1], lc[pos - 1])) {
            lv[pos] = lv[pos - 1];
            lc[pos] = lc[pos - 1];
            pos--;
        }
        lv[pos] = v;
        lc[pos] = c;
    }

    __shared__ float warp_v[TOPK_THREADS / 32];
    __shared__ unsigned warp_c[TOPK_THREADS / 32];
    __shared__ unsigned winner;
    int head = 0;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int r = 0; r < k; r++) {
        float v = head < n ? lv[head] : __int_as_float(0xff800000);  // -inf: an exhausted list
        unsigned c = head < n ? lc[head] : 0xffffffffu;
        for (int off = 16; off > 0; off >>= 1) {
            float ov = __shfl_down_sync(0xffffffffu, v, off);
            unsigned oc = __shfl_down_sync(0xffffffffu, c, off);
            if (ranks_before(ov, oc, v, c)) { v = ov; c = oc; }
        }
        if (lane == 0) { warp_v[warp] = v; warp_c[warp] = c; }
        __syncthreads();
        if (threadIdx.x == 0) {
            float bv = warp_v[0];
            unsigned bc = warp_c[0];
            for (int w = 1; w < warps; w++)
                if (ranks_before(warp_v[w], warp_c[w], bv, bc)) { bv = warp_v[w]; bc = warp_c[w]; }
            acts[(size_t)row * k + r] = bv;
            idx[(size_t)row * k + r] = bc;
            winner = bc;
        }
        __syncthreads();
        // Columns are unique, so exactly one thread owns the winner.
        if (head < n && lc[head] == winner) head++;
        __syncthreads();
    }
}
