// norm.cu: RMSNorm and the activation quantizers.
//
// * rms_norm: transformers' LlamaRMSNorm, out = (x * rsqrt(mean(x^2) + eps)) * (w + offset), like
//   tern_kernels::ops::rms_norm (same f32 operations; only the order of the sum of squares differs).
// * rms_norm_quant_i8: optional RMSNorm fused with BitNet's per-token int8 absmax quantization
//   (tern_kernels::act::quantize_i8: s = 127 / max(|x|, 1e-5), q = round_half_even(x * s) clamped to
//   int8, NaN -> 0), writing the codes padded with zeros to kp, the scale s and the code sum. Without
//   the norm the codes, scale and sum are bit-identical to the CPU's.
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

// One block per token. do_norm != 0: normalise with (w, eps, offset) first (w nullable).
// out_norm (nullable) receives the normalised f32 values. codes: tokens x kp.
extern "C" __global__ void rms_norm_quant_i8(const float* x, const float* w, float eps, float offset, int do_norm,
                                             int d, int kp, float* out_norm, i8* codes, float* act_scale,
                                             int* act_sum) {
    __shared__ float red[32];
    __shared__ int redi[32];
    const int t = blockIdx.x;
    const float* xr = x + (size_t)t * d;
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
