// quant.cu: GEMV of ggml block-quantized weights (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K) with int8
// activations, for decode (up to 8 tokens).
//
// Arithmetic of tern_kernels::quant (scalar.rs, itself ggml's ggml_vec_dot_<type>_q8_* generic
// kernels): activations are quantized per block (quant_q8x32 / quant_q8k in norm.cu, bit-identical
// to the CPU), every weight block is dotted with its activation block in exact integer arithmetic
// (dp4a), and scaled once per block in f32 with the same f32 operations as the CPU reference:
//   32-element types:  sum += (d_w*d_x) * i   (+ m_w * (d_x * Σx) for Q4_1)
//   256-element types: sum += (d_w*d_x) * I ; sum -= (dmin_w*d_x) * M   (M only for Q4_K)
// so every per-block term equals the CPU's; only the order in which block terms are added differs
// (lanes, then a warp reduction), which is the whole f32 difference from the CPU result.
//
// Layouts (ggml): Q8_0 34 B {f16 d; i8 q[32]}; Q4_0 18 B {f16 d; u8 qs[16]} (q = nibble − 8, low
// nibbles are elements 0..15); Q4_1 20 B {f16 d, m; u8 qs[16]}; Q4_K 144 B {f16 d, dmin; u8
// scales[12]; u8 qs[128]}; Q6_K 210 B {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}.
// Activations: Q8x32 {qs[cols], d[cols/32], sums[cols/32]}; Q8K {qs[cols], d[cols/256],
// bsums[cols/16] (i16)} per token.

#define QT_Q8_0 0
#define QT_Q4_0 1
#define QT_Q4_1 2

__device__ __forceinline__ int dot8(const int* q, int4 a, int4 b) {
    int s = __dp4a(q[0], a.x, 0);
    s = __dp4a(q[1], a.y, s);
    s = __dp4a(q[2], a.z, s);
    s = __dp4a(q[3], a.w, s);
    s = __dp4a(q[4], b.x, s);
    s = __dp4a(q[5], b.y, s);
    s = __dp4a(q[6], b.z, s);
    s = __dp4a(q[7], b.w, s);
    return s;
}

__device__ __forceinline__ void store_out(float* out, int rows, int row, int t, float y, const float* bias,
                                          int accumulate) {
    if (bias) y = __fadd_rn(y, bias[row]);
    float* o = out + (size_t)t * rows + row;
    *o = accumulate ? __fadd_rn(*o, y) : y;
}

// One warp per row, one lane per 32-element block.
template <int T, int TY>
__device__ __forceinline__ void legacy_gemv(const u8* __restrict__ w, int rows, int cols, const i8* __restrict__ xq,
                                            const float* __restrict__ xd, const int* __restrict__ xs,
                                            const float* __restrict__ bias, float* out, int accumulate) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int nb = cols / 32;
    const int bb = TY == QT_Q8_0 ? 34 : (TY == QT_Q4_0 ? 18 : 20);
    const u8* wr = w + (size_t)row * nb * bb;
    float sum[T];
#pragma unroll
    for (int t = 0; t < T; t++) sum[t] = 0.0f;
    for (int b = lane; b < nb; b += 32) {
        const u8* blk = wr + (size_t)b * bb;
        int q[8];
        const float d = f16_to_f32(ld_u16(blk));
        float m = 0.0f;
        if (TY == QT_Q8_0) {
#pragma unroll
            for (int k = 0; k < 8; k++) q[k] = (int)ld_u32_a2(blk + 2 + 4 * k);
        } else {
            const u8* qs = blk + (TY == QT_Q4_0 ? 2 : 4);
            if (TY == QT_Q4_1) m = f16_to_f32(ld_u16(blk + 2));
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const u32 v = ld_u32_a2(qs + 4 * k);
                q[k] = (int)(v & 0x0F0F0F0Fu);
                q[k + 4] = (int)((v >> 4) & 0x0F0F0F0Fu);
            }
        }
#pragma unroll
        for (int t = 0; t < T; t++) {
            const int4* xp = (const int4*)(xq + (size_t)t * cols + (size_t)b * 32);
            int i = dot8(q, __ldg(xp), __ldg(xp + 1));
            const float dy = xd[(size_t)t * nb + b];
            if (TY == QT_Q4_0) i -= 8 * xs[(size_t)t * nb + b];
            sum[t] = __fadd_rn(sum[t], __fmul_rn(__fmul_rn(d, dy), (float)i));
            if (TY == QT_Q4_1) sum[t] = __fadd_rn(sum[t], __fmul_rn(m, __fmul_rn(dy, (float)xs[(size_t)t * nb + b])));
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        const float s = warp_sum(sum[t]);
        if (lane == t) store_out(out, rows, row, t, s, bias, accumulate);
    }
}

// ggml's get_scale_min_k4.
__device__ __forceinline__ void scale_min_k4(int j, const u8* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// One warp per row; 4 lanes per 256-element block (lane & 3 = quarter), 8 blocks per step.
template <int T>
__device__ __forceinline__ void q4k_gemv(const u8* __restrict__ w, int rows, int cols, const i8* __restrict__ xq,
                                         const float* __restrict__ xd, const short* __restrict__ bsums,
                                         const float* __restrict__ bias, float* out, int accumulate) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int nb = cols / 256;
    const int c = lane & 3, g = lane >> 2;
    const u8* wr = w + (size_t)row * nb * 144;
    float sum[T];
#pragma unroll
    for (int t = 0; t < T; t++) sum[t] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += 8) {
        const int b = b0 + g;
        const bool valid = b < nb;
        int lo[8], hi[8];
        int sc1 = 0, m1 = 0, sc2 = 0, m2 = 0;
        float d = 0.0f, dmin = 0.0f;
        if (valid) {
            const u8* blk = wr + (size_t)b * 144;
            d = f16_to_f32(ld_u16(blk));
            dmin = f16_to_f32(ld_u16(blk + 2));
            u8 sc[12];
#pragma unroll
            for (int k = 0; k < 3; k++) {
                const u32 v = *(const u32*)(blk + 4 + 4 * k);
                sc[4 * k] = v & 0xff;
                sc[4 * k + 1] = (v >> 8) & 0xff;
                sc[4 * k + 2] = (v >> 16) & 0xff;
                sc[4 * k + 3] = v >> 24;
            }
            scale_min_k4(2 * c, sc, &sc1, &m1);
            scale_min_k4(2 * c + 1, sc, &sc2, &m2);
            const uint4 a = *(const uint4*)(blk + 16 + 32 * c);
            const uint4 bq = *(const uint4*)(blk + 16 + 32 * c + 16);
            const u32 ws[8] = {a.x, a.y, a.z, a.w, bq.x, bq.y, bq.z, bq.w};
#pragma unroll
            for (int k = 0; k < 8; k++) {
                lo[k] = (int)(ws[k] & 0x0F0F0F0Fu);
                hi[k] = (int)((ws[k] >> 4) & 0x0F0F0F0Fu);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) lo[k] = hi[k] = 0;
        }
#pragma unroll
        for (int t = 0; t < T; t++) {
            int I = 0, M = 0;
            if (valid) {
                const int4* xp = (const int4*)(xq + (size_t)t * cols + (size_t)b * 256 + 64 * c);
                const int s1 = dot8(lo, __ldg(xp), __ldg(xp + 1));
                const int s2 = dot8(hi, __ldg(xp + 2), __ldg(xp + 3));
                const short* bs = bsums + (size_t)t * (cols / 16) + (size_t)b * 16 + 4 * c;
                I = sc1 * s1 + sc2 * s2;
                M = m1 * ((int)bs[0] + (int)bs[1]) + m2 * ((int)bs[2] + (int)bs[3]);
            }
            I += __shfl_xor_sync(FULL_MASK, I, 1);
            I += __shfl_xor_sync(FULL_MASK, I, 2);
            M += __shfl_xor_sync(FULL_MASK, M, 1);
            M += __shfl_xor_sync(FULL_MASK, M, 2);
            if (valid && c == 0) {
                const float dy = xd[(size_t)t * (cols / 256) + b];
                sum[t] = __fadd_rn(sum[t], __fmul_rn(__fmul_rn(d, dy), (float)I));
                sum[t] = __fsub_rn(sum[t], __fmul_rn(__fmul_rn(dmin, dy), (float)M));
            }
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        const float s = warp_sum(sum[t]);
        if (lane == t) store_out(out, rows, row, t, s, bias, accumulate);
    }
}

template <int T>
__device__ __forceinline__ void q6k_gemv(const u8* __restrict__ w, int rows, int cols, const i8* __restrict__ xq,
                                         const float* __restrict__ xd, const short* __restrict__ bsums,
                                         const float* __restrict__ bias, float* out, int accumulate) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int nb = cols / 256;
    const int sub = lane & 3, g = lane >> 2;
    const int c = sub >> 1, lh = sub & 1;
    const u8* wr = w + (size_t)row * nb * 210;
    float sum[T];
#pragma unroll
    for (int t = 0; t < T; t++) sum[t] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += 8) {
        const int b = b0 + g;
        const bool valid = b < nb;
        int q[4][4];
        int sc[4] = {0, 0, 0, 0};
        float d = 0.0f;
        if (valid) {
            const u8* blk = wr + (size_t)b * 210;
            d = f16_to_f32(ld_u16(blk + 208));
#pragma unroll
            for (int k = 0; k < 4; k++) sc[k] = (int)(i8)blk[192 + 8 * c + 2 * k + lh];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const u32 qa = ld_u32_a2(blk + 64 * c + 16 * lh + 4 * j);
                const u32 qb = ld_u32_a2(blk + 64 * c + 32 + 16 * lh + 4 * j);
                const u32 h = ld_u32_a2(blk + 128 + 32 * c + 16 * lh + 4 * j);
                q[0][j] = (int)((qa & 0x0F0F0F0Fu) | ((h << 4) & 0x30303030u));
                q[1][j] = (int)((qb & 0x0F0F0F0Fu) | ((h << 2) & 0x30303030u));
                q[2][j] = (int)(((qa >> 4) & 0x0F0F0F0Fu) | (h & 0x30303030u));
                q[3][j] = (int)(((qb >> 4) & 0x0F0F0F0Fu) | ((h >> 2) & 0x30303030u));
            }
        } else {
#pragma unroll
            for (int k = 0; k < 4; k++)
#pragma unroll
                for (int j = 0; j < 4; j++) q[k][j] = 0;
        }
#pragma unroll
        for (int t = 0; t < T; t++) {
            int I = 0;
            if (valid) {
                const i8* xb = xq + (size_t)t * cols + (size_t)b * 256 + 128 * c + 16 * lh;
                const short* bs = bsums + (size_t)t * (cols / 16) + (size_t)b * 16 + 8 * c + lh;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int4 xv = __ldg((const int4*)(xb + 32 * k));
                    int s = __dp4a(q[k][0], xv.x, 0);
                    s = __dp4a(q[k][1], xv.y, s);
                    s = __dp4a(q[k][2], xv.z, s);
                    s = __dp4a(q[k][3], xv.w, s);
                    I += sc[k] * (s - 32 * (int)bs[2 * k]);
                }
            }
            I += __shfl_xor_sync(FULL_MASK, I, 1);
            I += __shfl_xor_sync(FULL_MASK, I, 2);
            if (valid && sub == 0) {
                const float dy = xd[(size_t)t * (cols / 256) + b];
                sum[t] = __fadd_rn(sum[t], __fmul_rn(__fmul_rn(d, dy), (float)I));
            }
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        const float s = warp_sum(sum[t]);
        if (lane == t) store_out(out, rows, row, t, s, bias, accumulate);
    }
}

#define LEGACY_GEMV(NAME, TY, T)                                                                                \
    extern "C" __global__ void __launch_bounds__(128)                                                          \
        quant_gemv_##NAME##_t##T(const u8* w, int rows, int cols, const i8* xq, const float* xd, const int* xs, \
                                 const float* bias, float* out, int accumulate) {                              \
        legacy_gemv<T, TY>(w, rows, cols, xq, xd, xs, bias, out, accumulate);                                  \
    }
#define KQ_GEMV(NAME, FN, T)                                                                                     \
    extern "C" __global__ void __launch_bounds__(128)                                                           \
        quant_gemv_##NAME##_t##T(const u8* w, int rows, int cols, const i8* xq, const float* xd,                \
                                 const short* bsums, const float* bias, float* out, int accumulate) {           \
        FN<T>(w, rows, cols, xq, xd, bsums, bias, out, accumulate);                                             \
    }
#define QUANT_ALL(T)                  \
    LEGACY_GEMV(q8_0, QT_Q8_0, T)     \
    LEGACY_GEMV(q4_0, QT_Q4_0, T)     \
    LEGACY_GEMV(q4_1, QT_Q4_1, T)     \
    KQ_GEMV(q4_k, q4k_gemv, T)        \
    KQ_GEMV(q6_k, q6k_gemv, T)

QUANT_ALL(1)
QUANT_ALL(2)
QUANT_ALL(3)
QUANT_ALL(4)
QUANT_ALL(5)
QUANT_ALL(6)
QUANT_ALL(7)
QUANT_ALL(8)
