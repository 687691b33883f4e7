// imma.cu: ternary (T2) x int8 GEMM on the int8 tensor cores (mma.sync m16n8k32 s8.s8.s32, sm_80+)
// for prefill, exact in integer arithmetic and bit-identical to the GEMV and the CPU kernels:
// out[t, r] = (float)(Σ_k code[r,k]·x[t,k] − Σ_k x[t,k]) · factor_t (+ bias[r]) (+ out).
//
// Tiles: a block of 4 warps computes 64 weight rows x 64 tokens; each warp 32 x 32 (2 x 4 MMA
// tiles). Per 128-wide K step (one T2 block) every thread loads 16 packed bytes (half a block of
// one row) and unpacks them with one shift and mask per lane into 64 int8 codes in shared memory;
// activations (K-contiguous per token, i.e. the column-major B operand) are copied as they are.
// Shared rows are padded to 144 bytes so the fragment reads are free of bank conflicts.
//
// Split-K (grid.z = k_split > 1, for grids too small to fill the GPU, e.g. 64 decode tokens): block z
// sums the K steps [z·steps/k_split, (z+1)·steps/k_split) and adds its integer partials into `part`
// (tokens x rows int32, all zero on entry) with atomics; the last block of a tile (per-tile counter
// in `counters`, zero on entry) reads the totals back, zeroing them and the counter for the next
// call, and runs the epilogue. Integer sums are exact, so the bits equal the unsplit kernel's.
// (Measured on an H100 at 64 tokens: per-split slices summed by the last block with 4 blocks per SM
// were slower than these atomics with 2 blocks per SM, 57 vs 33 us per GEMM on average.)

#define IM_BM 64
#define IM_BN 64
#define IM_BK 128
#define IM_LD 144

__device__ __forceinline__ void mma_s8(int* c, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// grid (ceil(rows / 64), ceil(tokens / 64), k_split), block 128.
extern "C" __global__ void __launch_bounds__(128)
    ternary_gemm_imma(const u8* __restrict__ w, int rows, int kp, const i8* __restrict__ x, int tokens,
                      const float* __restrict__ act_scale, const int* __restrict__ act_sum, float wscale, int mode,
                      const float* __restrict__ bias, float* out, int accumulate, int k_split, int* part,
                      int* counters) {
    __shared__ __align__(16) u8 sa[IM_BM * IM_LD];
    __shared__ __align__(16) u8 sb[IM_BN * IM_LD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, tig = lane & 3;
    const int wm = warp >> 1, wn = warp & 1;
    const int bm = blockIdx.x * IM_BM, bn = blockIdx.y * IM_BN;
    const int row_bytes = kp / 4;
    int acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0;

    const int lrow = tid >> 1, lh = tid & 1;
    // Register double buffering: the global loads of step k + 1 are in flight while the tensor
    // cores work on step k from shared memory.
    uint4 wv = make_uint4(0, 0, 0, 0), xv[4];
    const bool row_ok = bm + lrow < rows;
    const u8* wsrc = w + (size_t)(row_ok ? bm + lrow : 0) * row_bytes + lh * 16;
    auto load = [&](int k0) {
        if (row_ok) wv = ld_stream16(wsrc + (k0 / IM_BK) * 32);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int idx = tid + 128 * j;
            const int tok = idx >> 3, seg = idx & 7;
            xv[j] = bn + tok < tokens ? *(const uint4*)(x + (size_t)(bn + tok) * kp + k0 + seg * 16) : make_uint4(0, 0, 0, 0);
        }
    };
    const int steps = kp / IM_BK;
    const int kb = k_split > 1 ? (int)((long long)blockIdx.z * steps / k_split) * IM_BK : 0;
    const int ke = k_split > 1 ? (int)((long long)(blockIdx.z + 1) * steps / k_split) * IM_BK : kp;
    if (kb < ke) load(kb);
    for (int k0 = kb; k0 < ke; k0 += IM_BK) {
        // Weights: 64 rows x 32 packed bytes, one 16-byte half block per thread, unpacked.
#pragma unroll
        for (int L = 0; L < 4; L++) {
            uint4 c;
            c.x = (wv.x >> (2 * L)) & 0x03030303u;
            c.y = (wv.y >> (2 * L)) & 0x03030303u;
            c.z = (wv.z >> (2 * L)) & 0x03030303u;
            c.w = (wv.w >> (2 * L)) & 0x03030303u;
            *(uint4*)(sa + lrow * IM_LD + 32 * L + 16 * lh) = c;
        }
        // Activations: 64 tokens x 128 bytes.
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int idx = tid + 128 * j;
            *(uint4*)(sb + (idx >> 3) * IM_LD + (idx & 7) * 16) = xv[j];
        }
        __syncthreads();
        if (k0 + IM_BK < ke) load(k0 + IM_BK);
#pragma unroll
        for (int kk = 0; kk < IM_BK; kk += 32) {
            u32 af[2][4], bf[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const u8* p = sa + (wm * 32 + mi * 16 + g) * IM_LD + kk + tig * 4;
                af[mi][0] = *(const u32*)p;
                af[mi][1] = *(const u32*)(p + 8 * IM_LD);
                af[mi][2] = *(const u32*)(p + 16);
                af[mi][3] = *(const u32*)(p + 8 * IM_LD + 16);
            }
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const u8* p = sb + (wn * 32 + ni * 8 + g) * IM_LD + kk + tig * 4;
                bf[ni][0] = *(const u32*)p;
                bf[ni][1] = *(const u32*)(p + 16);
            }
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_s8(acc[mi][ni], af[mi], bf[ni]);
        }
        __syncthreads();
    }
    if (k_split > 1) {
        __shared__ int last;
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 4; ni++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = bm + wm * 32 + mi * 16 + g + (e >= 2 ? 8 : 0);
                    const int t = bn + wn * 32 + ni * 8 + tig * 2 + (e & 1);
                    if (r < rows && t < tokens) atomicAdd(part + (size_t)t * rows + r, acc[mi][ni][e]);
                }
        __threadfence();
        __syncthreads();
        const int tile = blockIdx.y * gridDim.x + blockIdx.x;
        if (tid == 0) last = atomicAdd(counters + tile, 1) == k_split - 1;
        __syncthreads();
        if (!last) return;
        __threadfence();
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 4; ni++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int r = bm + wm * 32 + mi * 16 + g + (e >= 2 ? 8 : 0);
                    const int t = bn + wn * 32 + ni * 8 + tig * 2 + (e & 1);
                    acc[mi][ni][e] = (r < rows && t < tokens) ? atomicExch(part + (size_t)t * rows + r, 0) : 0;
                }
        if (tid == 0) counters[tile] = 0;
    }
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = bm + wm * 32 + mi * 16 + g + (e >= 2 ? 8 : 0);
                const int t = bn + wn * 32 + ni * 8 + tig * 2 + (e & 1);
                if (r < rows && t < tokens) {
                    const float s = act_scale[t];
                    const float factor = mode == 0   ? __fdiv_rn(wscale, s)
                                         : mode == 1 ? __fdiv_rn(1.0f, __fmul_rn(s, wscale))
                                                     : s;
                    float y = __fmul_rn((float)(acc[mi][ni][e] - act_sum[t]), factor);
                    if (bias) y = __fadd_rn(y, bias[r]);
                    float* o = out + (size_t)t * rows + r;
                    *o = accumulate ? __fadd_rn(*o, y) : y;
                }
            }
        }
    }
}
