// ternary.cu: ternary (T2-packed, 2 bits per weight) x int8 activation GEMV for decode (up to 8
// tokens), exact in integer arithmetic like tern_kernels::ternary::matmul.
//
// T2 layout (tern_kernels::ternary): rows are K-contiguous, K padded to 128-weight blocks of 32
// bytes; byte j of a block holds the codes (w + 1) of weights j, j+32, j+64, j+96 in bit pairs
// 0..3. A 16-byte chunk c of a row (half h = c & 1 of block c >> 1) therefore holds, in lane L
// (bits 2L..2L+1 of every byte), the codes of the 16 consecutive weights 128*(c>>1) + 32L + 16h + i.
// One shift and mask per 32-bit word gives 4 codes lined up with 4 consecutive int8 activations,
// consumed by dp4a. The result is Σ code*x − Σ x (the activation code sum), i.e. Σ w*x exactly,
// then `(float)dot * factor` with factor = wscale / s (mode 0, AutoBitLinear) or
// 1 / (s * wscale) (mode 1, BitLinear), as tern-model's Linear computes it, so the f32 output is
// bit-identical to the CPU kernels'. Mode 2 takes act_scale[t] as the factor itself (the CPU
// kernel's `factor` argument).
//
// Work split: one warp per R rows; lanes stride over the 16-byte chunks of the rows, U chunks
// per lane per step with all loads issued before use; activations come through L1 (every warp of
// an SM reads the same few KB). Integer partial sums are reduced across the warp with shuffles.

template <int T, int R, int U>
__device__ __forceinline__ void ternary_gemv_impl(int warp, const u8* __restrict__ w, int rows, int row_chunks,
                                                  const i8* __restrict__ x, int kp,
                                                  const float* __restrict__ act_scale,
                                                  const int* __restrict__ act_sum, float wscale, int mode,
                                                  const float* __restrict__ bias, float* out, int accumulate) {
    const int lane = threadIdx.x & 31;
    const int r0 = warp * R;
    if (r0 >= rows) return;
    int acc[R][T];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = 0;
    const uint4* wrow[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int rr = min(r0 + r, rows - 1);
        wrow[r] = (const uint4*)(w + (size_t)rr * row_chunks * 16);
    }
    for (int c0 = 0; c0 < row_chunks; c0 += 32 * U) {
        uint4 wv[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + u * 32 + lane;
#pragma unroll
            for (int r = 0; r < R; r++) {
                if (c < row_chunks) wv[u][r] = ld_stream16(wrow[r] + c);
                else wv[u][r] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = c0 + u * 32 + lane;
            if (c < row_chunks) {
                const int xoff = (c >> 1) * 128 + (c & 1) * 16;
#pragma unroll
                for (int L = 0; L < 4; L++) {
#pragma unroll
                    for (int t = 0; t < T; t++) {
                        const int4 xv = __ldg((const int4*)(x + (size_t)t * kp + xoff + L * 32));
#pragma unroll
                        for (int r = 0; r < R; r++) {
                            const u32 s = 2 * L;
                            int a = acc[r][t];
                            a = __dp4a((int)((wv[u][r].x >> s) & 0x03030303u), xv.x, a);
                            a = __dp4a((int)((wv[u][r].y >> s) & 0x03030303u), xv.y, a);
                            a = __dp4a((int)((wv[u][r].z >> s) & 0x03030303u), xv.z, a);
                            a = __dp4a((int)((wv[u][r].w >> s) & 0x03030303u), xv.w, a);
                            acc[r][t] = a;
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = warp_sum_i(acc[r][t]);
    // Lane (r * T + t) % 32 writes output (r, t): spreads the epilogue over the warp.
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int t = 0; t < T; t++) {
            if (lane == ((r * T + t) & 31) && r0 + r < rows) {
                const float s = act_scale[t];
                const float factor = mode == 0   ? __fdiv_rn(wscale, s)
                                     : mode == 1 ? __fdiv_rn(1.0f, __fmul_rn(s, wscale))
                                                 : s;
                float y = __fmul_rn((float)(acc[r][t] - act_sum[t]), factor);
                if (bias) y = __fadd_rn(y, bias[r0 + r]);
                float* o = out + (size_t)t * rows + r0 + r;
                *o = accumulate ? __fadd_rn(*o, y) : y;
            }
        }
    }
}

// Up to four matrices with the same K (q / k / v, or gate / up) in one launch: warps
// [s[i-1].warp_end, s[i].warp_end) compute matrix i.
struct TSeg {
    const u8* w;
    float* out;
    const float* bias;
    int rows;
    int mode;
    float wscale;
    int warp_end;
};
struct TSegs {
    TSeg s[4];
    int n;
};

#define TERNARY_GEMV(T, R, U)                                                                                   \
    extern "C" __global__ void __launch_bounds__(128, 1) ternary_gemv_t##T##_r##R(                                 \
        const u8* w, int rows, int row_chunks, const i8* x, int kp, const float* act_scale, const int* act_sum, \
        float wscale, int mode, const float* bias, float* out, int accumulate) {                                \
        const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;                                         \
        ternary_gemv_impl<T, R, U>(warp, w, rows, row_chunks, x, kp, act_scale, act_sum, wscale, mode, bias, out, \
                                   accumulate);                                                                 \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(128, 1) ternary_gemv_multi_t##T##_r##R(                           \
        TSegs segs, int row_chunks, const i8* x, int kp, const float* act_scale, const int* act_sum,            \
        int accumulate) {                                                                                      \
        const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;                                         \
        TSeg sg = segs.s[0];                                                                                   \
        int w0 = 0;                                                                                            \
        _Pragma("unroll") for (int i = 1; i < 4; i++) {                                                        \
            if (i < segs.n && warp >= segs.s[i - 1].warp_end) {                                                \
                w0 = segs.s[i - 1].warp_end;                                                                   \
                sg = segs.s[i];                                                                                \
            }                                                                                                  \
        }                                                                                                      \
        if (warp >= sg.warp_end) return;                                                                       \
        ternary_gemv_impl<T, R, U>(warp - w0, sg.w, sg.rows, row_chunks, x, kp, act_scale, act_sum, sg.wscale,  \
                                   sg.mode, sg.bias, sg.out, accumulate);                                       \
    }

#define TERNARY_GEMV_ALL_R(T) TERNARY_GEMV(T, 1, 4) TERNARY_GEMV(T, 2, 4) TERNARY_GEMV(T, 4, 2)

TERNARY_GEMV_ALL_R(1)
TERNARY_GEMV_ALL_R(2)
TERNARY_GEMV_ALL_R(3)
TERNARY_GEMV_ALL_R(4)
TERNARY_GEMV_ALL_R(5)
TERNARY_GEMV_ALL_R(6)
TERNARY_GEMV_ALL_R(7)
TERNARY_GEMV_ALL_R(8)
