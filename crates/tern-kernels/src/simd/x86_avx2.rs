//! AVX2 + FMA kernels: ternary × int8 with `vpmaddubsw` / `vpmaddwd`, f32 register tiles (weights
//! f32, or bf16 widened on the fly) and dot products with FMA, and bf16 (AVX2) / f16 (F16C) → f32
//! widening.
//!
//! Every function is compiled for `avx2,fma` (`widen_f16` also for `f16c`); [`super`] calls them only
//! when the CPU has those features. Results of the ternary kernels are bit-exact with
//! [`crate::ternary::dot_codes_scalar`]; the f32 ones differ from the scalar reference only in
//! summation order.

// The tile kernels index several const-size arrays with one loop variable on purpose: plain index
// loops over const bounds are what LLVM fully unrolls into registers (iterator adapters over arrays
// of vectors were left as calls with the accumulators on the stack).
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use super::{t2_block_offset, t2_blocks_in};
use crate::dense::DenseDType;
use crate::ternary::BLOCK;

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

/// Whole T2 blocks covered by every row and every activation (the scalar reference's `zip` rule);
/// `P` is the byte stride of a pair of blocks (64 for T2, 66 for ggml TQ2_0).
#[inline(always)]
fn block_count<const P: usize>(rows: &[&[u8]], xs: &[&[i8]]) -> usize {
    let r = rows.iter().map(|r| t2_blocks_in::<P>(r.len())).min().unwrap_or(0);
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
fn tern_tile<const R: usize, const T: usize, const P: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    let nblocks = block_count::<P>(rows, xs);
    let m3 = _mm256_set1_epi8(3);
    let ones = _mm256_set1_epi16(1);
    let mut acc32 = [[_mm256_setzero_si256(); T]; R];
    // Raw pointers and index loops over the const tile keep every accumulator in a register.
    let rp: [*const u8; R] = core::array::from_fn(|i| rows[i].as_ptr());
    let xp: [*const i8; T] = core::array::from_fn(|j| xs[j].as_ptr());
    let row_len = rows[R - 1].len();
    let mut b = 0;
    while b < nblocks {
        let group_end = (b + I16_GROUP).min(nblocks);
        let mut acc16 = [[_mm256_setzero_si256(); T]; R];
        while b < group_end {
            if T == 1 && b & 1 == 0 {
                // Decode: prefetch the rows two tiles ahead into L2 (see the AVX-512 kernel).
                for i in 0..R {
                    _mm_prefetch::<_MM_HINT_T1>(rp[i].wrapping_add(2 * R * row_len + t2_block_offset::<P>(b)).cast());
                }
            }
            for i in 0..R {
                // SAFETY: b < nblocks ≤ t2_blocks_in::<P>(rows[i].len()): the 32 bytes of block b are
                // in bounds.
                let c = unsafe { _mm256_loadu_si256(rp[i].add(t2_block_offset::<P>(b)).cast()) };
                let w0 = _mm256_and_si256(c, m3);
                let w1 = _mm256_and_si256(_mm256_srli_epi16::<2>(c), m3);
                let w2 = _mm256_and_si256(_mm256_srli_epi16::<4>(c), m3);
                let w3 = _mm256_and_si256(_mm256_srli_epi16::<6>(c), m3);
                for j in 0..T {
                    // SAFETY: b < nblocks ≤ xs[j].len() / 128: bytes 128b .. 128b + 128 are in bounds.
                    let (x0, x1, x2, x3) = unsafe {
                        let p = xp[j].add(b * BLOCK);
                        (
                            _mm256_loadu_si256(p.cast()),
                            _mm256_loadu_si256(p.add(32).cast()),
                            _mm256_loadu_si256(p.add(64).cast()),
                            _mm256_loadu_si256(p.add(96).cast()),
                        )
                    };
                    let p01 = _mm256_add_epi16(_mm256_maddubs_epi16(w0, x0), _mm256_maddubs_epi16(w1, x1));
                    let p23 = _mm256_add_epi16(_mm256_maddubs_epi16(w2, x2), _mm256_maddubs_epi16(w3, x3));
                    acc16[i][j] = _mm256_add_epi16(acc16[i][j], _mm256_add_epi16(p01, p23));
                }
            }
            b += 1;
        }
        for i in 0..R {
            for j in 0..T {
                acc32[i][j] = _mm256_add_epi32(acc32[i][j], _mm256_madd_epi16(acc16[i][j], ones));
            }
        }
    }
    for i in 0..R {
        for j in 0..T {
            out[i * T + j] = hsum_epi32(acc32[i][j]);
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
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn ternary_tile(pair_stride: usize, rows: &[&[u8]], xs: &[&[i8]], out: &mut [i32]) {
    let out = &mut out[..rows.len() * xs.len()];
    if pair_stride == super::TQ2_PAIR {
        tile_shapes!(tern_tile_tq2, rows, xs, out; (4, 1), (2, 1), (2, 2), (1, 1), (1, 2), (1, 3), (1, 4));
        for (i, row) in rows.iter().enumerate() {
            for (j, x) in xs.iter().enumerate() {
                let k = i * xs.len() + j;
                tern_tile_tq2::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
            }
        }
        return;
    }
    tile_shapes!(tern_tile_t2, rows, xs, out; (4, 1), (2, 1), (2, 2), (1, 1), (1, 2), (1, 3), (1, 4));
    for (i, row) in rows.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            tern_tile_t2::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
        }
    }
}

/// [`tern_tile`] over T2 rows (32-byte blocks back to back).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tern_tile_t2<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    tern_tile::<R, T, { super::T2_PAIR }>(rows, xs, out)
}

/// [`tern_tile`] over ggml TQ2_0 rows (pairs of T2 blocks 66 bytes apart).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tern_tile_tq2<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    tern_tile::<R, T, { super::TQ2_PAIR }>(rows, xs, out)
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

/// T1 blocks whose `vpmaddubsw` results are summed in i16 before widening to i32. Bound: codes are
/// at most 2 (every byte decodes to digits ≤ 2) and `|x| ≤ 128`, so one `vpmaddubsw` lane is at most
/// 512 in magnitude; a block adds ten of them (two 32-byte halves × five digit planes) to each lane:
/// `6 · 10 · 512 = 30720 ≤ 32767`.
const T1_I16_GROUP: usize = 6;
const _: () = assert!(T1_I16_GROUP * 10 * 512 <= i16::MAX as usize);

/// `Σ code·x` for an `R × T` tile of T1 rows (64-byte blocks of 320 weights) and tokens.
///
/// Digits are decoded arithmetically as ggml's AVX2 TQ1_0 kernel does: `q·3^n mod 256` with byte
/// adds (`3q = q + q + q`), then `(q'·3) >> 8` as `avg(a, avg(a, 0)) >> 6` with `a = q' ∸ 1`
/// (exhaustively equal for all 256 bytes), masked to 2 bits.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn t1_tile_k<const R: usize, const T: usize>(rows: &[&[u8]; R], xs: &[&[i8]; T], out: &mut [i32]) {
    use crate::ternary::{T1_BLOCK, T1_BLOCK_BYTES};
    let r = rows.iter().map(|r| r.len() / T1_BLOCK_BYTES).min().unwrap_or(0);
    let nblocks = r.min(xs.iter().map(|x| x.len() / T1_BLOCK).min().unwrap_or(0));
    let one = _mm256_set1_epi8(1);
    let m3 = _mm256_set1_epi8(3);
    let zero = _mm256_setzero_si256();
    let ones16 = _mm256_set1_epi16(1);
    let times3 = |v: __m256i| _mm256_add_epi8(v, _mm256_add_epi8(v, v));
    let digit = |v: __m256i| {
        let a = _mm256_subs_epu8(v, one);
        let a = _mm256_avg_epu8(a, _mm256_avg_epu8(a, zero));
        _mm256_and_si256(_mm256_srli_epi16::<6>(a), m3)
    };
    let mut acc32 = [[_mm256_setzero_si256(); T]; R];
    let rp: [*const u8; R] = core::array::from_fn(|i| rows[i].as_ptr());
    let xp: [*const i8; T] = core::array::from_fn(|j| xs[j].as_ptr());
    let mut b = 0;
    while b < nblocks {
        let group_end = (b + T1_I16_GROUP).min(nblocks);
        let mut acc16 = [[_mm256_setzero_si256(); T]; R];
        while b < group_end {
            for half in 0..2 {
                for i in 0..R {
                    // SAFETY: b < nblocks ≤ rows[i].len() / 64: bytes 64b + 32·half .. + 32 are in bounds.
                    let mut qn = unsafe { _mm256_loadu_si256(rp[i].add(b * T1_BLOCK_BYTES + 32 * half).cast()) };
                    for n in 0..5 {
                        let d = digit(qn);
                        for j in 0..T {
                            // SAFETY: b < nblocks ≤ xs[j].len() / 320: bytes 320b + 64n + 32·half .. + 32
                            // are in bounds.
                            let xv = unsafe { _mm256_loadu_si256(xp[j].add(b * T1_BLOCK + 64 * n + 32 * half).cast()) };
                            acc16[i][j] = _mm256_add_epi16(acc16[i][j], _mm256_maddubs_epi16(d, xv));
                        }
                        qn = times3(qn);
                    }
                }
            }
            b += 1;
        }
        for i in 0..R {
            for j in 0..T {
                acc32[i][j] = _mm256_add_epi32(acc32[i][j], _mm256_madd_epi16(acc16[i][j], ones16));
            }
        }
    }
    for i in 0..R {
        for j in 0..T {
            out[i * T + j] = hsum_epi32(acc32[i][j]);
        }
    }
}

/// `Σ code·x` for every pair of T1 `rows` and int8 activations `xs`: `out[i · xs.len() + j]`, over
/// the whole blocks present in every row and activation (like the scalar reference).
///
/// # Panics
/// If `out` is shorter than `rows.len() · xs.len()`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn t1_tile(rows: &[&[u8]], xs: &[&[i8]], out: &mut [i32]) {
    let out = &mut out[..rows.len() * xs.len()];
    tile_shapes!(t1_tile_k, rows, xs, out; (2, 1), (1, 1), (1, 2), (1, 3), (1, 4));
    for (i, row) in rows.iter().enumerate() {
        for (j, x) in xs.iter().enumerate() {
            let k = i * xs.len() + j;
            t1_tile_k::<1, 1>(&[*row], &[*x], &mut out[k..k + 1]);
        }
    }
}

/// [`crate::act::quantize_i8_scalar`] with 8 lanes (see the AVX-512 version for the exactness
/// argument); the tail of fewer than 8 values runs the scalar code with the same scale. `out.len()`
/// must equal `x.len()`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn quantize_i8(x: &[f32], out: &mut [i8]) -> crate::act::ActScale {
    let n = x.len().min(out.len());
    let px = x.as_ptr();
    let absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let mut m = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n ≤ x.len().
        let v = unsafe { _mm256_loadu_ps(px.add(i)) };
        // maxps returns its second operand when either is NaN: NaN inputs leave `m` unchanged.
        m = _mm256_max_ps(_mm256_and_ps(v, absmask), m);
        i += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    let mut max = lanes.iter().fold(0f32, |a, &b| a.max(b));
    for &v in &x[i..n] {
        max = max.max(v.abs());
    }
    let scale = 127.0f32 / max.max(1e-5);
    let sv = _mm256_set1_ps(scale);
    let (lo, hi) = (_mm256_set1_epi32(-128), _mm256_set1_epi32(127));
    let mut sum = _mm256_setzero_si256();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 ≤ n ≤ x.len().
        let v = unsafe { _mm256_loadu_ps(px.add(i)) };
        let p = _mm256_mul_ps(v, sv);
        let ok = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_ORD_Q>(p, p));
        let q = _mm256_and_si256(_mm256_cvtps_epi32(p), ok);
        let q = _mm256_max_epi32(_mm256_min_epi32(q, hi), lo);
        sum = _mm256_add_epi32(sum, q);
        let mut b = [0i32; 8];
        // SAFETY: `b` holds 8 i32.
        unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), q) };
        for (o, v) in out[i..i + 8].iter_mut().zip(b) {
            *o = v as i8;
        }
        i += 8;
    }
    let mut total = hsum_epi32(sum);
    for (o, &v) in out[i..n].iter_mut().zip(&x[i..n]) {
        let q = (v * scale).round_ties_even().clamp(-128.0, 127.0) as i8;
        total += q as i32;
        *o = q;
    }
    crate::act::ActScale { scale, sum: total }
}

/// Int8 block dot products for an `R × T` tile (see [`crate::int8`]): `vpmaddubsw` of `|q_w|` with
/// `vpsignb`-signed activations (pairs ≤ 2·127·127, no saturation), widened per 32 bytes with
/// `vpmaddwd`, converted to f32 and scaled by `s_w · s_x`.
#[target_feature(enable = "avx2,fma")]
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
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for b in 0..nb {
        if T == 1 {
            for i in 0..R {
                _mm_prefetch::<_MM_HINT_T1>(wp[i].wrapping_add(4 * R * row_len + b * I8_BLOCK).cast());
            }
        }
        let mut x0 = [_mm256_setzero_si256(); T];
        let mut x1 = [_mm256_setzero_si256(); T];
        let mut sx = [_mm256_setzero_ps(); T];
        for j in 0..T {
            // SAFETY: b < nb ≤ xq[j].len() / 64: bytes 64b .. 64b + 64 are in bounds.
            unsafe {
                x0[j] = _mm256_loadu_si256(xp[j].add(b * I8_BLOCK).cast());
                x1[j] = _mm256_loadu_si256(xp[j].add(b * I8_BLOCK + 32).cast());
            }
            sx[j] = _mm256_set1_ps(xs[j][b]);
        }
        for i in 0..R {
            // SAFETY: b < nb ≤ wq[i].len() / 64: bytes 64b .. 64b + 64 are in bounds.
            let (w0, w1) = unsafe {
                (
                    _mm256_loadu_si256(wp[i].add(b * I8_BLOCK).cast()),
                    _mm256_loadu_si256(wp[i].add(b * I8_BLOCK + 32).cast()),
                )
            };
            let (a0, a1) = (_mm256_abs_epi8(w0), _mm256_abs_epi8(w1));
            let sw = _mm256_set1_ps(ws[i][b]);
            for j in 0..T {
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(x0[j], w0)), ones);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(x1[j], w1)), ones);
                let d = _mm256_cvtepi32_ps(_mm256_add_epi32(p0, p1));
                acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(d, sw), sx[j], acc[i][j]);
            }
        }
    }
    for i in 0..R {
        for j in 0..T {
            out[i * T + j] = hsum_ps(acc[i][j]);
        }
    }
}

/// `out[i · xq.len() + j]` = the int8 block dot product of row `i` and token `j`.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
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
        (4, 1) => go!(4, 1),
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
