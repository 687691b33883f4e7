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

use core::arch::x86_64::*;

use crate::dense::DenseDType;
use crate::ternary::{BLOCK, BLOCK_BYTES};

/// Whole T2 blocks covered by every row and every activation (the scalar reference's `zip` rule).
#[inline(always)]
fn block_count(rows: &[&[u8]], xs: &[&[i8]]) -> usize {
    let r = rows.iter().map(|r| r.len() / BLOCK_BYTES).min().unwrap_or(0);
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
fn tern_tile<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    let nblocks = block_count(rows, xs);
    let m01 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C));
    let m23 = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x30), _mm256_set1_epi8(0xC0u8 as i8));
    let sh01 = _mm512_inserti64x4::<1>(_mm512_set1_epi32(0), _mm256_set1_epi32(2));
    let sh23 = _mm512_inserti64x4::<1>(_mm512_set1_epi32(4), _mm256_set1_epi32(6));
    let mut total = [[0i64; T]; R];
    let mut b = 0;
    while b < nblocks {
        let end = (b + FLUSH_BLOCKS).min(nblocks);
        let mut acc01 = [[_mm512_setzero_si512(); T]; R];
        let mut acc23 = [[_mm512_setzero_si512(); T]; R];
        while b < end {
            let mut x01 = [_mm512_setzero_si512(); T];
            let mut x23 = [_mm512_setzero_si512(); T];
            for ((lo, hi), x) in x01.iter_mut().zip(x23.iter_mut()).zip(xs) {
                // SAFETY: b < nblocks ≤ x.len() / 128, so bytes 128b .. 128b + 128 of `x` are in
                // bounds; the loads are unaligned.
                unsafe {
                    let p = x.as_ptr().add(b * BLOCK);
                    *lo = _mm512_loadu_si512(p.cast());
                    *hi = _mm512_loadu_si512(p.add(64).cast());
                }
            }
            for ((a01, a23), row) in acc01.iter_mut().zip(acc23.iter_mut()).zip(rows) {
                // SAFETY: b < nblocks ≤ row.len() / 32, so bytes 32b .. 32b + 32 of `row` are in bounds.
                let c = unsafe { _mm256_loadu_si256(row.as_ptr().add(b * BLOCK_BYTES).cast()) };
                let c = _mm512_broadcast_i64x4(c);
                let w01 = _mm512_and_si512(c, m01);
                let w23 = _mm512_and_si512(c, m23);
                for (((a, z), lo), hi) in a01.iter_mut().zip(a23.iter_mut()).zip(&x01).zip(&x23) {
                    *a = _mm512_dpbusd_epi32(*a, w01, *lo);
                    *z = _mm512_dpbusd_epi32(*z, w23, *hi);
                }
            }
            b += 1;
        }
        // After the shifts a lane holds at most FLUSH_BLOCKS · 4 · 3 · 128 < 2^25 in magnitude, so
        // the sum of the 2 × 16 lanes fits an i32 easily.
        for ((tot_r, a01), a23) in total.iter_mut().zip(&acc01).zip(&acc23) {
            for ((tot, a), z) in tot_r.iter_mut().zip(a01).zip(a23) {
                let v = _mm512_add_epi32(_mm512_srav_epi32(*a, sh01), _mm512_srav_epi32(*z, sh23));
                *tot += _mm512_reduce_add_epi32(v) as i64;
            }
        }
    }
    for (o, tot) in out.chunks_exact_mut(T).zip(&total) {
        for (o, tot) in o.iter_mut().zip(tot) {
            // The exact sum modulo 2^32, as the scalar reference's wrapping i32 sum.
            *o = *tot as i32;
        }
    }
}

/// `Σ code·x` for every pair of `rows` (packed T2 rows) and `xs` (int8 activations):
/// `out[i · xs.len() + j]`. Covers `min(len / 32, len / 128)` whole blocks like the scalar reference.
///
/// # Panics
/// If `out` is shorter than `rows.len() · xs.len()`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI (and the AVX2, FMA and F16C they imply).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn ternary_tile(rows: &[&[u8]], xs: &[&[i8]], out: &mut [i32]) {
    let out = &mut out[..rows.len() * xs.len()];
    tile_shapes!(tern_tile, rows, xs, out; (8, 1), (2, 1), (2, 2), (2, 3), (2, 4), (1, 1), (1, 2), (1, 3), (1, 4));
    for (i, row) in rows.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            tern_tile::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
        }
    }
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
