// attn.cu: RoPE + KV-cache write, and causal grouped-query attention over the cache in two
// passes (flash-decoding): attn_split computes, for every (query token, head, key range), the
// running max m, the sum l of exp(score − m) and the unnormalised Σ exp(score − m)·v; attn_combine
// merges the ranges. Semantics of tern_kernels::ops::{rope_rotate_half, attention}: cache layout
// [kv_head][pos][head_dim]; query t sits at position pos0 + t and sees keys first..=pos0 + t with
// first = max(0, pos0 + t + 1 − window) for a sliding window (transformers' kv_idx > q_idx − window);
// a block of attn_split serves several query heads of one KV head (GQA) so K and V are read once
// for all of them;
// scores are q·k · scale (optionally soft-capped, cap · tanh(s / cap)); softmax in f32.
// pos0 is read from device memory so that a captured CUDA graph can be replayed at any position.
//
// Batched (row-table) variants rope_kv_rows / attn_rows_*: every token row t names its own sequence
// and position, rows[t] = (seq << 32) | pos, and each sequence its own caches and capacity for the
// layer, kv[2 * seq] = K cache address, kv[2 * seq + 1] = V cache address, caps[seq]; so one launch
// serves all sequences of a batch (and a graph replays for any positions and caches written into
// the tables); attn_combine then merges the splits as for the per-sequence kernels.

// q: T x nh x hd (rotated in place); k, v: T x nkv x hd; cos/sin: [positions][half] tables.
// One thread per (token, head, item), items 0..hd−half: item i < half rotates the pair (i, i+half),
// item i ≥ half passes element i + half through (partial rotary). K and V go to the cache.
__device__ __forceinline__ void rope_kv_impl(float* q, const float* k, const float* v, const float* cos_t,
                                             const float* sin_t, const int* pos0_ptr, float* kc, float* vc,
                                             const u64* kv_tab, const u64* caps, const u64* rows, int T, int nh,
                                             int nkv, int hd, int half, int cap) {
    const int items = hd - half;
    const long long total = (long long)T * (nh + nkv) * items;
    const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const int i = (int)(idx % items);
    const int head = (int)((idx / items) % (nh + nkv));
    const int t = (int)(idx / ((long long)items * (nh + nkv)));
    int pos;
    if (rows) {
        const u64 r = rows[t];
        const int sq = (int)(r >> 32);
        pos = (int)(r & 0xffffffffu);
        kc = (float*)kv_tab[2 * sq];
        vc = (float*)kv_tab[2 * sq + 1];
        cap = (int)caps[sq];
    } else {
        pos = *pos0_ptr + t;
    }
    const float* cs = cos_t + (size_t)pos * half;
    const float* sn = sin_t + (size_t)pos * half;
    if (head < nh) {
        float* h = q + ((size_t)t * nh + head) * hd;
        if (i < half) {
            const float a = h[i], b = h[i + half], c = cs[i], s = sn[i];
            h[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
            h[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
        }
        return;
    }
    const int g = head - nh;
    const float* kh = k + ((size_t)t * nkv + g) * hd;
    const float* vh = v + ((size_t)t * nkv + g) * hd;
    float* kd = kc + ((size_t)g * cap + pos) * hd;
    float* vd = vc + ((size_t)g * cap + pos) * hd;
    if (i < half) {
        const float a = kh[i], b = kh[i + half], c = cs[i], s = sn[i];
        kd[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        kd[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
        vd[i] = vh[i];
        vd[i + half] = vh[i + half];
    } else {
        kd[i + half] = kh[i + half];
        vd[i + half] = vh[i + half];
    }
}

extern "C" __global__ void rope_kv(float* q, const float* k, const float* v, const float* cos_t, const float* sin_t,
                                   const int* pos0_ptr, float* kc, float* vc, int T, int nh, int nkv, int hd,
                                   int half, int cap) {
    rope_kv_impl(q, k, v, cos_t, sin_t, pos0_ptr, kc, vc, nullptr, nullptr, nullptr, T, nh, nkv, hd, half, cap);
}

extern "C" __global__ void rope_kv_rows(float* q, const float* k, const float* v, const float* cos_t,
                                        const float* sin_t, const u64* kv_tab, const u64* caps, const u64* rows,
                                        int T, int nh, int nkv, int hd, int half) {
    rope_kv_impl(q, k, v, cos_t, sin_t, nullptr, nullptr, nullptr, kv_tab, caps, rows, T, nh, nkv, hd, half, 0);
}

#define ATTN_WARPS 4
#define ATTN_KB 4  // keys per warp step

// grid (n_splits, nkv * (G / GB), T), block 128, G = nh / nkv query heads per KV head. A block
// serves GB query heads of one KV head, so each K / V row is loaded once for GB heads; lanes hold
// EPL elements of head_dim (hd <= 32 * EPL). Partials: ml[((t*nh + h)*ns + s)*2 + {0,1}] = (m, l);
// acc[((t*nh + h)*ns + s)*hd + d].
template <int GB, int EPL>
__device__ __forceinline__ void attn_split_impl(const float* __restrict__ q, const float* __restrict__ kc,
                                                const float* __restrict__ vc, const int* pos0_ptr, const u64* kv_tab,
                                                const u64* caps, const u64* rows, float* part_ml,
                                                float* part_acc, int nh, int nkv, int hd, int cap, float scale,
                                                int window, int split_len, float softcap) {
    __shared__ float sm_m[ATTN_WARPS][GB], sm_l[ATTN_WARPS][GB];
    __shared__ float sm_acc[ATTN_WARPS][GB][EPL * 32];
    const int s = blockIdx.x, t = blockIdx.z;
    const int ns = gridDim.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int G = nh / nkv;
    const int hg = G / GB;
    const int kvh = blockIdx.y / hg;
    const int h0 = kvh * G + (blockIdx.y % hg) * GB;
    int n_keys;
    if (rows) {
        const u64 r = rows[t];
        const int sq = (int)(r >> 32);
        n_keys = (int)(r & 0xffffffffu) + 1;
        kc = (const float*)kv_tab[2 * sq];
        vc = (const float*)kv_tab[2 * sq + 1];
        cap = (int)caps[sq];
    } else {
        n_keys = *pos0_ptr + t + 1;
    }
    const int first = window > 0 ? max(0, n_keys - window) : 0;
    const int k0 = first + s * split_len;
    const int k1 = min(n_keys, k0 + split_len);

    float qv[GB][EPL], acc[GB][EPL], m[GB], l[GB];
#pragma unroll
    for (int g = 0; g < GB; g++) {
        const float* qp = q + ((size_t)t * nh + h0 + g) * hd;
#pragma unroll
        for (int e = 0; e < EPL; e++) {
            qv[g][e] = (lane + 32 * e < hd) ? qp[lane + 32 * e] : 0.0f;
            acc[g][e] = 0.0f;
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    const float* kb = kc + (size_t)kvh * cap * hd;
    const float* vb = vc + (size_t)kvh * cap * hd;

    for (int j0 = k0 + warp * ATTN_KB; j0 < k1; j0 += ATTN_WARPS * ATTN_KB) {
        float sc[GB][ATTN_KB];
#pragma unroll
        for (int kk = 0; kk < ATTN_KB; kk++) {
            const int j = j0 + kk;
            float kr[EPL];
#pragma unroll
            for (int e = 0; e < EPL; e++)
                kr[e] = (j < k1 && lane + 32 * e < hd) ? kb[(size_t)j * hd + lane + 32 * e] : 0.0f;
#pragma unroll
            for (int g = 0; g < GB; g++) {
                float p = 0.0f;
#pragma unroll
                for (int e = 0; e < EPL; e++) p = fmaf(qv[g][e], kr[e], p);
                sc[g][kk] = p;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
            for (int g = 0; g < GB; g++)
#pragma unroll
                for (int kk = 0; kk < ATTN_KB; kk++) sc[g][kk] += __shfl_xor_sync(FULL_MASK, sc[g][kk], o);
        float corr[GB];
#pragma unroll
        for (int g = 0; g < GB; g++) {
            float mnew = m[g];
#pragma unroll
            for (int kk = 0; kk < ATTN_KB; kk++) {
                float x = sc[g][kk] * scale;
                if (softcap > 0.0f) x = softcap * tanhf(x / softcap);
                sc[g][kk] = (j0 + kk < k1) ? x : -INFINITY;
                mnew = fmaxf(mnew, sc[g][kk]);
            }
            corr[g] = expf(m[g] - mnew);  // m = -inf at the start: exp(-inf) = 0
            m[g] = mnew;
            l[g] *= corr[g];
#pragma unroll
            for (int e = 0; e < EPL; e++) acc[g][e] *= corr[g];
        }
#pragma unroll
        for (int kk = 0; kk < ATTN_KB; kk++) {
            const int j = j0 + kk;
            if (j < k1) {
                float vr[EPL];
#pragma unroll
                for (int e = 0; e < EPL; e++) vr[e] = (lane + 32 * e < hd) ? vb[(size_t)j * hd + lane + 32 * e] : 0.0f;
#pragma unroll
                for (int g = 0; g < GB; g++) {
                    const float p = expf(sc[g][kk] - m[g]);
                    l[g] += p;
#pragma unroll
                    for (int e = 0; e < EPL; e++) acc[g][e] = fmaf(p, vr[e], acc[g][e]);
                }
            }
        }
    }
    // Merge the warps of the block.
#pragma unroll
    for (int g = 0; g < GB; g++) {
        if (lane == 0) {
            sm_m[warp][g] = m[g];
            sm_l[warp][g] = l[g];
        }
#pragma unroll
        for (int e = 0; e < EPL; e++) sm_acc[warp][g][lane + 32 * e] = acc[g][e];
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < GB; g++) {
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++) M = fmaxf(M, sm_m[w][g]);
        float f[ATTN_WARPS];
        float L = 0.0f;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++) {
            f[w] = sm_m[w][g] == -INFINITY ? 0.0f : expf(sm_m[w][g] - M);
            L += sm_l[w][g] * f[w];
        }
        const size_t pidx = ((size_t)t * nh + h0 + g) * ns + s;
        if (threadIdx.x == 0) {
            part_ml[pidx * 2] = M;
            part_ml[pidx * 2 + 1] = L;
        }
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            float a = 0.0f;
#pragma unroll
            for (int w = 0; w < ATTN_WARPS; w++) a += sm_acc[w][g][d] * f[w];
            part_acc[pidx * hd + d] = a;
        }
    }
}

#define ATTN_SPLIT(GB, EPL)                                                                                      \
    extern "C" __global__ void __launch_bounds__(128) attn_split_g##GB##_e##EPL(                                 \
        const float* q, const float* kc, const float* vc, const int* pos0_ptr, float* part_ml, float* part_acc,   \
        int nh, int nkv, int hd, int cap, float scale, int window, int split_len, float softcap) {               \
        attn_split_impl<GB, EPL>(q, kc, vc, pos0_ptr, nullptr, nullptr, nullptr, part_ml, part_acc, nh, nkv, hd,  \
                                 cap, scale, window, split_len, softcap);                                        \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(128) attn_rows_g##GB##_e##EPL(                                  \
        const float* q, const u64* kv_tab, const u64* caps, const u64* rows, float* part_ml, float* part_acc,     \
        int nh, int nkv, int hd, float scale, int window, int split_len, float softcap) {                        \
        attn_split_impl<GB, EPL>(q, nullptr, nullptr, nullptr, kv_tab, caps, rows, part_ml, part_acc, nh, nkv,    \
                                 hd, 0, scale, window, split_len, softcap);                                      \
    }
#define ATTN_SPLIT_E(GB) ATTN_SPLIT(GB, 2) ATTN_SPLIT(GB, 4) ATTN_SPLIT(GB, 8)
ATTN_SPLIT_E(1)
ATTN_SPLIT_E(2)
ATTN_SPLIT_E(4)
ATTN_SPLIT_E(8)

// grid (nh, T), block 128: out[(t*nh + h)*hd + d] = Σ_s acc_s·e^{m_s−M} / Σ_s l_s·e^{m_s−M}.
extern "C" __global__ void attn_combine(const float* part_ml, const float* part_acc, float* out, int nh, int hd,
                                        int ns) {
    const int h = blockIdx.x, t = blockIdx.y;
    const size_t base = ((size_t)t * nh + h) * ns;
    float M = -INFINITY;
    for (int s = 0; s < ns; s++) M = fmaxf(M, part_ml[(base + s) * 2]);
    float L = 0.0f;
    for (int s = 0; s < ns; s++) {
        const float ms = part_ml[(base + s) * 2];
        if (ms != -INFINITY) L += part_ml[(base + s) * 2 + 1] * expf(ms - M);
    }
    const float inv = 1.0f / L;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < ns; s++) {
            const float ms = part_ml[(base + s) * 2];
            if (ms != -INFINITY) a += part_acc[(base + s) * hd + d] * expf(ms - M);
        }
        out[((size_t)t * nh + h) * hd + d] = a * inv;
    }
}
