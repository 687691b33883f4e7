// ops.cu: element-wise ops, embedding row gather, argmax and sampling on the device.
//
// References: tern_kernels::ops (Activation::apply: silu x/(1+e^-x), gelu 0.5x(1+erf(x/√2)),
// gelu_tanh 0.5x(1+tanh(√(2/π)(x+0.044715x³))), relu², relu; glu gate = act(gate)·up; add_inplace),
// tern-model's final soft-cap cap·tanh(x/cap), tern_quants' dequantizers for the gather of
// quantized embedding rows, and tern_engine::sampler::argmax (first index of the maximum; NaN never
// wins; all −inf/NaN gives 0).

// act_apply and the ACT_* codes live in common.cuh (shared with norm.cu's fused GLU quantizer).

// gate[i] = act(gate[i]) * up[i]
extern "C" __global__ void glu(float* gate, const float* up, long long n, int act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        gate[i] = __fmul_rn(act_apply(act, gate[i]), up[i]);
}

// a[i] += b[i]
extern "C" __global__ void add_inplace(float* a, const float* b, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        a[i] = __fadd_rn(a[i], b[i]);
}

// x[i] *= s
extern "C" __global__ void scale_inplace(float* x, float s, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(x[i], s);
}

// x[i] = cap * tanh(x[i] / cap)
extern "C" __global__ void softcap(float* x, float cap, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(cap, tanhf(__fdiv_rn(x[i], cap)));
}

// ---- embedding gather --------------------------------------------------------------------------

#define ET_F32 0
#define ET_F16 1
#define ET_BF16 2
#define ET_Q8_0 3
#define ET_Q4_0 4
#define ET_Q4_1 5
#define ET_Q4_K 6
#define ET_Q6_K 7

// Element e of a row of type ty (tern_quants' dequantizers, same f32 operations).
__device__ __forceinline__ float dequant_elem(int ty, const u8* row, int e) {
    switch (ty) {
        case ET_F32: return ((const float*)row)[e];
        case ET_F16: return f16_to_f32(((const u16*)row)[e]);
        case ET_BF16: return bf16_to_f32(((const u16*)row)[e]);
        case ET_Q8_0: {
            const u8* b = row + (e / 32) * 34;
            return __fmul_rn((float)(i8)b[2 + e % 32], f16_to_f32(ld_u16(b)));
        }
        case ET_Q4_0: {
            const u8* b = row + (e / 32) * 18;
            const int j = e % 32;
            const int q = (j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4)) - 8;
            return __fmul_rn((float)q, f16_to_f32(ld_u16(b)));
        }
        case ET_Q4_1: {
            const u8* b = row + (e / 32) * 20;
            const int j = e % 32;
            const int q = j < 16 ? (b[4 + j] & 0xF) : (b[4 + j - 16] >> 4);
            return __fadd_rn(__fmul_rn((float)q, f16_to_f32(ld_u16(b))), f16_to_f32(ld_u16(b + 2)));
        }
        case ET_Q4_K: {
            const u8* b = row + (e / 256) * 144;
            const int w = e % 256, c = w / 64, l = w % 32, hi = (w % 64) / 32;
            const u8* sc = b + 4;
            const int j = 2 * c + hi;
            int s, m;
            if (j < 4) {
                s = sc[j] & 63;
                m = sc[j + 4] & 63;
            } else {
                s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4);
                m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
            }
            const u8 byte = b[16 + 32 * c + l];
            const int q = hi ? (byte >> 4) : (byte & 0xF);
            const float d1 = __fmul_rn(f16_to_f32(ld_u16(b)), (float)s);
            const float m1 = __fmul_rn(f16_to_f32(ld_u16(b + 2)), (float)m);
            return __fsub_rn(__fmul_rn(d1, (float)q), m1);
        }
        default: {  // ET_Q6_K
            const u8* b = row + (e / 256) * 210;
            const int w = e % 256, c = w / 128, r = w % 128, k = r / 32, l = r % 32;
            const u8* ql = b + 64 * c;
            const u8 qh = b[128 + 32 * c + l];
            int q;
            switch (k) {
                case 0: q = (ql[l] & 0xF) | ((qh & 3) << 4); break;
                case 1: q = (ql[l + 32] & 0xF) | (((qh >> 2) & 3) << 4); break;
                case 2: q = (ql[l] >> 4) | (((qh >> 4) & 3) << 4); break;
                default: q = (ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4); break;
            }
            const float s = (float)(i8)b[192 + 8 * c + l / 16 + 2 * k];
            return __fmul_rn(__fmul_rn(f16_to_f32(ld_u16(b + 208)), s), (float)(q - 32));
        }
    }
}

// out[t * cols + c] = table[ids[t]][c] * scale; ids outside 0..n_rows give zeros and set *bad = 1.
// grid (ceil(cols / 256), T), block 256.
extern "C" __global__ void embed_rows(const u8* table, int ty, long long row_bytes, int n_rows, int cols,
                                      const int* ids, float scale, float* out, int* bad) {
    const int t = blockIdx.y;
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const int id = ids[t];
    float v = 0.0f;
    if (id >= 0 && id < n_rows) {
        v = dequant_elem(ty, table + (size_t)id * row_bytes, c);
        if (scale != 1.0f) v = __fmul_rn(v, scale);
    } else if (c == 0 && bad) {
        *bad = 1;
    }
    out[(size_t)t * cols + c] = v;
}

// ---- argmax and sampling -----------------------------------------------------------------------

__device__ __forceinline__ void arg_better(float& bv, int& bi, float v, int i) {
    // v wins if larger, or equal with a smaller index; NaN never wins (comparisons are false).
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

// One block (1024 threads) per row: ids[t] = first index of the maximum of logits[t].
extern "C" __global__ void __launch_bounds__(1024) argmax_rows(const float* logits, int n, u32* ids) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float* x = logits + (size_t)blockIdx.x * n;
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = x[i];
        if (v > bv) {
            bv = v;
            bi = i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(FULL_MASK, bv, o);
        const int oi = __shfl_xor_sync(FULL_MASK, bi, o);
        arg_better(bv, bi, ov, oi);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        const int nw = blockDim.x >> 5;
        bv = lane < nw ? sv[lane] : -INFINITY;
        bi = lane < nw ? si[lane] : 0x7fffffff;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(FULL_MASK, bv, o);
            const int oi = __shfl_xor_sync(FULL_MASK, bi, o);
            arg_better(bv, bi, ov, oi);
        }
        if (lane == 0) ids[blockIdx.x] = bi == 0x7fffffff ? 0u : (u32)bi;
    }
}

// One block (1024 threads) per row: samples from softmax(logits / temperature) by inverse CDF with
// the uniform number u[t] in [0, 1): the first index whose running sum of exp((x − max)/T) exceeds
// u · Σ. Each thread owns a contiguous range of the row; ranges are scanned in order.
extern "C" __global__ void __launch_bounds__(1024)
    sample_rows(const float* logits, int n, float temperature, const float* u, u32* ids) {
    __shared__ float red[32];
    __shared__ float part[1024];
    const float* x = logits + (size_t)blockIdx.x * n;
    const int per = (n + blockDim.x - 1) / blockDim.x;
    const int i0 = threadIdx.x * per, i1 = min(n, i0 + per);
    float mx = -INFINITY;
    for (int i = i0; i < i1; i++) mx = fmaxf(mx, x[i]);
    mx = block_max(mx, red);
    const float inv_t = 1.0f / temperature;
    float s = 0.0f;
    for (int i = i0; i < i1; i++) s += expf((x[i] - mx) * inv_t);
    part[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int k = 0; k < (int)blockDim.x; k++) total += part[k];
        const float target = u[blockIdx.x] * total;
        float run = 0.0f;
        int k = 0;
        while (k < (int)blockDim.x - 1 && run + part[k] <= target) {
            run += part[k];
            k++;
        }
        // Walk range k.
        const int j0 = k * per, j1 = min(n, j0 + per);
        int pick = -1, last = -1;
        for (int i = j0; i < j1; i++) {
            const float p = expf((x[i] - mx) * inv_t);
            if (p > 0.0f) last = i;
            run += p;
            if (run > target) {
                pick = i;
                break;
            }
        }
        if (pick < 0) pick = last >= 0 ? last : 0;
        // Fall back to the last index with non-zero mass if rounding left the target unreached.
        ids[blockIdx.x] = (u32)pick;
    }
}

// Vectorized copy of n 16-byte words: a bandwidth probe for benchmarks (reads + writes).
extern "C" __global__ void copy_probe(const uint4* src, uint4* dst, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dst[i] = ld_stream16(src + i);
}
