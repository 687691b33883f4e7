//! AVX-512 (F/BW/VL + VNNI) kernels: ternary × int8 with `vpdpbusd`, f32 register tiles (weights
//! f32, or bf16 / f16 widened on the fly) and dot products with FMA, and bf16/f16 → f32 widening.
//!
//! Every function is compiled for `avx512f,avx512bw,avx512vl,avx512vnni` (which the compiler extends
//! with the AVX2, FMA and F16C they imply); [`super`] calls them only when [`super::usable`] says the
//! CPU has all of those. Results of the ternary kernels are bit-exact with
//! [`crate::ternary::dot_codes_scalar`]; the f32 ones differ from the scalar reference only in
//! summation order.
//!
//! The AVX-512 intrinsics used here are stable since Rust 1.89.

// The tile kernels index several const-size arrays with one loop variable on purpose: plain index
// loops over const bounds are what LLVM fully unrolls into registers (iterator adapters over arrays
// of vectors were left as calls with the accumulators on the stack).
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use super::{t2_block_offset, t2_blocks_in};
use crate::dense::DenseDType;
use crate::ternary::BLOCK;

/// Whole T2 blocks covered by every row and every activation (the scalar reference's `zip` rule);
/// `P` is the byte stride of a pair of blocks (64 for T2, 66 for ggml TQ2_0).
#[inline(always)]
fn block_count<const P: usize>(rows: &[&[u8]], xs: &[&[i8]]) -> usize {
    let r = rows.iter().map(|r| t2_blocks_in::<P>(r.len())).min().unwrap_or(0);
    let x = xs.iter().map(|x| x.len() / BLOCK).min().unwrap_or(0);
    r.min(x)
}

/// Blocks accumulated in i32 lanes before they are scaled and flushed to i64 (see [`tern_tile`]).
///
/// Bound: a masked code byte is at most `0xC0 = 192` (lane 3 of code 3) and `|x| ≤ 128`, so one
/// `vpdpbusd` adds at most `4 · 192 · 128 = 98304` in magnitude to an i32 lane per block;
/// `16384 · 98304 < 2^31`, so the lanes never wrap within one flush.
const FLUSH_BLOCKS: usize = 16384;
const _: () = assert!(FLUSH_BLOCKS * 4 * 192 * 128 < i32::MAX as usize);

/// `Σ code·x` for an `R × T` tile of rows and tokens, `out[i·T + j]` for row `i`, token `j`.
///
/// A 32-byte block of codes is broadcast to both 256-bit halves of a register and masked, without
/// shifting, with `0x03 | 0x0C` (low | high half) and `0x30 | 0xC0`: the bytes then hold `c0`,
/// `4·c1`, `16·c2` and `64·c3`, where `c_l` are the codes of lane `l` (weights `32l + j`), in line
/// with the activations `x[128b .. 128b+64]` (lanes 0, 1) and `x[128b+64 .. 128b+128]` (lanes 2, 3).
/// `vpdpbusd` (unsigned bytes × signed bytes, four products per i32 lane, no saturation) accumulates
/// them into two registers per (row, token); since an i32 lane only ever receives products of one
/// half, every lane of the low/high halves of the two accumulators is a sum of products of `c0`,
/// `4·c1`, `16·c2` or `64·c3` (exact by [`FLUSH_BLOCKS`]), hence a multiple of 1, 4, 16 or 64, and a
/// per-lane arithmetic shift (`vpsravd`) scales it back exactly. Avoiding shifts in the loop keeps it
/// at one `vpdpbusd` and one `vpandq` per 64 codes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn tern_tile<const R: usize, const T: usize, const P: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    let nblocks = block_count::<P>(rows, xs);
    let m01 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C));
    let m23 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x30), _mm256_set1_epi8(0xC0u8 as i8));
    let sh01 = _mm512_inserti64x4::<1>(_mm512_set1_epi32(0), _mm256_set1_epi32(2));
    let sh23 = _mm512_inserti64x4::<1>(_mm512_set1_epi32(4), _mm256_set1_epi32(6));
    let mut total = [[0i64; T]; R];
    // Raw pointers and index loops over the const tile (no iterator adapters): LLVM keeps every
    // accumulator in a register only when the loops are plain and fully unrolled.
    let rp: [*const u8; R] = core::array::from_fn(|i| rows[i].as_ptr());
    let xp: [*const i8; T] = core::array::from_fn(|j| xs[j].as_ptr());
    let row_len = rows[R - 1].len();
    let mut b = 0;
    while b < nblocks {
        let end = (b + FLUSH_BLOCKS).min(nblocks);
        let mut acc01 = [[_mm512_setzero_si512(); T]; R];
        let mut acc23 = [[_mm512_setzero_si512(); T]; R];
        while b < end {
            let mut x01 = [_mm512_setzero_si512(); T];
            let mut x23 = [_mm512_setzero_si512(); T];
            for j in 0..T {
                // SAFETY: b < nblocks ≤ xs[j].len() / 128, so bytes 128b .. 128b + 128 of `xs[j]` are
                // in bounds; the loads are unaligned.
                unsafe {
                    let p = xp[j].add(b * BLOCK);
                    x01[j] = _mm512_loadu_si512(p.cast());
                    x23[j] = _mm512_loadu_si512(p.add(64).cast());
                }
            }
            if T == 1 && b & 1 == 0 {
                // Decode streams every weight once: fetch the same position of the rows two tiles
                // ahead (tiles are consecutive rows) into L2 while this tile computes; the eight
                // interleaved row streams of a tile alone keep the hardware prefetchers short of the
                // memory ceiling. A prefetch never faults, so running past the matrix is harmless.
                for i in 0..R {
                    _mm_prefetch::<_MM_HINT_T1>(rp[i].wrapping_add(2 * R * row_len + t2_block_offset::<P>(b)).cast());
                }
            }
            for i in 0..R {
                // SAFETY: b < nblocks ≤ t2_blocks_in::<P>(rows[i].len()): the 32 bytes of block b are
                // in bounds.
                let c = unsafe { _mm256_loadu_si256(rp[i].add(t2_block_offset::<P>(b)).cast()) };
                let c = _mm512_broadcast_i64x4(c);
                let w01 = _mm512_and_si512(c, m01);
                let w23 = _mm512_and_si512(c, m23);
                for j in 0..T {
                    acc01[i][j] = _mm512_dpbusd_epi32(acc01[i][j], w01, x01[j]);
                    acc23[i][j] = _mm512_dpbusd_epi32(acc23[i][j], w23, x23[j]);
                }
            }
            b += 1;
        }
        // After the shifts a lane holds at most FLUSH_BLOCKS · 4 · 3 · 128 < 2^25 in magnitude, so
        // the sum of the 2 × 16 lanes fits an i32 easily.
        for i in 0..R {
            for j in 0..T {
                let v = _mm512_add_epi32(_mm512_srav_epi32(acc01[i][j], sh01), _mm512_srav_epi32(acc23[i][j], sh23));
                total[i][j] += _mm512_reduce_add_epi32(v) as i64;
            }
        }
    }
    for i in 0..R {
        for j in 0..T {
            // The exact sum modulo 2^32, as the scalar reference's wrapping i32 sum.
            out[i * T + j] = total[i][j] as i32;
        }
    }
}

/// `Σ code·x` for every pair of `rows` (packed T2 rows) and `xs` (int8 activations):
/// `out[i · xs.len() + j]`, where consecutive pairs of 32-byte blocks start `pair_stride` bytes apart
/// (64: T2, 66: ggml TQ2_0). Covers the whole blocks present in every row and activation, like the
/// scalar reference.
///
/// # Panics
/// If `out` is shorter than `rows.len() · xs.len()`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn ternary_tile(pair_stride: usize, rows: &[&[u8]], xs: &[&[i8]], out: &mut [i32]) {
    let out = &mut out[..rows.len() * xs.len()];
    if pair_stride == super::TQ2_PAIR {
        tile_shapes!(tern_tile_tq2, rows, xs, out; (8, 1), (2, 1), (2, 2), (2, 3), (2, 4), (1, 1), (1, 2), (1, 3), (1, 4));
        for (i, row) in rows.iter().enumerate() {
            for (j, x) in xs.iter().enumerate() {
                let k = i * xs.len() + j;
                tern_tile_tq2::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
            }
        }
        return;
    }
    tile_shapes!(tern_tile_t2, rows, xs, out; (8, 1), (2, 1), (2, 2), (2, 3), (2, 4), (1, 1), (1, 2), (1, 3), (1, 4));
    for (i, row) in rows.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            tern_tile_t2::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
        }
    }
}

/// [`tern_tile`] over T2 rows (32-byte blocks back to back).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn tern_tile_t2<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    tern_tile::<R, T, { super::T2_PAIR }>(rows, xs, out)
}

/// [`tern_tile`] over ggml TQ2_0 rows (pairs of T2 blocks 66 bytes apart).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn tern_tile_tq2<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    tern_tile::<R, T, { super::TQ2_PAIR }>(rows, xs, out)
}

/// Sixteen-lane mask of the first `n` (< 16) lanes.
#[inline(always)]
fn mask16(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// Weight storage codes for the `DT` parameter of [`f32_tile`].
const DT_F32: u8 = 0;
const DT_BF16: u8 = 1;
const DT_F16: u8 = 2;

/// Sixteen weights of storage type `DT` starting at element `i` of `p`, widened to f32 (exactly);
/// with `mask`, only the selected lanes are read (the others are zero).
///
/// # Safety
/// The selected elements `i ..` must be readable at `p` (4 bytes each for f32, 2 for bf16 / f16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn load_w<const DT: u8>(p: *const u8, i: usize, mask: __mmask16) -> __m512 {
    // SAFETY: the caller guarantees the selected lanes are in bounds; masked-off lanes never fault.
    unsafe {
        match DT {
            DT_F32 => _mm512_maskz_loadu_ps(mask, p.add(4 * i).cast()),
            DT_BF16 => {
                let h = _mm256_maskz_loadu_epi16(mask, p.add(2 * i).cast());
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
            }
            _ => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p.add(2 * i).cast())),
        }
    }
}

/// `out[i·T + j] = Σ_k W_i[k] · x_j[k]` for `k < n`, where `ws[i]` holds row `i`'s weights as
/// little-endian values of storage type `DT` and `n` is the shortest length.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn f32_tile<const R: usize, const T: usize, const DT: u8>(ws: &[&[u8]; R], xs: &[&[f32]; T], out: &mut [f32]) {
    let size = if DT == DT_F32 { 4 } else { 2 };
    let n = xs.iter().map(|x| x.len()).chain(ws.iter().map(|w| w.len() / size)).min().unwrap_or(0);
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    // One step over elements i .. i + 16 selected by `m` (a constant full mask in the main loop,
    // which the compiler turns into plain loads).
    let mut step = |i: usize, m: __mmask16| {
        let mut xv = [_mm512_setzero_ps(); T];
        for (v, x) in xv.iter_mut().zip(xs) {
            // SAFETY: the (masked) load reads only elements i .. min(i + 16, n) ≤ x.len().
            *v = unsafe { _mm512_maskz_loadu_ps(m, x.as_ptr().add(i)) };
        }
        for (acc_r, w) in acc.iter_mut().zip(ws) {
            // SAFETY: only elements i .. min(i + 16, n) ≤ w.len() / size are selected.
            let wv = unsafe { load_w::<DT>(w.as_ptr(), i, m) };
            for (a, v) in acc_r.iter_mut().zip(&xv) {
                *a = _mm512_fmadd_ps(wv, *v, *a);
            }
        }
    };
    let mut i = 0;
    while i + 16 <= n {
        step(i, 0xFFFF);
        i += 16;
    }
    if i < n {
        step(i, mask16(n - i));
    }
    for (o, a) in out.chunks_exact_mut(T).zip(&acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = _mm512_reduce_add_ps(*a);
        }
    }
}

/// `out[i · xs.len() + j] = Σ_k W_i[k] · x_j[k]` over the shortest length, where `ws[i]` holds
/// row `i`'s weights as little-endian `dtype` values (any alignment), widened on the fly.
///
/// # Panics
/// If `out` is shorter than `ws.len() · xs.len()`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dense_tile(ws: &[&[u8]], dtype: DenseDType, xs: &[&[f32]], out: &mut [f32]) {
    let out = &mut out[..ws.len() * xs.len()];
    match dtype {
        DenseDType::F32 => {
            tile_shapes!(f32_tile_f32, ws, xs, out;
                (4, 1), (4, 2), (4, 3), (4, 4), (3, 1), (3, 2), (3, 3), (3, 4),
                (2, 1), (2, 2), (2, 3), (2, 4), (1, 1), (1, 2), (1, 3), (1, 4));
        }
        DenseDType::BF16 => {
            tile_shapes!(f32_tile_bf16, ws, xs, out; (4, 1), (4, 2), (4, 3), (4, 4), (1, 1), (1, 2), (1, 3), (1, 4));
        }
        DenseDType::F16 => {
            tile_shapes!(f32_tile_f16, ws, xs, out; (4, 1), (4, 2), (4, 3), (4, 4), (1, 1), (1, 2), (1, 3), (1, 4));
        }
    }
    for (i, w) in ws.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            let o = &mut out[k..k + 1];
            match dtype {
                DenseDType::F32 => f32_tile_f32::<1, 1>(&[*w], &[*x], o),
                DenseDType::BF16 => f32_tile_bf16::<1, 1>(&[*w], &[*x], o),
                DenseDType::F16 => f32_tile_f16::<1, 1>(&[*w], &[*x], o),
            }
        }
    }
}

/// [`f32_tile`] for f32 weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn f32_tile_f32<const R: usize, const T: usize>(ws: &[&[u8]; R], xs: &[&[f32]; T], out: &mut [f32]) {
    f32_tile::<R, T, DT_F32>(ws, xs, out)
}

/// [`f32_tile`] for bf16 weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn f32_tile_bf16<const R: usize, const T: usize>(ws: &[&[u8]; R], xs: &[&[f32]; T], out: &mut [f32]) {
    f32_tile::<R, T, DT_BF16>(ws, xs, out)
}

/// [`f32_tile`] for f16 weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn f32_tile_f16<const R: usize, const T: usize>(ws: &[&[u8]; R], xs: &[&[f32]; T], out: &mut [f32]) {
    f32_tile::<R, T, DT_F16>(ws, xs, out)
}

/// f32 dot product over `min(a.len(), b.len())` elements, four 16-lane accumulators.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (u, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16u + 16 ≤ i + 64 ≤ n ≤ both lengths.
            let (x, y) = unsafe { (_mm512_loadu_ps(pa.add(i + 16 * u)), _mm512_loadu_ps(pb.add(i + 16 * u))) };
            *s = _mm512_fmadd_ps(x, y, *s);
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: i + 16 ≤ n ≤ both lengths.
        let (x, y) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
        acc[0] = _mm512_fmadd_ps(x, y, acc[0]);
        i += 16;
    }
    if i < n {
        let m = mask16(n - i);
        // SAFETY: the masked loads read only elements i .. n of both slices.
        let (x, y) = unsafe { (_mm512_maskz_loadu_ps(m, pa.add(i)), _mm512_maskz_loadu_ps(m, pb.add(i))) };
        acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s)
}

/// Widens little-endian bf16 `src` into `out` (`min(src.len() / 2, out.len())` values).
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn widen_bf16(src: &[u8], out: &mut [f32]) {
    let n = (src.len() / 2).min(out.len());
    let (ps, po) = (src.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 ≤ n: values i .. i + 16 are in bounds of `src` (n ≤ src.len() / 2) and of `out`.
        unsafe { _mm512_storeu_ps(po.add(i), load_w::<DT_BF16>(ps, i, 0xFFFF)) };
        i += 16;
    }
    if i < n {
        let m = mask16(n - i);
        // SAFETY: only values i .. n are read (masked load) and written (masked store).
        unsafe { _mm512_mask_storeu_ps(po.add(i), m, load_w::<DT_BF16>(ps, i, m)) };
    }
}

/// Widens little-endian f16 `src` into `out` (`min(src.len() / 2, out.len())` values), exactly.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn widen_f16(src: &[u8], out: &mut [f32]) {
    let n = (src.len() / 2).min(out.len());
    let (ps, po) = (src.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 ≤ n: values i .. i + 16 are in bounds of `src` (n ≤ src.len() / 2) and of `out`.
        unsafe { _mm512_storeu_ps(po.add(i), load_w::<DT_F16>(ps, i, 0xFFFF)) };
        i += 16;
    }
    if i < n {
        let m = mask16(n - i);
        // SAFETY: only values i .. n are read (masked load) and written (masked store).
        unsafe { _mm512_mask_storeu_ps(po.add(i), m, load_w::<DT_F16>(ps, i, m)) };
    }
}

/// `Σ code·x` for every pair of T1 `rows` and int8 activations `xs`: `out[i · xs.len() + j]`, over
/// the whole blocks present in every row and activation (like the scalar reference).
///
/// # Panics
/// If `out` is shorter than `rows.len() · xs.len()`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn t1_tile(rows: &[&[u8]], xs: &[&[i8]], out: &mut [i32]) {
    let out = &mut out[..rows.len() * xs.len()];
    tile_shapes!(t1_tile_arith, rows, xs, out; (8, 1), (4, 1), (2, 1), (1, 1), (1, 2), (1, 3), (1, 4));
    for (i, row) in rows.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            t1_tile_arith::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
        }
    }
}

/// [`crate::act::quantize_i8_scalar`] with 16 lanes: `max(|v|, m)` skips NaN like `f32::max`, the
/// products are the same f32 multiplications, `vcvtps2dq` rounds to nearest even (the default
/// MXCSR mode), NaN products are zeroed and `vpmovsdb` saturates like the clamp. `out.len()` must
/// equal `x.len()`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL (and the AVX2, FMA they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn quantize_i8(x: &[f32], out: &mut [i8]) -> crate::act::ActScale {
    let n = x.len().min(out.len());
    let px = x.as_ptr();
    let po = out.as_mut_ptr();
    let absmask = _mm512_set1_epi32(0x7FFF_FFFF);
    let mut m = _mm512_setzero_ps();
    let mut i = 0;
    while i < n {
        let k = if n - i >= 16 { 0xFFFF } else { mask16(n - i) };
        // SAFETY: the masked load reads only elements i .. min(i + 16, n) of `x`.
        let v = unsafe { _mm512_maskz_loadu_ps(k, px.add(i)) };
        let a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), absmask));
        // maxps returns its second operand when either is NaN: NaN inputs leave `m` unchanged.
        m = _mm512_max_ps(a, m);
        i += 16;
    }
    let max = _mm512_reduce_max_ps(m);
    let scale = 127.0f32 / max.max(1e-5);
    let sv = _mm512_set1_ps(scale);
    let mut sum = _mm512_setzero_si512();
    let mut i = 0;
    while i < n {
        let k = if n - i >= 16 { 0xFFFF } else { mask16(n - i) };
        // SAFETY: as above.
        let v = unsafe { _mm512_maskz_loadu_ps(k, px.add(i)) };
        let p = _mm512_mul_ps(v, sv);
        let ok = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(p, p);
        let q = _mm512_maskz_cvtps_epi32(ok, p);
        let q = _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_set1_epi32(-128));
        sum = _mm512_add_epi32(sum, q);
        // SAFETY: the masked store writes only elements i .. min(i + 16, n) of `out`.
        unsafe { _mm512_mask_cvtepi32_storeu_epi8(po.add(i).cast(), k, q) };
        i += 16;
    }
    crate::act::ActScale { scale, sum: _mm512_reduce_add_epi32(sum) }
}

/// T1 blocks accumulated in i32 lanes before the flush to i64 (see [`t1_tile_arith`]): a block adds
/// at most `4 · 128 · 128` in magnitude to a lane of each digit plane's accumulator (digit bytes are
/// `64·d ≤ 128`), so 8000 blocks stay below 2^31.
const T1_FLUSH_BLOCKS: usize = 8000;
const _: () = assert!(T1_FLUSH_BLOCKS * 4 * 128 * 128 < i32::MAX as usize);

/// `Σ code·x` for an `R × T` tile of T1 rows with arithmetic digit decoding (no shuffles): digit
/// `n` of a stored byte `q` is `((q·3^n mod 256)·3) >> 8` (ggml's TQ1_0 rule); with `a = q·3^n ∸ 1`,
/// `avg(a, avg(a, 0))` has that digit in its top two bits (exhaustively true for all 256 bytes), so
/// masking with `0xC0` gives `64·digit` as an unsigned byte for `vpdpbusd`. Every lane is then a sum
/// of multiples of 64, flushed to i64 every [`T1_FLUSH_BLOCKS`] blocks and divided by 64 exactly.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn t1_tile_arith<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    use crate::ternary::{T1_BLOCK, T1_BLOCK_BYTES};
    let r = rows.iter().map(|r| r.len() / T1_BLOCK_BYTES).min().unwrap_or(0);
    let nblocks = r.min(xs.iter().map(|x| x.len() / T1_BLOCK).min().unwrap_or(0));
    let one = _mm512_set1_epi8(1);
    let top = _mm512_set1_epi8(0xC0u8 as i8);
    let zero = _mm512_setzero_si512();
    let mut total = [[0i64; T]; R];
    let rp: [*const u8; R] = core::array::from_fn(|i| rows[i].as_ptr());
    let xp: [*const i8; T] = core::array::from_fn(|j| xs[j].as_ptr());
    let mut b = 0;
    while b < nblocks {
        let end = (b + T1_FLUSH_BLOCKS).min(nblocks);
        // One accumulator per digit plane: the five `vpdpbusd` of a block are independent, so the
        // loop is not bound by their latency.
        let mut acc = [[[_mm512_setzero_si512(); 5]; T]; R];
        while b < end {
            let mut q = [_mm512_setzero_si512(); R];
            for i in 0..R {
                // SAFETY: b < nblocks ≤ rows[i].len() / 64: bytes 64b .. 64b + 64 are in bounds.
                q[i] = unsafe { _mm512_loadu_si512(rp[i].add(b * T1_BLOCK_BYTES).cast()) };
            }
            for n in 0..5 {
                let mut xv = [_mm512_setzero_si512(); T];
                for j in 0..T {
                    // SAFETY: b < nblocks ≤ xs[j].len() / 320: bytes 320b + 64n .. + 64 are in bounds.
                    xv[j] = unsafe { _mm512_loadu_si512(xp[j].add(b * T1_BLOCK + n * 64).cast()) };
                }
                for i in 0..R {
                    let a = _mm512_subs_epu8(q[i], one);
                    let d = _mm512_and_si512(_mm512_avg_epu8(a, _mm512_avg_epu8(a, zero)), top);
                    for j in 0..T {
                        acc[i][j][n] = _mm512_dpbusd_epi32(acc[i][j][n], d, xv[j]);
                    }
                    q[i] = _mm512_add_epi8(q[i], _mm512_add_epi8(q[i], q[i]));
                }
            }
            b += 1;
        }
        for i in 0..R {
            for j in 0..T {
                let mut a64 = _mm512_setzero_si512();
                for a in acc[i][j] {
                    a64 = _mm512_add_epi64(a64, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(a)));
                    a64 = _mm512_add_epi64(a64, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(a)));
                }
                // Lanes are multiples of 64 (products of 64·digit): the shift is exact.
                total[i][j] += _mm512_reduce_add_epi64(a64) >> 6;
            }
        }
    }
    for i in 0..R {
        for j in 0..T {
            out[i * T + j] = total[i][j] as i32;
        }
    }
}

/// Int8 block dot products for an `R × T` tile (see [`crate::int8`]): per 64-block, `vpdpbusd` of
/// `|q_w|` with the activations carrying `q_w`'s sign (codes are within ±127, so negation is exact),
/// converted to f32 and scaled by `s_w · s_x` into per-(row, token) f32 lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn i8_tile_k<const R: usize, const T: usize>(
    wq: &[&[i8]; R],
    ws: &[&[f32]; R],
    xq: &[&[i8]; T],
    xs: &[&[f32]; T],
    out: &mut [f32],
) {
    use crate::int8::I8_BLOCK;
    let nb = wq
        .iter()
        .map(|w| w.len() / I8_BLOCK)
        .chain(ws.iter().map(|s| s.len()))
        .chain(xq.iter().map(|x| x.len() / I8_BLOCK))
        .chain(xs.iter().map(|s| s.len()))
        .min()
        .unwrap_or(0);
    let wp: [*const i8; R] = core::array::from_fn(|i| wq[i].as_ptr());
    let xp: [*const i8; T] = core::array::from_fn(|j| xq[j].as_ptr());
    let row_len = wq[R - 1].len();
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    for b in 0..nb {
        if T == 1 {
            for i in 0..R {
                _mm_prefetch::<_MM_HINT_T1>(wp[i].wrapping_add(4 * R * row_len + b * I8_BLOCK).cast());
            }
        }
        let mut xv = [zero; T];
        let mut sx = [_mm512_setzero_ps(); T];
        for j in 0..T {
            // SAFETY: b < nb ≤ xq[j].len() / 64: bytes 64b .. 64b + 64 are in bounds.
            xv[j] = unsafe { _mm512_loadu_si512(xp[j].add(b * I8_BLOCK).cast()) };
            sx[j] = _mm512_set1_ps(xs[j][b]);
        }
        for i in 0..R {
            // SAFETY: b < nb ≤ wq[i].len() / 64: bytes 64b .. 64b + 64 are in bounds.
            let w = unsafe { _mm512_loadu_si512(wp[i].add(b * I8_BLOCK).cast()) };
            let aw = _mm512_abs_epi8(w);
            let neg = _mm512_movepi8_mask(w);
            let sw = _mm512_set1_ps(ws[i][b]);
            for j in 0..T {
                let xsg = _mm512_mask_sub_epi8(xv[j], neg, zero, xv[j]);
                let d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, aw, xsg));
                acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(d, sw), sx[j], acc[i][j]);
            }
        }
    }
    for i in 0..R {
        for j in 0..T {
            out[i * T + j] = _mm512_reduce_add_ps(acc[i][j]);
        }
    }
}

/// `out[i · xq.len() + j]` = the int8 block dot product of row `i` and token `j`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn int8_tile(wq: &[&[i8]], ws: &[&[f32]], xq: &[&[i8]], xs: &[&[f32]], out: &mut [f32]) {
    let (r, t) = (wq.len(), xq.len());
    let out = &mut out[..r * t];
    macro_rules! go {
        ($r:literal, $t:literal) => {
            if let (Ok(a), Ok(b), Ok(c), Ok(d)) = (wq.try_into(), ws.try_into(), xq.try_into(), xs.try_into()) {
                return i8_tile_k::<$r, $t>(a, b, c, d, out);
            }
        };
    }
    match (r, t) {
        (8, 1) => go!(8, 1),
        (2, 4) => go!(2, 4),
        (2, 1) => go!(2, 1),
        (1, 1) => go!(1, 1),
        (1, 2) => go!(1, 2),
        (1, 3) => go!(1, 3),
        (1, 4) => go!(1, 4),
        _ => {}
    }
    for i in 0..r {
        for j in 0..t {
            i8_tile_k::<1, 1>(&[wq[i]], &[ws[i]], &[xq[j]], &[xs[j]], &mut out[i * t + j..i * t + j + 1]);
        }
    }
}

/// `Σ code·x` of `R` T2 / TQ2_0 rows (pair stride `P`) with one token: the decode kernel. Two
/// blocks per iteration with their own accumulators (the `vpdpbusd` chains never wait on each
/// other), and the rows of the tile read front to back, so each thread streams through memory in
/// few, long runs; the rows four tiles ahead are prefetched into L2 (measured on the 2B4T shape:
/// no prefetch 11 GB/s, two tiles 15–17, four tiles 20–21, eight tiles 16–18 on two threads). Same exactness argument and
/// flush bound as [`tern_tile`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn tern_gemv<const R: usize, const P: usize>(rows: &[&[u8]; R], x: &[i8], out: &mut [i32]) {
    let nblocks = block_count::<P>(rows, &[x]);
    let m01 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C));
    let m23 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x30), _mm256_set1_epi8(0xC0u8 as i8));
    let sh01 = _mm512_inserti64x4::<1>(_mm512_set1_epi32(0), _mm256_set1_epi32(2));
    let sh23 = _mm512_inserti64x4::<1>(_mm512_set1_epi32(4), _mm256_set1_epi32(6));
    let rp: [*const u8; R] = core::array::from_fn(|i| rows[i].as_ptr());
    let xp = x.as_ptr();
    let row_len = rows[R - 1].len();
    let mut total = [0i64; R];
    let mut b = 0;
    while b < nblocks {
        let end = (b + FLUSH_BLOCKS).min(nblocks);
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        while b + 2 <= end {
            for i in 0..R {
                _mm_prefetch::<_MM_HINT_T1>(rp[i].wrapping_add(4 * R * row_len + t2_block_offset::<P>(b)).cast());
            }
            // SAFETY: b + 1 < end ≤ nblocks ≤ x.len() / 128: bytes 128b .. 128b + 256 are in bounds.
            let xv = unsafe {
                let p = xp.add(b * BLOCK);
                [0, 64, 128, 192].map(|o| _mm512_loadu_si512(p.add(o).cast()))
            };
            for i in 0..R {
                // SAFETY: b + 1 < nblocks ≤ t2_blocks_in::<P>(rows[i].len()): blocks b and b + 1 are
                // in bounds.
                let (c0, c1) = unsafe {
                    (
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(rp[i].add(t2_block_offset::<P>(b)).cast())),
                        _mm512_broadcast_i64x4(_mm256_loadu_si256(rp[i].add(t2_block_offset::<P>(b + 1)).cast())),
                    )
                };
                acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], _mm512_and_si512(c0, m01), xv[0]);
                acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], _mm512_and_si512(c0, m23), xv[1]);
                acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], _mm512_and_si512(c1, m01), xv[2]);
                acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], _mm512_and_si512(c1, m23), xv[3]);
            }
            b += 2;
        }
        if b < end {
            // SAFETY: b < nblocks ≤ x.len() / 128.
            let (x01, x23) = unsafe {
                let p = xp.add(b * BLOCK);
                (_mm512_loadu_si512(p.cast()), _mm512_loadu_si512(p.add(64).cast()))
            };
            for i in 0..R {
                // SAFETY: b < nblocks ≤ t2_blocks_in::<P>(rows[i].len()).
                let c =
                    unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(rp[i].add(t2_block_offset::<P>(b)).cast())) };
                acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], _mm512_and_si512(c, m01), x01);
                acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], _mm512_and_si512(c, m23), x23);
            }
            b += 1;
        }
        for i in 0..R {
            // Lanes of acc 0 / 2 hold multiples of 1 | 4, lanes of acc 1 / 3 multiples of 16 | 64.
            let v01 = _mm512_srav_epi32(_mm512_add_epi32(acc[i][0], acc[i][2]), sh01);
            let v23 = _mm512_srav_epi32(_mm512_add_epi32(acc[i][1], acc[i][3]), sh23);
            total[i] += _mm512_reduce_add_epi32(_mm512_add_epi32(v01, v23)) as i64;
        }
    }
    for i in 0..R {
        out[i] = total[i] as i32;
    }
}

/// [`tern_gemv`] on T2 rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn tern_gemv_t2<const R: usize>(rows: &[&[u8]; R], x: &[i8], out: &mut [i32]) {
    tern_gemv::<R, { super::T2_PAIR }>(rows, x, out)
}

/// [`tern_gemv`] on ggml TQ2_0 rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn tern_gemv_tq2<const R: usize>(rows: &[&[u8]; R], x: &[i8], out: &mut [i32]) {
    tern_gemv::<R, { super::TQ2_PAIR }>(rows, x, out)
}

/// The decode kernel for `rows.len()` ∈ {1, 2, 4, 8} rows, or `false` when that count has none.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn ternary_gemv(pair_stride: usize, rows: &[&[u8]], x: &[i8], out: &mut [i32]) -> bool {
    macro_rules! go {
        ($($r:literal),+) => {
            match rows.len() {
                $($r => {
                    if let Ok(rs) = <&[&[u8]; $r]>::try_from(rows) {
                        if pair_stride == super::TQ2_PAIR {
                            tern_gemv_tq2::<$r>(rs, x, &mut out[..$r]);
                        } else {
                            tern_gemv_t2::<$r>(rs, x, &mut out[..$r]);
                        }
                        return true;
                    }
                })+
                _ => {}
            }
        };
    }
    go!(1, 2, 4, 8);
    false
}
