// norm.cu: RMSNorm and the activation quantizers.
//
// * rms_norm: transformers' LlamaRMSNorm, out = (x * rsqrt(mean(x^2) + eps)) * (w + offset), like
//   tern_kernels::ops::rms_norm (same f32 operations; only the order of the sum of squares differs).
// * rms_norm_quant_i8: optional RMSNorm fused with BitNet's per-token int8 absmax quantization
//   (tern_kernels::act::quantize_i8: s = 127 / max(|x|, 1e-5), q = round_half_even(x * s) clamped to
//   int8, NaN -> 0), writing the codes padded with zeros to kp, the scale s and the code sum. Without
//   the norm the codes, scale and sum are bit-identical to the CPU's.
// * glu_quant_i8: the GLU product gate = act(gate) * up (ops.cu's glu, same f32 operations, written
//   back to gate) fused with the optional RMSNorm and the int8 quantization above, for the down
//   projection of a ternary FFN (plan ops Glu, RmsNorm Gate -> Gate, Linear down in one launch).
// * quant_q8x32 / quant_q8k: the activation block formats of tern_kernels::quant::act (ggml's
//   quantize_row_q8_0 with an exact integer block sum, and quantize_row_q8_K), bit-identical.

// One block per row. x: rows x d; w: d (nullable = no weight, i.e. 1); out may alias x.
extern "C" __global__ void rms_norm(const float* x, const float* w, float eps, float offset, int d, float* out) {
    __shared__ float red[32];
    const float* xr = x + (size_t)blockIdx.x * d;
    float* orow = out + (size_t)blockIdx.x * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float wv = w ? __fadd_rn(w[i], offset) : 1.0f;
        orow[i] = __fmul_rn(__fmul_rn(xr[i], inv), wv);
    }
}

__device__ __forceinline__ int quant_code(float v, float scale) {
    float r = rintf(__fmul_rn(v, scale));
    if (r != r) return 0;  // NaN -> 0, as Rust's `as i8`
    return (int)fminf(fmaxf(r, -128.0f), 127.0f);
}

// Normalise (optionally) and quantize one row xr of width d into codes / scale / sum of token t.
__device__ __forceinline__ void norm_quant_row(const float* xr, const float* w, float eps, float offset,
                                               int do_norm, int d, int kp, float* out_norm, i8* codes,
                                               float* act_scale, int* act_sum, int t) {
    __shared__ float red[32];
    __shared__ int redi[32];
    float inv = 1.0f;
    if (do_norm) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
        ss = block_sum(ss, red);
        inv = 1.0f / sqrtf(ss / (float)d + eps);
    }
    float amax = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float v = xr[i];
        if (do_norm) v = __fmul_rn(__fmul_rn(v, inv), w ? __fadd_rn(w[i], offset) : 1.0f);
        if (out_norm) out_norm[(size_t)t * d + i] = v;
        amax = fmaxf(amax, fabsf(v));
    }
    amax = block_max(amax, red);
    const float scale = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
    i8* cr = codes + (size_t)t * kp;
    for (int i = threadIdx.x; i < kp; i += blockDim.x) {
        int q = 0;
        if (i < d) {
            float v = xr[i];
            if (do_norm) v = __fmul_rn(__fmul_rn(v, inv), w ? __fadd_rn(w[i], offset) : 1.0f);
            q = quant_code(v, scale);
        }
        cr[i] = (i8)q;
        sum += q;
    }
    sum = block_sum_i(sum, redi);
    if (threadIdx.x == 0) {
        act_scale[t] = scale;
        act_sum[t] = sum;
    }
}

// Elements per thread the single-pass quantizers keep in registers; rows wider than
// blockDim.x * NQ_REG take the multi-pass norm_quant_row above.
#define NQ_REG 32

// Single pass over global memory: the row (and the norm weight) is loaded once into registers,
// then normalised, reduced and quantized there; same f32 operations as norm_quant_row. With
// glu_act >= 0 the row is first act(x) * up (written back to x when write_x).
__device__ __forceinline__ void norm_quant_row_reg(float* xr, const float* up, int glu_act, int write_x,
                                                   const float* w, float eps, float offset, int do_norm, int d,
                                                   int kp, float* out_norm, i8* codes, float* act_scale,
                                                   int* act_sum, int t) {
    __shared__ float red[32];
    __shared__ int redi[32];
    const int nt = blockDim.x, tid = threadIdx.x;
    float v[NQ_REG], wv[NQ_REG];
    const bool use_w = do_norm && w;
#pragma unroll
    for (int j = 0; j < NQ_REG; j++) {
        const int i = tid + j * nt;
        v[j] = i < d ? xr[i] : 0.0f;
        wv[j] = (use_w && i < d) ? w[i] : 0.0f;
    }
    if (glu_act >= 0) {
#pragma unroll
        for (int j = 0; j < NQ_REG; j++) {
            const int i = tid + j * nt;
            if (i < d) {
                v[j] = __fmul_rn(act_apply(glu_act, v[j]), up[i]);
                if (write_x) xr[i] = v[j];
            }
        }
    }
    float inv = 1.0f;
    if (do_norm) {
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < NQ_REG; j++) ss += v[j] * v[j];
        ss = block_sum(ss, red);
        inv = 1.0f / sqrtf(ss / (float)d + eps);
    }
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < NQ_REG; j++) {
        const int i = tid + j * nt;
        if (do_norm) v[j] = __fmul_rn(__fmul_rn(v[j], inv), use_w ? __fadd_rn(wv[j], offset) : 1.0f);
        if (i < d) {
            if (out_norm) out_norm[(size_t)t * d + i] = v[j];
            amax = fmaxf(amax, fabsf(v[j]));
        }
    }
    amax = block_max(amax, red);
    const float scale = 127.0f / fmaxf(amax, 1e-5f);
    int sum = 0;
    i8* cr = codes + (size_t)t * kp;
#pragma unroll
    for (int j = 0; j < NQ_REG; j++) {
        const int i = tid + j * nt;
        if (i < d) {
            const int q = quant_code(v[j], scale);
            cr[i] = (i8)q;
            sum += q;
        }
    }
    for (int i = d + tid; i < kp; i += nt) cr[i] = 0;
    sum = block_sum_i(sum, redi);
    if (tid == 0) {
        act_scale[t] = scale;
        act_sum[t] = sum;
    }
}

// One block per token. do_norm != 0: normalise with (w, eps, offset) first (w nullable).
// out_norm (nullable, must not alias x) receives the normalised f32 values. codes: tokens x kp.
extern "C" __global__ void rms_norm_quant_i8(const float* x, const float* w, float eps, float offset, int do_norm,
                                             int d, int kp, float* out_norm, i8* codes, float* act_scale,
                                             int* act_sum) {
    const int t = blockIdx.x;
    if (d <= (int)blockDim.x * NQ_REG) {
        norm_quant_row_reg((float*)x + (size_t)t * d, nullptr, -1, 0, w, eps, offset, do_norm, d, kp, out_norm,
                           codes, act_scale, act_sum, t);
    } else {
        norm_quant_row(x + (size_t)t * d, w, eps, offset, do_norm, d, kp, out_norm, codes, act_scale, act_sum, t);
    }
}

// One block per token: gate[t] = act(gate[t]) * up[t] in place, then rms_norm_quant_i8 of that row.
// Each thread rewrites and later re-reads only its own elements, so no barrier is needed between.
extern "C" __global__ void glu_quant_i8(float* gate, const float* up, int act, const float* w, float eps,
                                        float offset, int do_norm, int d, int kp, i8* codes, float* act_scale,
                                        int* act_sum) {
    const int t = blockIdx.x;
    float* gr = gate + (size_t)t * d;
    const float* ur = up + (size_t)t * d;
    // The multi-pass row code measured faster here than the single-pass register version (H100, d
    // = 6912: 13.3 us with 1024 threads vs 21.9 us with 448); norm_quant_row_reg keeps the GLU
    // option for wider experiments.
    for (int i = threadIdx.x; i < d; i += blockDim.x) gr[i] = __fmul_rn(act_apply(act, gr[i]), ur[i]);
    norm_quant_row(gr, w, eps, offset, do_norm, d, kp, nullptr, codes, act_scale, act_sum, t);
}

// ggml's nearest_int for |v| <= 127.5: round half to even.
__device__ __forceinline__ int nearest_int(float v) { return (int)rintf(v); }

// One warp per 32-block; n_blocks = tokens * cols / 32 (x is dense, tokens x cols).
extern "C" __global__ void quant_q8x32(const float* x, int n_blocks, i8* qs, float* d, int* sums) {
    const int b = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (b >= n_blocks) return;
    const float v = x[(size_t)b * 32 + lane];
    const float amax = warp_max(fabsf(v));
    const bool finite = __all_sync(FULL_MASK, isfinite(v));
    int q = 0;
    if (finite && amax != 0.0f) {
        const float scale = 127.0f / amax;
        q = nearest_int(fminf(fmaxf(__fmul_rn(v, scale), -127.0f), 127.0f));
    }
    qs[(size_t)b * 32 + lane] = (i8)q;
    const int s = warp_sum_i(q);
    if (lane == 0) {
        d[b] = !finite ? __int_as_float(0x7fc00000) : (amax == 0.0f ? 0.0f : amax / 127.0f);
        sums[b] = s;
    }
}

// One warp per 256-block (8 consecutive values per lane); bsums: one i16 per 16 values.
extern "C" __global__ void quant_q8k(const float* x, int n_blocks, i8* qs, float* d, short* bsums) {
    const int b = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (b >= n_blocks) return;
    const float* xb = x + (size_t)b * 256 + lane * 8;
    float v[8];
    float am = 0.0f;
    bool fin = true;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        v[i] = xb[i];
        fin = fin && isfinite(v[i]);
        am = fmaxf(am, fabsf(v[i]));
    }
    const float amax = warp_max(am);
    const bool finite = __all_sync(FULL_MASK, fin);
    int q[8];
    if (finite && amax != 0.0f) {
        // ggml keeps the first value of largest magnitude, with its sign.
        int first = 1 << 30;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (fabsf(v[i]) == amax && first == (1 << 30)) first = lane * 8 + i;
        first = warp_min_i(first);
        const float mx = x[(size_t)b * 256 + first];
        const float iscale = -127.0f / mx;
#pragma unroll
        for (int i = 0; i < 8; i++) q[i] = nearest_int(fminf(fmaxf(__fmul_rn(v[i], iscale), -127.0f), 127.0f));
        if (lane == 0) d[b] = 1.0f / iscale;
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) q[i] = 0;
        if (lane == 0) d[b] = finite ? 0.0f : __int_as_float(0x7fc00000);
    }
    int s = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        qs[(size_t)b * 256 + lane * 8 + i] = (i8)q[i];
        s += q[i];
    }
    s += __shfl_xor_sync(FULL_MASK, s, 1);
    if ((lane & 1) == 0) bsums[(size_t)b * 16 + (lane >> 1)] = (short)s;
}
