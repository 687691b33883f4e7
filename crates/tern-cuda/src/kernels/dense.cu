// dense.cu: dense f32 / f16 / bf16 weights (row-major rows x cols, as nn.Linear.weight) times f32
// activations for decode (up to 8 tokens), f32 accumulation like tern_kernels::dense::matmul
// (the summation order differs); plus the conversions and bias add used around cuBLAS GEMMs.

#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2

template <int DT>
__device__ __forceinline__ float ld_w(const u8* w, size_t i) {
    if (DT == DT_F32) return ((const float*)w)[i];
    if (DT == DT_F16) return f16_to_f32(((const u16*)w)[i]);
    return bf16_to_f32(((const u16*)w)[i]);
}

// Eight consecutive weights from a 16-byte (f16/bf16) or 32-byte (f32) aligned address.
template <int DT>
__device__ __forceinline__ void ld_w8(const u8* p, float* o) {
    if (DT == DT_F32) {
        const uint4 a = ld_stream16(p), b = ld_stream16(p + 16);
        o[0] = __uint_as_float(a.x); o[1] = __uint_as_float(a.y); o[2] = __uint_as_float(a.z); o[3] = __uint_as_float(a.w);
        o[4] = __uint_as_float(b.x); o[5] = __uint_as_float(b.y); o[6] = __uint_as_float(b.z); o[7] = __uint_as_float(b.w);
    } else {
        const uint4 a = ld_stream16(p);
        const u32 v[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (DT == DT_F16) {
                o[2 * k] = f16_to_f32((u16)(v[k] & 0xffff));
                o[2 * k + 1] = f16_to_f32((u16)(v[k] >> 16));
            } else {
                o[2 * k] = __uint_as_float(v[k] << 16);
                o[2 * k + 1] = __uint_as_float(v[k] & 0xffff0000u);
            }
        }
    }
}

// One warp per row. VEC: cols % 8 == 0 (every row start is then 16-byte aligned), lanes take 8
// consecutive weights per step, two steps in flight.
template <int T, int DT, bool VEC>
__device__ __forceinline__ void dense_gemv_impl(const u8* __restrict__ w, int rows, int cols,
                                                const float* __restrict__ x, const float* __restrict__ bias,
                                                float* out, int accumulate) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int esz = DT == DT_F32 ? 4 : 2;
    const u8* wr = w + (size_t)row * cols * esz;
    float sum[T];
#pragma unroll
    for (int t = 0; t < T; t++) sum[t] = 0.0f;
    if (VEC) {
        for (int c0 = lane * 8; c0 < cols; c0 += 512) {
            float wa[8], wb[8];
            const int c1 = c0 + 256;
            ld_w8<DT>(wr + (size_t)c0 * esz, wa);
            if (c1 < cols) ld_w8<DT>(wr + (size_t)c1 * esz, wb);
#pragma unroll
            for (int t = 0; t < T; t++) {
                const float4* xp = (const float4*)(x + (size_t)t * cols + c0);
                const float4 a = __ldg(xp), b = __ldg(xp + 1);
                float s = sum[t];
                s = fmaf(wa[0], a.x, s); s = fmaf(wa[1], a.y, s); s = fmaf(wa[2], a.z, s); s = fmaf(wa[3], a.w, s);
                s = fmaf(wa[4], b.x, s); s = fmaf(wa[5], b.y, s); s = fmaf(wa[6], b.z, s); s = fmaf(wa[7], b.w, s);
                if (c1 < cols) {
                    const float4* yp = (const float4*)(x + (size_t)t * cols + c1);
                    const float4 e = __ldg(yp), f = __ldg(yp + 1);
                    s = fmaf(wb[0], e.x, s); s = fmaf(wb[1], e.y, s); s = fmaf(wb[2], e.z, s); s = fmaf(wb[3], e.w, s);
                    s = fmaf(wb[4], f.x, s); s = fmaf(wb[5], f.y, s); s = fmaf(wb[6], f.z, s); s = fmaf(wb[7], f.w, s);
                }
                sum[t] = s;
            }
        }
    } else {
        for (int c = lane; c < cols; c += 32) {
            const float wv = ld_w<DT>(wr, c);
#pragma unroll
            for (int t = 0; t < T; t++) sum[t] = fmaf(wv, x[(size_t)t * cols + c], sum[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float s = warp_sum(sum[t]);
        if (lane == t) {
            if (bias) s = __fadd_rn(s, bias[row]);
            float* o = out + (size_t)t * rows + row;
            *o = accumulate ? __fadd_rn(*o, s) : s;
        }
    }
}

#define DENSE_GEMV(NAME, DT, T)                                                                                \
    extern "C" __global__ void __launch_bounds__(128) dense_gemv_##NAME##_t##T##_v(                            \
        const u8* w, int rows, int cols, const float* x, const float* bias, float* out, int accumulate) {      \
        dense_gemv_impl<T, DT, true>(w, rows, cols, x, bias, out, accumulate);                                 \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(128) dense_gemv_##NAME##_t##T##_s(                            \
        const u8* w, int rows, int cols, const float* x, const float* bias, float* out, int accumulate) {      \
        dense_gemv_impl<T, DT, false>(w, rows, cols, x, bias, out, accumulate);                                \
    }
#define DENSE_ALL(T) DENSE_GEMV(f32, DT_F32, T) DENSE_GEMV(f16, DT_F16, T) DENSE_GEMV(bf16, DT_BF16, T)

DENSE_ALL(1)
DENSE_ALL(2)
DENSE_ALL(3)
DENSE_ALL(4)
DENSE_ALL(5)
DENSE_ALL(6)
DENSE_ALL(7)
DENSE_ALL(8)

// f32 -> bf16 (dt 2) or f16 (dt 1), round to nearest even.
extern "C" __global__ void convert_f32(const float* x, u16* out, long long n, int dt) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = dt == DT_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
}

// out[t * n + j] += bias[j]
extern "C" __global__ void add_bias(float* out, const float* bias, int n, long long total) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        out[i] = __fadd_rn(out[i], bias[i % n]);
}
