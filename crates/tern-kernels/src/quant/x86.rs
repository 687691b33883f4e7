//! AVX2 (+ FMA, F16C) and AVX-512 VNNI kernels for ggml block types × int8 activations.
//!
//! Ports of the semantics of llama.cpp's x86 `ggml_vec_dot_<type>_q8_*`
//! (`ggml/src/ggml-cpu/arch/x86/quants.c`), restructured for several rows and tokens per call. Every
//! weight block is unpacked to unsigned bytes (its codes before the zero point is removed) and
//! multiplied with the signed activation codes by `vpmaddubsw` (AVX2) or `vpdpbusd` (VNNI); the zero
//! point is then removed exactly with the activation block sums, e.g. for Q4_0
//! `Σ (q − 8)·x = Σ q·x − 8·Σ x`, for Q6_K `Σ_g s_g Σ (q − 32)·x = Σ_g s_g Σ q·x − 32·Σ_g s_g·bsum_g`.
//! Sub-block scales of the k-quants are applied to the i16 pair sums with `vpmaddwd` (AVX2) or
//! `vpdpwssd` (VNNI). So the integer block sums equal those of [`super::scalar`] exactly, and each
//! block's f32 scale is applied with one FMA per 8 lanes: only the order of the f32 additions differs.
//!
//! Overflow bounds: activation codes are within `-127..=127` ([`super::act`]); unsigned weight codes
//! are at most 63 (Q6_K) except Q8_0, whose AVX2 path uses the sign trick of ggml (`|w| ≤ 128`, signs
//! moved onto the activations), so every `vpmaddubsw` pair sum is at most `2·128·127 = 32512` and
//! never saturates; VNNI Q8_0 uses `w + 128 ≤ 255` with `vpdpbusd`, which does not saturate. All
//! i32 lanes stay far below 2^31 (a whole 256-element super-block contributes at most
//! `256·128·63·127 < 2^28`).
//!
//! Structure: one generic body per family (`legacy` for 32-element blocks, `kquant` for 256-element
//! super-blocks) over the [`Ops`] that differ between AVX2 and VNNI, a tile of `R` rows × `T` tokens
//! (accumulated in f32 registers, summed horizontally at the end), instantiated per path by
//! `#[target_feature]` wrappers so the bodies are compiled with the right instructions.

use core::arch::x86_64::*;
use core::ptr::read_unaligned;

use super::{ActRow, Kind};

const Q4_0: u8 = Kind::Q4_0 as u8;
const Q4_1: u8 = Kind::Q4_1 as u8;
const Q5_0: u8 = Kind::Q5_0 as u8;
const Q5_1: u8 = Kind::Q5_1 as u8;
const Q8_0: u8 = Kind::Q8_0 as u8;
const Q2K: u8 = Kind::Q2K as u8;
const Q3K: u8 = Kind::Q3K as u8;
const Q4K: u8 = Kind::Q4K as u8;
const Q5K: u8 = Kind::Q5K as u8;
const Q6K: u8 = Kind::Q6K as u8;
const TQ1: u8 = Kind::TQ1 as u8;
const TQ2: u8 = Kind::TQ2 as u8;

/// The [`Kind`] with id `k`.
const fn kind(k: u8) -> Kind {
    match k {
        Q4_0 => Kind::Q4_0,
        Q4_1 => Kind::Q4_1,
        Q5_0 => Kind::Q5_0,
        Q5_1 => Kind::Q5_1,
        Q8_0 => Kind::Q8_0,
        Q2K => Kind::Q2K,
        Q3K => Kind::Q3K,
        Q4K => Kind::Q4K,
        Q5K => Kind::Q5K,
        Q6K => Kind::Q6K,
        TQ1 => Kind::TQ1,
        _ => Kind::TQ2,
    }
}

/// The instructions that differ between the AVX2 and the VNNI path.
///
/// # Safety
/// The functions may only run on a CPU with the path's features, i.e. inside the
/// `#[target_feature]` wrappers below (they are `#[inline(always)]` and get compiled there).
trait Ops {
    const VNNI: bool;
    /// `acc + Σ u·s` over each group of 4 bytes (`u` unsigned, `s` signed), exact when no adjacent
    /// pair sum `u₀s₀ + u₁s₁` leaves the i16 range (see the module docs).
    unsafe fn dot_u8i8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// `acc + a₀b₀ + a₁b₁` over each pair of i16 lanes.
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i;
}

/// AVX2: `vpmaddubsw` + `vpmaddwd`.
struct Avx2;
impl Ops for Avx2 {
    const VNNI: bool = false;
    #[inline(always)]
    unsafe fn dot_u8i8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: callers run with AVX2 (trait contract).
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))) }
    }
    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: callers run with AVX2 (trait contract).
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)) }
    }
}

/// AVX-512 VNNI (256-bit forms): `vpdpbusd`, `vpdpwssd`.
struct Vnni;
impl Ops for Vnni {
    const VNNI: bool = true;
    #[inline(always)]
    unsafe fn dot_u8i8(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: callers run with AVX-512 VL + VNNI (trait contract).
        unsafe { _mm256_dpbusd_epi32(acc, u, s) }
    }
    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: callers run with AVX-512 VL + VNNI (trait contract).
        unsafe { _mm256_dpwssd_epi32(acc, a, b) }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Runs the rows of `$w` (`$rb` bytes each) against the tokens `$xs` with `$body::<$ops, $k, R, T>`
/// in tiles of 4 rows × 1 token (decode) or 2 rows × 4 tokens (prefill), the remaining rows one at a
/// time, and other token counts one row × one token at a time.
macro_rules! rows_loop {
    ($body:ident, $ops:ty, $k:expr, $w:expr, $rb:expr, $xs:expr, $out:expr) => {{
        let (w, rb, xs, out): (&[u8], usize, &[ActRow<'_>], &mut [f32]) = ($w, $rb, $xs, $out);
        assert!(rb > 0 && w.len().is_multiple_of(rb), "quant rows: byte length");
        let (n, t) = (w.len() / rb, xs.len());
        let out = &mut out[..n * t];
        let row = |i: usize| &w[i * rb..(i + 1) * rb];
        let mut i = 0;
        if let Ok(x) = <&[ActRow<'_>; 1]>::try_from(xs) {
            while i + 4 <= n {
                $body::<$ops, { $k }, 4, 1>(&[row(i), row(i + 1), row(i + 2), row(i + 3)], x, &mut out[i..i + 4]);
                i += 4;
            }
        }
        if let Ok(x) = <&[ActRow<'_>; 4]>::try_from(xs) {
            while i + 2 <= n {
                $body::<$ops, { $k }, 2, 4>(&[row(i), row(i + 1)], x, &mut out[4 * i..4 * i + 8]);
                i += 2;
            }
            if i < n {
                $body::<$ops, { $k }, 1, 4>(&[row(i)], x, &mut out[4 * i..4 * i + 4]);
                i += 1;
            }
        }
        while i < n {
            for (j, x) in xs.iter().enumerate() {
                $body::<$ops, { $k }, 1, 1>(&[row(i)], &[*x], &mut out[i * t + j..i * t + j + 1]);
            }
            i += 1;
        }
    }};
}

/// Calls `$f::<K>` for the kind id of `$kind`, `$legacy` for 32-element types and `$kq` for
/// 256-element ones.
macro_rules! by_kind {
    ($legacy:ident, $kq:ident, $kind:expr, $($arg:expr),*) => {
        match $kind {
            Kind::Q4_0 => $legacy::<Q4_0>($($arg),*),
            Kind::Q4_1 => $legacy::<Q4_1>($($arg),*),
            Kind::Q5_0 => $legacy::<Q5_0>($($arg),*),
            Kind::Q5_1 => $legacy::<Q5_1>($($arg),*),
            Kind::Q8_0 => $legacy::<Q8_0>($($arg),*),
            Kind::Q2K => $kq::<Q2K>($($arg),*),
            Kind::Q3K => $kq::<Q3K>($($arg),*),
            Kind::Q4K => $kq::<Q4K>($($arg),*),
            Kind::Q5K => $kq::<Q5K>($($arg),*),
            Kind::Q6K => $kq::<Q6K>($($arg),*),
            Kind::TQ1 => $kq::<TQ1>($($arg),*),
            Kind::TQ2 => $kq::<TQ2>($($arg),*),
        }
    };
}

/// `out[i · xs.len() + j] = Σ W_i · x_j` for the packed rows `W_i` of `kind` in `w` (`row_bytes`
/// each) and quantized tokens `x_j`, AVX2 path.
///
/// # Panics
/// If the lengths of the rows and tokens disagree (caller bugs).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_avx2(kind: Kind, w: &[u8], row_bytes: usize, xs: &[ActRow<'_>], out: &mut [f32]) {
    by_kind!(legacy_avx2, kquant_avx2, kind, w, row_bytes, xs, out)
}

/// [`rows_avx2`] on the AVX-512 VNNI path.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn rows_vnni(kind: Kind, w: &[u8], row_bytes: usize, xs: &[ActRow<'_>], out: &mut [f32]) {
    by_kind!(legacy_vnni, kquant_vnni, kind, w, row_bytes, xs, out)
}

// One function per path and type (not inlined into the dispatch: separate code, separate profiles).

#[target_feature(enable = "avx2,fma,f16c")]
#[inline(never)]
fn legacy_avx2<const K: u8>(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: this function is compiled for and only callable with AVX2, FMA, F16C: what `Avx2` needs.
    unsafe { rows_loop!(legacy, Avx2, K, w, rb, xs, out) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline(never)]
fn kquant_avx2<const K: u8>(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: as in `legacy_avx2`.
    unsafe { rows_loop!(kquant, Avx2, K, w, rb, xs, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline(never)]
fn legacy_vnni<const K: u8>(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: compiled for and only callable with AVX-512 VL + VNNI and AVX2, FMA, F16C: what `Vnni`
    // and the shared code need.
    unsafe { rows_loop!(legacy, Vnni, K, w, rb, xs, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline(never)]
fn kquant_vnni<const K: u8>(w: &[u8], rb: usize, xs: &[ActRow<'_>], out: &mut [f32]) {
    // SAFETY: as in `legacy_vnni`.
    unsafe { rows_loop!(kquant, Vnni, K, w, rb, xs, out) }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers (inlined into the wrappers above, so they run with AVX2, FMA and F16C)
// ---------------------------------------------------------------------------------------------

/// Horizontal sum of eight f32 lanes.
///
/// # Safety
/// AVX2 (inlined into a `#[target_feature]` wrapper).
#[inline(always)]
unsafe fn hsum_ps(v: __m256) -> f32 {
    // SAFETY: AVX is available (function contract).
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }
}

/// The little-endian f16 at `p` as f32.
///
/// # Safety
/// F16C; 2 bytes readable at `p`.
#[inline(always)]
unsafe fn f16_scalar(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees the bytes and F16C; the read is unaligned.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(read_unaligned(p.cast::<u16>()))))) }
}

/// The 32 4-bit codes of 16 bytes at `p`: bytes `0..16` low nibbles, `16..32` high nibbles (the
/// element order of Q4_0 / Q4_1 / Q5_0 / Q5_1).
///
/// # Safety
/// AVX2; 16 bytes readable at `p`.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees the bytes and AVX2; the load is unaligned.
    unsafe {
        // Both halves hold the 16 bytes; the upper one is shifted right by 4 (within 64-bit lanes:
        // a byte's high nibble moves down, the next byte's low nibble moves up and is masked off).
        let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast()));
        let v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
        _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
    }
}

/// `0x10` in byte `j` where bit `j` of the little-endian u32 at `p` is set (the fifth bit of Q5_0 /
/// Q5_1 codes; ggml's `bytes_from_bits_32`).
///
/// # Safety
/// AVX2; 4 bytes readable at `p`.
#[inline(always)]
unsafe fn high_bits(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees the bytes and AVX2; the read is unaligned.
    unsafe {
        let x = _mm256_set1_epi32(read_unaligned(p.cast::<i32>()));
        // Byte j takes source byte j / 8 ...
        let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
        let bytes = _mm256_shuffle_epi8(x, shuf);
        // ... and is all ones after OR-ing every bit but bit j % 8 iff that bit is set.
        let all_but = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, all_but), _mm256_set1_epi8(-1));
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// 32 bytes at `p`.
///
/// # Safety
/// AVX; 32 bytes readable at `p`.
#[inline(always)]
unsafe fn load<P>(p: *const P) -> __m256i {
    // SAFETY: the caller guarantees the bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

// ---------------------------------------------------------------------------------------------
// 32-element blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
// ---------------------------------------------------------------------------------------------

/// Weight codes of the block at `p` as bytes in element order (unsigned, except Q8_0: signed).
///
/// # Safety
/// AVX2; a whole block of type `K` readable at `p`.
#[inline(always)]
unsafe fn legacy_codes<const K: u8>(p: *const u8) -> __m256i {
    // SAFETY: the offsets below are within the block of `K` (layouts in `super::scalar` and
    // tern-quants' `legacy.rs`), which the caller guarantees is readable.
    unsafe {
        match K {
            Q4_0 => nibbles(p.add(2)),
            Q4_1 => nibbles(p.add(4)),
            Q5_0 => _mm256_or_si256(nibbles(p.add(6)), high_bits(p.add(2))),
            Q5_1 => _mm256_or_si256(nibbles(p.add(8)), high_bits(p.add(4))),
            _ => load(p.add(2)),
        }
    }
}

/// The scales `d` and mins `m` (zero for the types without) of the `n ≤ 8` consecutive blocks of
/// `bytes` bytes at `p`, as f32 lanes `0..n` (lanes `n..8` are zero).
///
/// One gather of the u32 at the start of each block (`d` in its low half, `m` or the next two bytes
/// in its high half), then F16C.
///
/// # Safety
/// AVX2 + F16C; `n` whole blocks readable at `p`.
#[inline(always)]
unsafe fn legacy_scales(p: *const u8, bytes: usize, n: usize, min: bool) -> (__m256, __m256) {
    // SAFETY: lane i reads bytes `i · bytes .. i · bytes + 4` of block i < n (every block is at
    // least 18 bytes); masked-off lanes read nothing.
    unsafe {
        let b = bytes as i32;
        let idx = _mm256_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
        let raw = if n == 8 {
            _mm256_i32gather_epi32::<1>(p.cast(), idx)
        } else {
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            _mm256_mask_i32gather_epi32::<1>(_mm256_setzero_si256(), p.cast(), idx, mask)
        };
        let d16 = _mm256_and_si256(raw, _mm256_set1_epi32(0xFFFF));
        let m16 = if min { _mm256_srli_epi32::<16>(raw) } else { d16 };
        // [d0..d3, m0..m3 | d4..d7, m4..m7] as u16, then [d0..d7 | m0..m7].
        let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(d16, m16));
        let d = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
        let m = if min { _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(packed)) } else { _mm256_setzero_ps() };
        (d, m)
    }
}

/// The zero point `z` of type `K` removed with the activation sums: `Σ (q − z)·x = Σ q·x − z·Σ x`
/// (Q8_0 on AVX2 multiplies the signed codes directly; on VNNI it uses `q + 128`).
#[inline(always)]
fn zero_point<I: Ops, const K: u8>() -> i32 {
    match K {
        Q4_0 => 8,
        Q5_0 => 16,
        Q8_0 if I::VNNI => 128,
        _ => 0,
    }
}

/// One 32-element block of one row against T tokens: `acc[j] += s_k · Σ (q_w − z)·q_x` where `s_k`
/// is lane `k` of `s[j]` (`d_w · d_x` of the block) and `corr[j]` holds `−z · Σ q_x` in lane 0.
///
/// # Safety
/// The features of `I` (and AVX2, FMA); a block of `K` at `p`; 32 codes at every `ys[j]`.
#[inline(always)]
unsafe fn legacy_block<I: Ops, const K: u8, const T: usize>(
    p: *const u8,
    ys: &[*const i8; T],
    corr: &[__m256i; T],
    s: &[__m256; T],
    k: usize,
    acc: &mut [__m256; T],
) {
    // SAFETY: the caller guarantees the features and the bytes.
    unsafe {
        let w = legacy_codes::<K>(p);
        let lane = _mm256_set1_epi32(k as i32);
        for j in 0..T {
            let y = load(ys[j]);
            let isum = if K == Q8_0 && !I::VNNI {
                // ggml's sign trick: |w| · (x · sign w), |w| ≤ 128 as an unsigned byte.
                I::dot_u8i8(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w))
            } else if K == Q8_0 {
                // (w + 128) · x (XOR flips the sign bit), starting from −128 · Σ x.
                I::dot_u8i8(corr[j], _mm256_xor_si256(w, _mm256_set1_epi8(-128)), y)
            } else if zero_point::<I, K>() != 0 {
                I::dot_u8i8(corr[j], w, y)
            } else {
                I::dot_u8i8(_mm256_setzero_si256(), w, y)
            };
            let sk = _mm256_permutevar8x32_ps(s[j], lane);
            acc[j] = _mm256_fmadd_ps(sk, _mm256_cvtepi32_ps(isum), acc[j]);
        }
    }
}

/// Block `b` (lane `k` of the group's scales `sc`) of every row against every token.
///
/// # Safety
/// The features of `I` (and AVX2, FMA); block `b` exists in every row and token.
#[inline(always)]
unsafe fn legacy_step<I: Ops, const K: u8, const R: usize, const T: usize>(
    rows: &[&[u8]; R],
    xs: &[ActRow<'_>; T],
    b: usize,
    k: usize,
    corr: &[__m256i; T],
    sc: &[[__m256; T]; R],
    acc: &mut [[__m256; T]; R],
) {
    let bytes = kind(K).block_bytes();
    // SAFETY: the caller guarantees the features and that block b is in bounds.
    unsafe {
        let mut ys = [core::ptr::null::<i8>(); T];
        for (y, x) in ys.iter_mut().zip(xs) {
            *y = x.qs.as_ptr().add(32 * b);
        }
        for ((acc_r, sc_r), row) in acc.iter_mut().zip(sc).zip(rows) {
            legacy_block::<I, K, T>(row.as_ptr().add(b * bytes), &ys, corr, sc_r, k, acc_r);
        }
    }
}

/// The R × T tile for a 32-element type `K`: per block, `(d_w·d_x) · Σ (q_w − z)·q_x`
/// (+ `m_w · d_x·Σ q_x`), with `Σ (q_w − z)·q_x = Σ q_w·q_x − z·Σ q_x` in exact integers.
///
/// Blocks go in groups of 8: one gather converts the 8 weight scales of a row, multiplied at once
/// with the 8 activation scales; the min terms of Q4_1 / Q5_1 are one FMA per group.
///
/// # Panics
/// If the rows and tokens do not cover the same whole number of blocks.
///
/// # Safety
/// The CPU features of `I` (plus AVX2, FMA, F16C).
#[inline(always)]
unsafe fn legacy<I: Ops, const K: u8, const R: usize, const T: usize>(
    rows: &[&[u8]; R],
    xs: &[ActRow<'_>; T],
    out: &mut [f32],
) {
    let bytes = kind(K).block_bytes();
    let nb = rows.first().map_or(0, |r| r.len() / bytes);
    assert!(rows.iter().all(|r| r.len() == nb * bytes), "quant tile: row lengths");
    assert!(
        xs.iter().all(|x| x.qs.len() == nb * 32 && x.d.len() == nb && x.sums.len() == nb),
        "quant tile: activation lengths"
    );
    assert!(out.len() >= R * T, "quant tile: output length");
    let zp = zero_point::<I, K>();
    let has_min = kind(K).has_min();
    // SAFETY: the CPU features are the caller's contract. Pointer offsets: blocks b0 .. b0 + n ≤ nb
    // of each row (nb · bytes bytes, asserted); codes 32b .. 32b + 32, scales and sums b0 .. b0 + n
    // of every token (asserted lengths; the full-group loads read 8 values at b0 + 8 ≤ nb).
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        let mut accm = [[_mm256_setzero_ps(); T]; R];
        let mut b0 = 0;
        while b0 < nb {
            let n = (nb - b0).min(8);
            // Per token: the activation scales (and d·Σq for the mins) of the group, the corrections.
            let mut dy = [_mm256_setzero_ps(); T];
            let mut cm = [_mm256_setzero_ps(); T];
            let mut corr = [[_mm256_setzero_si256(); T]; 8];
            for (j, x) in xs.iter().enumerate() {
                let (d, s) = (x.d.as_ptr().add(b0), x.sums.as_ptr().add(b0));
                if n == 8 {
                    dy[j] = _mm256_loadu_ps(d);
                    if has_min {
                        cm[j] = _mm256_mul_ps(dy[j], _mm256_cvtepi32_ps(load(s)));
                    }
                } else {
                    let mut dv = [0f32; 8];
                    let mut cv = [0f32; 8];
                    for k in 0..n {
                        dv[k] = *d.add(k);
                        cv[k] = dv[k] * *s.add(k) as f32;
                    }
                    dy[j] = _mm256_loadu_ps(dv.as_ptr());
                    cm[j] = _mm256_loadu_ps(cv.as_ptr());
                }
                if zp != 0 {
                    for (k, c) in corr.iter_mut().enumerate().take(n) {
                        // |z · Σ q_x| ≤ 128 · 32 · 127 < 2^20.
                        c[j] = _mm256_setr_epi32(-zp * *s.add(k), 0, 0, 0, 0, 0, 0, 0);
                    }
                }
            }
            // Per row: the 8 weight scales times the activation scales, and the min terms.
            let mut sc = [[_mm256_setzero_ps(); T]; R];
            for ((sc_r, accm_r), row) in sc.iter_mut().zip(accm.iter_mut()).zip(rows) {
                let (dw, mw) = legacy_scales(row.as_ptr().add(b0 * bytes), bytes, n, has_min);
                for j in 0..T {
                    sc_r[j] = _mm256_mul_ps(dw, dy[j]);
                    if has_min {
                        accm_r[j] = _mm256_fmadd_ps(mw, cm[j], accm_r[j]);
                    }
                }
            }
            // Blocks outer, rows inner: the R · T accumulators are independent FMA chains.
            if n == 8 {
                for (k, c) in corr.iter().enumerate() {
                    legacy_step::<I, K, R, T>(rows, xs, b0 + k, k, c, &sc, &mut acc);
                }
            } else {
                for (k, c) in corr.iter().enumerate().take(n) {
                    legacy_step::<I, K, R, T>(rows, xs, b0 + k, k, c, &sc, &mut acc);
                }
            }
            b0 += n;
        }
        for ((o, acc_r), accm_r) in out.chunks_exact_mut(T).zip(&acc).zip(&accm) {
            for ((o, a), m) in o.iter_mut().zip(acc_r).zip(accm_r) {
                *o = hsum_ps(_mm256_add_ps(*a, *m));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 256-element super-blocks: Q2_K … Q6_K, TQ1_0, TQ2_0
// ---------------------------------------------------------------------------------------------

/// The 16 signed byte scales in `sc` (one per 16 elements) as i16 in both 128-bit halves:
/// `[s0..s7 | s0..s7]`, `[s8..s15 | s8..s15]`, for [`scales16`].
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn prep16(sc: __m128i) -> [__m256i; 2] {
    // SAFETY: AVX2 (function contract).
    unsafe {
        let s = _mm256_cvtepi8_epi16(sc);
        [_mm256_permute2x128_si256::<0x00>(s, s), _mm256_permute2x128_si256::<0x11>(s, s)]
    }
}

/// `[s_2g ×8 | s_2g+1 ×8]`: the i16 scales of the two 16-element sub-blocks of 32-element group
/// `g`, lined up with `vpmaddubsw`'s pair sums (one `vpshufb` of [`prep16`]'s output).
///
/// # Safety
/// AVX2; `g < 8`.
#[inline(always)]
unsafe fn scales16(prep: &[__m256i; 2], g: usize) -> __m256i {
    // i16 lanes 2g mod 8 (low half) and 2g + 1 mod 8 (high half), as byte pairs for vpshufb.
    let (lo, hi) = ((2 * g % 8) as i16, (2 * g % 8 + 1) as i16);
    let pick = |i: i16| (2 * i) | ((2 * i + 1) << 8);
    // SAFETY: AVX2 (function contract).
    unsafe {
        let mask = _mm256_set_m128i(_mm_set1_epi16(pick(hi)), _mm_set1_epi16(pick(lo)));
        _mm256_shuffle_epi8(prep[g / 4], mask)
    }
}

/// The 8 byte scales `0..=63` in `sc` (one per 32 elements) as i16 in both 128-bit halves, for
/// [`scales32`].
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn prep32(sc: __m128i) -> __m256i {
    // SAFETY: AVX2 (function contract).
    unsafe { _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc)) }
}

/// Scale `g` of [`prep32`]'s output in all 16 i16 lanes (one `vpshufb`).
///
/// # Safety
/// AVX2; `g < 8`.
#[inline(always)]
unsafe fn scales32(prep: __m256i, g: usize) -> __m256i {
    let i = g as i16;
    // SAFETY: AVX2 (function contract).
    unsafe { _mm256_shuffle_epi8(prep, _mm256_set1_epi16((2 * i) | ((2 * i + 1) << 8))) }
}

/// The 6-bit scales and mins of a Q4_K / Q5_K block (12 bytes at `p`), 8 bytes each (ggml's
/// `utmp` shuffle in `ggml_vec_dot_q4_K_q8_K`, equivalent to `get_scale_min_k4`).
///
/// # Safety
/// 12 bytes readable at `p`.
#[inline(always)]
unsafe fn k4_scales(p: *const u8) -> (u64, u64) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    // SAFETY: the caller guarantees the 12 bytes; the reads are unaligned little-endian u32s.
    let (u0, u1, u2) = unsafe {
        (
            read_unaligned(p.cast::<u32>()),
            read_unaligned(p.add(4).cast::<u32>()),
            read_unaligned(p.add(8).cast::<u32>()),
        )
    };
    let sc_lo = u0 & KMASK1;
    let sc_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let m_lo = u1 & KMASK1;
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    (u64::from(sc_lo) | (u64::from(sc_hi) << 32), u64::from(m_lo) | (u64::from(m_hi) << 32))
}

/// Per-token inputs of one super-block: code pointers (256 readable bytes each) and the 16 bsums.
struct KActs<const T: usize> {
    ys: [*const i8; T],
    bsums: [__m256i; T],
}

impl<const T: usize> KActs<T> {
    /// Codes `off .. off + 32` of token `j`.
    ///
    /// # Safety
    /// AVX; `off + 32 ≤ 256`.
    #[inline(always)]
    unsafe fn y(&self, j: usize, off: usize) -> __m256i {
        // SAFETY: `ys[j]` points to 256 readable codes (constructor's contract) and off + 32 ≤ 256.
        unsafe { load(self.ys[j].add(off)) }
    }
}

/// Adds `Σ_g s_g · Σ_{e∈g} q_e·x_e` of 32 unsigned codes `q` (group `g32` of the super-block, i16
/// scales `s` lined up with the pair sums) to every token's `isum`.
///
/// # Safety
/// The features of `I`; `g32 < 8`.
#[inline(always)]
unsafe fn group<I: Ops, const T: usize>(q: __m256i, s: __m256i, g32: usize, a: &KActs<T>, isum: &mut [__m256i; T]) {
    // SAFETY: the features are the caller's contract; 32·g32 + 32 ≤ 256.
    unsafe {
        for (j, acc) in isum.iter_mut().enumerate() {
            *acc = I::dot_i16(*acc, _mm256_maddubs_epi16(q, a.y(j, 32 * g32)), s);
        }
    }
}

/// One super-block of `K` at `p` against T tokens: the integer sums `isum[0] + isum[1]` (the
/// `Σ sc·q·x` part, zero points removed; two accumulators for shorter dependency chains) and `msum` (the `Σ m·x` part of the types with mins), returning `(d, dmin)`.
///
/// # Safety
/// The features of `I`; a whole block of `K` readable at `p`.
#[inline(always)]
unsafe fn superblock<I: Ops, const K: u8, const T: usize>(
    p: *const u8,
    a: &KActs<T>,
    isum: &mut [[__m256i; T]; 2],
    msum: &mut [__m256i; T],
) -> (f32, f32) {
    // SAFETY: the offsets below stay within the block of `K` (layouts in `super::scalar` and
    // tern-quants' `kquants.rs` / `ternary.rs`), readable by the caller's contract; activation
    // offsets are < 256 (see `KActs::y`).
    unsafe {
        let zero = _mm256_setzero_si256();
        let m3 = _mm256_set1_epi8(3);
        let m4 = _mm256_set1_epi8(0x0F);
        match K {
            Q2K => {
                // scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
                let raw = _mm_loadu_si128(p.cast());
                let sc = prep16(_mm_and_si128(raw, _mm_set1_epi8(0x0F)));
                let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), _mm_set1_epi8(0x0F)));
                for (m, bs) in msum.iter_mut().zip(&a.bsums) {
                    *m = _mm256_madd_epi16(mins, *bs);
                }
                for n in 0..2 {
                    let q = load(p.add(16 + 32 * n));
                    let codes = [
                        _mm256_and_si256(q, m3),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(q), m3),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m3),
                        _mm256_and_si256(_mm256_srli_epi16::<6>(q), m3),
                    ];
                    for (k, c) in codes.into_iter().enumerate() {
                        group::<I, T>(c, scales16(&sc, 4 * n + k), 4 * n + k, a, &mut isum[k & 1]);
                    }
                }
                (f16_scalar(p.add(80)), f16_scalar(p.add(82)))
            }
            Q3K => {
                // hmask[32], qs[64], scales[12], d. Codes q + 4·h − 4, scales sc − 32.
                let sc = super::scalar::q3k_scales(core::slice::from_raw_parts(p.add(96), 12));
                let sc = _mm_sub_epi8(_mm_loadu_si128(sc.as_ptr().cast()), _mm_set1_epi8(32));
                let all = _mm256_cvtepi8_epi16(sc);
                let sc = prep16(sc);
                for (acc, bs) in isum[0].iter_mut().zip(&a.bsums) {
                    // − 4 · Σ_g s_g · bsum_g
                    *acc = _mm256_sub_epi32(zero, _mm256_slli_epi32::<2>(_mm256_madd_epi16(all, *bs)));
                }
                let mut h = load(p);
                let four = _mm256_set1_epi8(4);
                for n in 0..2 {
                    let q = load(p.add(32 + 32 * n));
                    let codes = [
                        _mm256_and_si256(q, m3),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(q), m3),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m3),
                        _mm256_and_si256(_mm256_srli_epi16::<6>(q), m3),
                    ];
                    for (k, c) in codes.into_iter().enumerate() {
                        // Bit 4n + k of hmask: bit 0 of `h` (shifted down once per group), moved to bit 2.
                        let c = _mm256_or_si256(c, _mm256_and_si256(_mm256_slli_epi16::<2>(h), four));
                        h = _mm256_srli_epi16::<1>(h);
                        group::<I, T>(c, scales16(&sc, 4 * n + k), 4 * n + k, a, &mut isum[k & 1]);
                    }
                }
                (f16_scalar(p.add(108)), 0.0)
            }
            Q4K | Q5K => {
                // d, dmin, scales[12], (Q5_K: qh[32]), qs[128].
                let (sc, mn) = k4_scales(p.add(4));
                let sc = prep32(_mm_cvtsi64_si128(sc as i64));
                let dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
                let mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128(mn as i64), dup));
                for (m, bs) in msum.iter_mut().zip(&a.bsums) {
                    // Σ_g m_{g/2} · bsum_g
                    *m = _mm256_madd_epi16(mins, *bs);
                }
                let qs = if K == Q5K { p.add(48) } else { p.add(16) };
                let mut h = if K == Q5K { load(p.add(16)) } else { zero };
                let m16 = _mm256_set1_epi8(16);
                for c in 0..4 {
                    let q = load(qs.add(32 * c));
                    let mut lo = _mm256_and_si256(q, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    if K == Q5K {
                        // Bits 2c and 2c + 1 of qh, moved to bit 4.
                        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16::<4>(h), m16));
                        h = _mm256_srli_epi16::<1>(h);
                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16::<4>(h), m16));
                        h = _mm256_srli_epi16::<1>(h);
                    }
                    group::<I, T>(lo, scales32(sc, 2 * c), 2 * c, a, &mut isum[0]);
                    group::<I, T>(hi, scales32(sc, 2 * c + 1), 2 * c + 1, a, &mut isum[1]);
                }
                (f16_scalar(p), f16_scalar(p.add(2)))
            }
            Q6K => {
                // ql[128], qh[64], scales[16] (i8), d. Codes q − 32.
                let sc = _mm_loadu_si128(p.add(192).cast());
                let all = _mm256_cvtepi8_epi16(sc);
                let sc = prep16(sc);
                for (acc, bs) in isum[0].iter_mut().zip(&a.bsums) {
                    // − 32 · Σ_g s_g · bsum_g
                    *acc = _mm256_sub_epi32(zero, _mm256_slli_epi32::<5>(_mm256_madd_epi16(all, *bs)));
                }
                for c in 0..2 {
                    let ql0 = load(p.add(64 * c));
                    let ql1 = load(p.add(64 * c + 32));
                    let qh = load(p.add(128 + 32 * c));
                    let codes = [
                        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3))),
                        _mm256_or_si256(
                            _mm256_and_si256(ql1, m4),
                            _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(12))),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                            _mm256_and_si256(qh, _mm256_set1_epi8(48)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                            _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(-64))),
                        ),
                    ];
                    for (k, q) in codes.into_iter().enumerate() {
                        group::<I, T>(q, scales16(&sc, 4 * c + k), 4 * c + k, a, &mut isum[k & 1]);
                    }
                }
                (f16_scalar(p.add(208)), 0.0)
            }
            TQ2 => {
                // qs[64], d. Codes t − 1: Σ (t − 1)·x = Σ t·x − Σ bsums.
                ternary_init(a, &mut isum[0]);
                for c in 0..2 {
                    let q = load(p.add(32 * c));
                    let codes = [
                        _mm256_and_si256(q, m3),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(q), m3),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m3),
                        _mm256_and_si256(_mm256_srli_epi16::<6>(q), m3),
                    ];
                    for (n, t) in codes.into_iter().enumerate() {
                        for (j, acc) in isum[n & 1].iter_mut().enumerate() {
                            *acc = I::dot_u8i8(*acc, t, a.y(j, 128 * c + 32 * n));
                        }
                    }
                }
                (f16_scalar(p.add(64)), 0.0)
            }
            _ => {
                // TQ1_0: qs[48] (5 trits per byte), qh[4] (4 trits per byte), d.
                ternary_init(a, &mut isum[0]);
                let q0 = load(p);
                let q1 = mul3(q0);
                let q2 = mul9(q0);
                let q3 = mul9(q1);
                let q4 = mul9(q2);
                for (n, v) in [q0, q1, q2, q3, q4].into_iter().enumerate() {
                    let t = trit(v);
                    for (j, acc) in isum[n & 1].iter_mut().enumerate() {
                        *acc = I::dot_u8i8(*acc, t, a.y(j, 32 * n));
                    }
                }
                let r0 = _mm256_castsi128_si256(_mm_loadu_si128(p.add(32).cast()));
                let (r1, r2) = (mul3(r0), mul9(r0));
                let (r3, r4) = (mul9(r1), mul9(r2));
                // qh: 16 bytes qh[j] · 3^n at position 4n + j (u8 products from i16 ones).
                let qh = _mm256_cvtepu8_epi16(_mm_set1_epi32(read_unaligned(p.add(48).cast::<i32>())));
                let pow = _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
                let qh = _mm256_and_si256(_mm256_mullo_epi16(qh, pow), _mm256_set1_epi16(0xFF));
                let r5 = _mm_packus_epi16(_mm256_castsi256_si128(qh), _mm256_extracti128_si256::<1>(qh));
                let rest = [
                    _mm256_set_m128i(_mm256_castsi256_si128(r1), _mm256_castsi256_si128(r0)),
                    _mm256_set_m128i(_mm256_castsi256_si128(r3), _mm256_castsi256_si128(r2)),
                    _mm256_set_m128i(r5, _mm256_castsi256_si128(r4)),
                ];
                for (n, v) in rest.into_iter().enumerate() {
                    let t = trit(v);
                    for (j, acc) in isum[(n + 1) & 1].iter_mut().enumerate() {
                        *acc = I::dot_u8i8(*acc, t, a.y(j, 160 + 32 * n));
                    }
                }
                (f16_scalar(p.add(52)), 0.0)
            }
        }
    }
}

/// Starts a ternary super-block's sums at `− Σ x` (the `− 1` of every code `t − 1`).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn ternary_init<const T: usize>(a: &KActs<T>, isum: &mut [__m256i; T]) {
    // SAFETY: AVX2 (function contract).
    unsafe {
        for (acc, bs) in isum.iter_mut().zip(&a.bsums) {
            *acc = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(*bs, _mm256_set1_epi16(1)));
        }
    }
}

/// `3·v` in every byte (mod 256).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn mul3(v: __m256i) -> __m256i {
    // SAFETY: AVX2 (function contract).
    unsafe { _mm256_add_epi8(v, _mm256_add_epi8(v, v)) }
}

/// `9·v` in every byte (mod 256): `8·v` by a 16-bit shift with the bits crossing from the byte below
/// masked off, plus `v`.
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn mul9(v: __m256i) -> __m256i {
    // SAFETY: AVX2 (function contract).
    unsafe { _mm256_add_epi8(_mm256_and_si256(_mm256_slli_epi16::<3>(v), _mm256_set1_epi8(-8)), v) }
}

/// The most significant trit `(3·q) >> 8` of every byte `q` (ggml's `avg` formulation, checked for
/// all 256 bytes in the tests).
///
/// # Safety
/// AVX2.
#[inline(always)]
unsafe fn trit(q: __m256i) -> __m256i {
    // SAFETY: AVX2 (function contract).
    unsafe {
        let v = _mm256_subs_epu8(q, _mm256_set1_epi8(1));
        let v = _mm256_avg_epu8(v, _mm256_avg_epu8(v, _mm256_setzero_si256()));
        _mm256_and_si256(_mm256_srli_epi16::<6>(v), _mm256_set1_epi8(3))
    }
}

/// The R × T tile for a 256-element type `K`: per super-block,
/// `(d_w·d_x) · isum − (dmin_w·d_x) · msum` (see [`superblock`]).
///
/// # Panics
/// If the rows and tokens do not cover the same whole number of super-blocks.
///
/// # Safety
/// The CPU features of `I` (plus AVX2, FMA, F16C).
#[inline(always)]
unsafe fn kquant<I: Ops, const K: u8, const R: usize, const T: usize>(
    rows: &[&[u8]; R],
    xs: &[ActRow<'_>; T],
    out: &mut [f32],
) {
    let bytes = kind(K).block_bytes();
    let nb = rows.first().map_or(0, |r| r.len() / bytes);
    assert!(rows.iter().all(|r| r.len() == nb * bytes), "quant tile: row lengths");
    assert!(
        xs.iter().all(|x| x.qs.len() == nb * 256 && x.d.len() == nb && x.bsums.len() == nb * 16),
        "quant tile: activation lengths"
    );
    assert!(out.len() >= R * T, "quant tile: output length");
    let has_min = kind(K).has_min();
    // SAFETY: the CPU features are the caller's contract; block b < nb of each row is in bounds
    // (asserted), as are codes 256b .. 256b + 256, scale b and bsums 16b .. 16b + 16 of every token.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for b in 0..nb {
            let mut a = KActs { ys: [core::ptr::null(); T], bsums: [_mm256_setzero_si256(); T] };
            let mut dy = [0f32; T];
            for (j, x) in xs.iter().enumerate() {
                a.ys[j] = x.qs.as_ptr().add(256 * b);
                a.bsums[j] = load(x.bsums.as_ptr().add(16 * b));
                dy[j] = *x.d.get_unchecked(b);
            }
            for (acc_r, row) in acc.iter_mut().zip(rows) {
                // Two integer accumulators per token (even and odd groups) halve the dependency chains.
                let mut isum = [[_mm256_setzero_si256(); T]; 2];
                let mut msum = [_mm256_setzero_si256(); T];
                let (d, dmin) = superblock::<I, K, T>(row.as_ptr().add(b * bytes), &a, &mut isum, &mut msum);
                for (j, acc) in acc_r.iter_mut().enumerate() {
                    let total = _mm256_add_epi32(isum[0][j], isum[1][j]);
                    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d * dy[j]), _mm256_cvtepi32_ps(total), *acc);
                    if has_min {
                        *acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * dy[j]), _mm256_cvtepi32_ps(msum[j]), *acc);
                    }
                }
            }
        }
        for (o, acc_r) in out.chunks_exact_mut(T).zip(&acc) {
            for (o, a) in o.iter_mut().zip(acc_r) {
                *o = hsum_ps(*a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD trit extraction equals `((u16)q · 3) >> 8` for every byte.
    #[test]
    fn trit_extraction_is_exact() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: no AVX2");
            return;
        }
        #[target_feature(enable = "avx2")]
        fn check() {
            for base in (0..256).step_by(32) {
                let bytes: [u8; 32] = core::array::from_fn(|i| (base + i) as u8);
                let mut got = [0u8; 32];
                // SAFETY: AVX2 is enabled here; both arrays hold 32 bytes.
                unsafe { _mm256_storeu_si256(got.as_mut_ptr().cast(), trit(load(bytes.as_ptr()))) };
                for (g, b) in got.iter().zip(bytes) {
                    assert_eq!(u16::from(*g), (u16::from(b) * 3) >> 8, "byte {b}");
                }
            }
        }
        // SAFETY: AVX2 was detected above.
        unsafe { check() }
    }
}
