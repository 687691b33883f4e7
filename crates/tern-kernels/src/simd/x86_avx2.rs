//! AVX2 + FMA kernels: ternary × int8 with `vpmaddubsw` / `vpmaddwd`, f32 register tiles (weights
//! f32, or bf16 widened on the fly) and dot products with FMA, and bf16 (AVX2) / f16 (F16C) → f32
//! widening.
//!
//! Every function is compiled for `avx2,fma` (`widen_f16` also for `f16c`); [`super`] calls them only
//! when the CPU has those features. Results of the ternary kernels are bit-exact with
//! [`crate::ternary::dot_codes_scalar`]; the f32 ones differ from the scalar reference only in
//! summation order.

use core::arch::x86_64::*;

use crate::dense::DenseDType;
use crate::ternary::{BLOCK, BLOCK_BYTES};

/// Blocks whose `vpmaddubsw` results are summed in i16 before widening to i32.
///
/// Bound: a code is a 2-bit field, so `0 ≤ c ≤ 3` (valid matrices only hold 0..=2, but the bound
/// holds for any byte), and `-128 ≤ x ≤ 127`, so `|c·x| ≤ 384`. Each `vpmaddubsw` lane adds two
/// such products: `|·| ≤ 768` (far from its i16 saturation at 32767). A block contributes four of
/// them (lanes 0..3) to each i16 accumulator lane: `≤ 3072`. Over `I16_GROUP = 8` blocks the
/// accumulator stays within `8 · 3072 = 24576 < 32767`, so no i16 add ever wraps and the sum is exact
/// before `vpmaddwd` with ones widens adjacent pairs to i32 (`≤ 49152`, exact).
const I16_GROUP: usize = 8;
const _: () = assert!(I16_GROUP * 4 * 2 * 3 * 128 <= i16::MAX as usize);

/// Whole T2 blocks covered by every row and every activation (the scalar reference's `zip` rule).
#[inline(always)]
fn block_count(rows: &[&[u8]], xs: &[&[i8]]) -> usize {
    let r = rows.iter().map(|r| r.len() / BLOCK_BYTES).min().unwrap_or(0);
    let x = xs.iter().map(|x| x.len() / BLOCK).min().unwrap_or(0);
    r.min(x)
}

/// Horizontal sum of eight i32 lanes (wrapping, like the lane adds before it).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Horizontal sum of eight f32 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// `Σ code·x` for an `R × T` tile of rows and tokens, `out[i·T + j]` for row `i`, token `j`.
///
/// Lane `l` of a 32-byte block is `(bytes >> 2l) & 3` (a 16-bit shift: bits that cross into a byte
/// from its neighbour land above bit 1 and are masked off), 32 codes in line with the 32
/// activations `x[128b + 32l ..]`. `vpmaddubsw` (unsigned codes × signed activations) gives i16 pair
/// sums, accumulated in i16 for [`I16_GROUP`] blocks (see its bound) and then widened with `vpmaddwd`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tern_tile<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    let nblocks = block_count(rows, xs);
    let m3 = _mm256_set1_epi8(3);
    let ones = _mm256_set1_epi16(1);
    let mut acc32 = [[_mm256_setzero_si256(); T]; R];
    let mut b = 0;
    while b < nblocks {
        let group_end = (b + I16_GROUP).min(nblocks);
        let mut acc16 = [[_mm256_setzero_si256(); T]; R];
        while b < group_end {
            for (a16_r, row) in acc16.iter_mut().zip(rows) {
                // SAFETY: b < nblocks ≤ row.len() / 32: bytes 32b .. 32b + 32 are in bounds.
                let c = unsafe { _mm256_loadu_si256(row.as_ptr().add(b * BLOCK_BYTES).cast()) };
                let w0 = _mm256_and_si256(c, m3);
                let w1 = _mm256_and_si256(_mm256_srli_epi16::<2>(c), m3);
                let w2 = _mm256_and_si256(_mm256_srli_epi16::<4>(c), m3);
                let w3 = _mm256_and_si256(_mm256_srli_epi16::<6>(c), m3);
                for (a, x) in a16_r.iter_mut().zip(xs) {
                    // SAFETY: b < nblocks ≤ x.len() / 128: bytes 128b .. 128b + 128 are in bounds.
                    let (x0, x1, x2, x3) = unsafe {
                        let p = x.as_ptr().add(b * BLOCK);
                        (
                            _mm256_loadu_si256(p.cast()),
                            _mm256_loadu_si256(p.add(32).cast()),
                            _mm256_loadu_si256(p.add(64).cast()),
                            _mm256_loadu_si256(p.add(96).cast()),
                        )
                    };
                    let p01 = _mm256_add_epi16(_mm256_maddubs_epi16(w0, x0), _mm256_maddubs_epi16(w1, x1));
                    let p23 = _mm256_add_epi16(_mm256_maddubs_epi16(w2, x2), _mm256_maddubs_epi16(w3, x3));
                    *a = _mm256_add_epi16(*a, _mm256_add_epi16(p01, p23));
                }
            }
            b += 1;
        }
        for (a32_r, a16_r) in acc32.iter_mut().zip(&acc16) {
            for (a32, a16) in a32_r.iter_mut().zip(a16_r) {
                *a32 = _mm256_add_epi32(*a32, _mm256_madd_epi16(*a16, ones));
            }
        }
    }
    for (o, a) in out.chunks_exact_mut(T).zip(&acc32) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = hsum_epi32(*a);
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
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn ternary_tile(rows: &[&[u8]], xs: &[&[i8]], out: &mut [i32]) {
    let out = &mut out[..rows.len() * xs.len()];
    tile_shapes!(tern_tile, rows, xs, out; (4, 1), (2, 1), (2, 2), (1, 1), (1, 2), (1, 3), (1, 4));
    for (i, row) in rows.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            tern_tile::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
        }
    }
}

/// Load mask (sign bit set) of the first `n` (≤ 8) i32 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn mask8(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Weight storage codes for the `DT` parameter of [`f32_tile`].
const DT_F32: u8 = 0;
const DT_BF16: u8 = 1;

/// Eight weights of storage type `DT` starting at element `i` of `p`, widened to f32 (exactly).
///
/// # Safety
/// Elements `i .. i + 8` must be readable at `p` (4 bytes each for f32, 2 for bf16).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn load_w<const DT: u8>(p: *const u8, i: usize) -> __m256 {
    // SAFETY: the caller guarantees elements i .. i + 8 are in bounds; loads are unaligned.
    unsafe {
        match DT {
            DT_F32 => _mm256_loadu_ps(p.add(4 * i).cast()),
            _ => {
                let h = _mm_loadu_si128(p.add(2 * i).cast());
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
    }
}

/// `out[i·T + j] = Σ_k W_i[k] · x_j[k]` for `k < n`, where `ws[i]` holds row `i`'s weights as
/// little-endian values of storage type `DT` and `n` is the shortest length.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn f32_tile<const R: usize, const T: usize, const DT: u8>(ws: &[&[u8]; R], xs: &[&[f32]; T], out: &mut [f32]) {
    let size = if DT == DT_F32 { 4 } else { 2 };
    let n = xs.iter().map(|x| x.len()).chain(ws.iter().map(|w| w.len() / size)).min().unwrap_or(0);
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut i = 0;
    while i + 8 <= n {
        let mut xv = [_mm256_setzero_ps(); T];
        for (v, x) in xv.iter_mut().zip(xs) {
            // SAFETY: i + 8 ≤ n ≤ x.len().
            *v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
        }
        for (acc_r, w) in acc.iter_mut().zip(ws) {
            // SAFETY: i + 8 ≤ n ≤ w.len() / size.
            let wv = unsafe { load_w::<DT>(w.as_ptr(), i) };
            for (a, v) in acc_r.iter_mut().zip(&xv) {
                *a = _mm256_fmadd_ps(wv, *v, *a);
            }
        }
        i += 8;
    }
    if i < n {
        // Tail: activations by masked load, weights widened into a zero-padded stack buffer.
        let m = mask8(n - i);
        let mut xv = [_mm256_setzero_ps(); T];
        for (v, x) in xv.iter_mut().zip(xs) {
            // SAFETY: `vmaskmovps` reads only the lanes i .. n < x.len() selected by the mask and
            // never faults on the others.
            *v = unsafe { _mm256_maskload_ps(x.as_ptr().add(i), m) };
        }
        for (acc_r, w) in acc.iter_mut().zip(ws) {
            let mut tail = [0f32; 8];
            let dtype = if DT == DT_F32 { DenseDType::F32 } else { DenseDType::BF16 };
            crate::dense::widen(dtype, &w[i * size..n * size], &mut tail[..n - i]);
            // SAFETY: `tail` holds 8 f32s.
            let wv = unsafe { _mm256_loadu_ps(tail.as_ptr()) };
            for (a, v) in acc_r.iter_mut().zip(&xv) {
                *a = _mm256_fmadd_ps(wv, *v, *a);
            }
        }
    }
    for (o, a) in out.chunks_exact_mut(T).zip(&acc) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = hsum_ps(*a);
        }
    }
}

/// [`f32_tile`] for f32 weights.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn f32_tile_f32<const R: usize, const T: usize>(ws: &[&[u8]; R], xs: &[&[f32]; T], out: &mut [f32]) {
    f32_tile::<R, T, DT_F32>(ws, xs, out)
}

/// [`f32_tile`] for bf16 weights.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn f32_tile_bf16<const R: usize, const T: usize>(ws: &[&[u8]; R], xs: &[&[f32]; T], out: &mut [f32]) {
    f32_tile::<R, T, DT_BF16>(ws, xs, out)
}

/// `out[i · xs.len() + j] = Σ_k W_i[k] · x_j[k]` over the shortest length, where `ws[i]` holds
/// row `i`'s weights as little-endian `dtype` values (any alignment), widened on the fly.
///
/// # Panics
/// If `out` is shorter than `ws.len() · xs.len()`, or for f16 weights (the AVX2 path widens those
/// with F16C beforehand, see [`widen_f16`]).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn dense_tile(ws: &[&[u8]], dtype: DenseDType, xs: &[&[f32]], out: &mut [f32]) {
    let out = &mut out[..ws.len() * xs.len()];
    match dtype {
        DenseDType::F32 => {
            tile_shapes!(f32_tile_f32, ws, xs, out; (4, 1), (4, 2), (3, 1), (3, 2), (2, 1), (2, 2), (1, 1), (1, 2));
        }
        DenseDType::BF16 => {
            tile_shapes!(f32_tile_bf16, ws, xs, out; (4, 1), (4, 2), (1, 1), (1, 2));
        }
        DenseDType::F16 => panic!("x86_avx2::dense_tile: f16 weights must be widened first"),
    }
    for (i, w) in ws.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            let o = &mut out[k..k + 1];
            match dtype {
                DenseDType::BF16 => f32_tile_bf16::<1, 1>(&[*w], &[*x], o),
                _ => f32_tile_f32::<1, 1>(&[*w], &[*x], o),
            }
        }
    }
}

/// f32 dot product over `min(a.len(), b.len())` elements, four 8-lane accumulators.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (u, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 8u + 8 ≤ i + 32 ≤ n ≤ both lengths.
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i + 8 * u)), _mm256_loadu_ps(pb.add(i + 8 * u))) };
            *s = _mm256_fmadd_ps(x, y, *s);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n ≤ both lengths.
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    if i < n {
        let m = mask8(n - i);
        // SAFETY: the masked loads read only elements i .. n of both slices.
        let (x, y) = unsafe { (_mm256_maskload_ps(pa.add(i), m), _mm256_maskload_ps(pb.add(i), m)) };
        acc[1] = _mm256_fmadd_ps(x, y, acc[1]);
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum_ps(s)
}

/// Widens little-endian bf16 `src` into `out` (`min(src.len() / 2, out.len())` values).
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn widen_bf16(src: &[u8], out: &mut [f32]) {
    let n = (src.len() / 2).min(out.len());
    let (ps, po) = (src.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n: bf16 values i .. i + 8 (bytes 2i .. 2i + 16 < src.len()) are read and
        // f32 lanes i .. i + 8 ≤ out.len() are written.
        unsafe {
            let h = _mm_loadu_si128(ps.add(2 * i).cast());
            let f = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)));
            _mm256_storeu_ps(po.add(i), f);
        }
        i += 8;
    }
    for (o, c) in out[i..n].iter_mut().zip(src[2 * i..2 * n].chunks_exact(2)) {
        *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
    }
}

/// Widens little-endian f16 `src` into `out` (`min(src.len() / 2, out.len())` values), exactly.
///
/// # Safety
/// The CPU must support AVX2 and FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn widen_f16(src: &[u8], out: &mut [f32]) {
    let n = (src.len() / 2).min(out.len());
    let (ps, po) = (src.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: as in `widen_bf16`.
        unsafe {
            let h = _mm_loadu_si128(ps.add(2 * i).cast());
            _mm256_storeu_ps(po.add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for (o, c) in out[i..n].iter_mut().zip(src[2 * i..2 * n].chunks_exact(2)) {
        *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}
