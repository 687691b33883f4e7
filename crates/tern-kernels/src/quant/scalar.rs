//! The scalar integer reference for every block type: each weight block is unpacked into plain
//! integers (weight codes with their zero point removed, sub-block scales and mins), multiplied with
//! the int8 activation codes in exact i32 arithmetic, and scaled once per block in f32.
//!
//! This is the arithmetic of ggml's `ggml_vec_dot_*_q8_0` / `_q8_1` / `_q8_K` generic kernels
//! (`ggml/src/ggml-cpu/quants.c`: `ggml_vec_dot_q4_0_q8_0_generic`, `..._q4_1_q8_1_generic`,
//! `..._q5_0_q8_0_generic`, `..._q5_1_q8_1_generic`, `..._q8_0_q8_0_generic`,
//! `..._q2_K_q8_K_generic` … `..._q6_K_q8_K_generic`, `..._tq1_0_q8_K_generic`,
//! `..._tq2_0_q8_K_generic`), per block:
//!
//! * 32-element types: `Σ += (d_w·d_x) · Σ q_w·q_x` (+ `m_w · (d_x · Σ q_x)` for Q4_1 / Q5_1, where
//!   ggml stores `d_x · Σ q_x` as f16 and this crate keeps it f32);
//! * 256-element types: `Σ += (d_w·d_x) · Σ_e sc(e)·q_w(e)·q_x(e) − (dmin_w·d_x) · Σ_e m(e)·q_x(e)`,
//!   with `sc`, `m` the integer scale and min of the 16- or 32-element sub-block of `e`.
//!
//! The SIMD kernels in `x86.rs` compute the same integer sums (reorganised with the activation block
//! sums, e.g. `Σ (q−8)·x = Σ q·x − 8·Σ x`) and differ only in the order of the f32 additions. The
//! unpacking here reads the layouts as tern-quants' dequantizers (`tern_quants::quant::legacy`,
//! `kquants`, `ternary`) document them, element by element, so it is an independent check of the
//! SIMD bit twiddling.

use super::{ActRow, Kind};
use tern_quants::quant::f16_to_f32;

#[inline]
fn f16_at(b: &[u8], off: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[off], b[off + 1]]))
}

#[inline]
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// A 32-element block as integers: weight `e` is `d · q[e] + m`.
pub(crate) struct LegacyBlock {
    pub q: [i16; 32],
    pub d: f32,
    /// Zero for the types without a min (Q4_0, Q5_0, Q8_0).
    pub m: f32,
}

/// Unpacks one block of a 32-element type (`blk.len() == kind.block_bytes()`).
pub(crate) fn unpack_legacy(kind: Kind, blk: &[u8]) -> LegacyBlock {
    let mut q = [0i16; 32];
    let nib = |qs: &[u8], q: &mut [i16; 32], off: i16| {
        for j in 0..16 {
            q[j] = i16::from(qs[j] & 0x0F) - off;
            q[j + 16] = i16::from(qs[j] >> 4) - off;
        }
    };
    let high = |qh: u32, q: &mut [i16; 32]| {
        for (j, v) in q.iter_mut().enumerate() {
            *v += (((qh >> j) & 1) as i16) << 4;
        }
    };
    match kind {
        Kind::Q4_0 => {
            nib(&blk[2..18], &mut q, 8);
            LegacyBlock { q, d: f16_at(blk, 0), m: 0.0 }
        }
        Kind::Q4_1 => {
            nib(&blk[4..20], &mut q, 0);
            LegacyBlock { q, d: f16_at(blk, 0), m: f16_at(blk, 2) }
        }
        Kind::Q5_0 => {
            nib(&blk[6..22], &mut q, 0);
            high(u32_at(blk, 2), &mut q);
            q.iter_mut().for_each(|v| *v -= 16);
            LegacyBlock { q, d: f16_at(blk, 0), m: 0.0 }
        }
        Kind::Q5_1 => {
            nib(&blk[8..24], &mut q, 0);
            high(u32_at(blk, 4), &mut q);
            LegacyBlock { q, d: f16_at(blk, 0), m: f16_at(blk, 2) }
        }
        Kind::Q8_0 => {
            for (v, &b) in q.iter_mut().zip(&blk[2..34]) {
                *v = i16::from(b as i8);
            }
            LegacyBlock { q, d: f16_at(blk, 0), m: 0.0 }
        }
        _ => unreachable!("unpack_legacy called for the 256-element type {kind:?}"),
    }
}

/// A 256-element super-block as integers: weight `e` is `d · sc[e/16] · q[e] − dmin · m[e/16]`.
pub(crate) struct KBlock {
    pub q: [i16; 256],
    pub sc: [i16; 16],
    pub m: [i16; 16],
    pub d: f32,
    pub dmin: f32,
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of Q4_K / Q5_K.
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 16 6-bit scales of a Q3_K block (`sc` = its 12 scale bytes), as bytes `0..=63`.
pub(crate) fn q3k_scales(sc: &[u8]) -> [u8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let (a0, a1, tmp) = (u32_at(sc, 0), u32_at(sc, 4), u32_at(sc, 8));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(aux) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The `n`-th base-3 digit (most significant first) of a TQ1_0 byte: `((u8)(q·3^n) · 3) >> 8`.
#[inline]
fn trit(q: u8, n: u32) -> i16 {
    let q = q.wrapping_mul(3u8.pow(n));
    ((u16::from(q) * 3) >> 8) as i16
}

/// Unpacks one super-block of a 256-element type (`blk.len() == kind.block_bytes()`).
pub(crate) fn unpack_k(kind: Kind, blk: &[u8]) -> KBlock {
    let mut k = KBlock { q: [0; 256], sc: [1; 16], m: [0; 16], d: 0.0, dmin: 0.0 };
    match kind {
        Kind::Q2K => {
            for (i, &s) in blk[..16].iter().enumerate() {
                k.sc[i] = i16::from(s & 0xF);
                k.m[i] = i16::from(s >> 4);
            }
            for n in 0..2 {
                let qs = &blk[16 + 32 * n..48 + 32 * n];
                for j in 0..4 {
                    for (l, &q) in qs.iter().enumerate() {
                        k.q[128 * n + 32 * j + l] = i16::from((q >> (2 * j)) & 3);
                    }
                }
            }
            (k.d, k.dmin) = (f16_at(blk, 80), f16_at(blk, 82));
        }
        Kind::Q3K => {
            let hm = &blk[..32];
            for (s, v) in k.sc.iter_mut().zip(q3k_scales(&blk[96..108])) {
                *s = i16::from(v) - 32;
            }
            for n in 0..2 {
                let qs = &blk[32 + 32 * n..64 + 32 * n];
                for j in 0..4 {
                    for (l, (&q, &h)) in qs.iter().zip(hm).enumerate() {
                        let low = i16::from((q >> (2 * j)) & 3);
                        let h = i16::from((h >> (4 * n + j)) & 1);
                        k.q[128 * n + 32 * j + l] = low + 4 * h - 4;
                    }
                }
            }
            k.d = f16_at(blk, 108);
        }
        Kind::Q4K | Kind::Q5K => {
            let scales = &blk[4..16];
            for j in 0..8 {
                let (s, m) = scale_min_k4(j, scales);
                k.sc[2 * j..2 * j + 2].fill(i16::from(s));
                k.m[2 * j..2 * j + 2].fill(i16::from(m));
            }
            let (qh, qs) = if kind == Kind::Q5K { (Some(&blk[16..48]), &blk[48..176]) } else { (None, &blk[16..144]) };
            for c in 0..4 {
                for l in 0..32 {
                    let b = qs[32 * c + l];
                    let (mut lo, mut hi) = (i16::from(b & 0xF), i16::from(b >> 4));
                    if let Some(qh) = qh {
                        lo += i16::from((qh[l] >> (2 * c)) & 1) << 4;
                        hi += i16::from((qh[l] >> (2 * c + 1)) & 1) << 4;
                    }
                    k.q[64 * c + l] = lo;
                    k.q[64 * c + 32 + l] = hi;
                }
            }
            (k.d, k.dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        }
        Kind::Q6K => {
            for (s, &v) in k.sc.iter_mut().zip(&blk[192..208]) {
                *s = i16::from(v as i8);
            }
            for c in 0..2 {
                let ql = &blk[64 * c..64 * c + 64];
                let qh = &blk[128 + 32 * c..160 + 32 * c];
                let q = &mut k.q[128 * c..128 * c + 128];
                for l in 0..32 {
                    let h = |s: u32| i16::from((qh[l] >> s) & 3) << 4;
                    q[l] = (i16::from(ql[l] & 0xF) | h(0)) - 32;
                    q[l + 32] = (i16::from(ql[l + 32] & 0xF) | h(2)) - 32;
                    q[l + 64] = (i16::from(ql[l] >> 4) | h(4)) - 32;
                    q[l + 96] = (i16::from(ql[l + 32] >> 4) | h(6)) - 32;
                }
            }
            k.d = f16_at(blk, 208);
        }
        Kind::TQ1 => {
            let (qs, qh) = (&blk[..48], &blk[48..52]);
            let mut e = 0;
            for n in 0..5 {
                for &b in &qs[..32] {
                    k.q[e] = trit(b, n) - 1;
                    e += 1;
                }
            }
            for n in 0..5 {
                for &b in &qs[32..48] {
                    k.q[e] = trit(b, n) - 1;
                    e += 1;
                }
            }
            for n in 0..4 {
                for &b in qh {
                    k.q[e] = trit(b, n) - 1;
                    e += 1;
                }
            }
            k.d = f16_at(blk, 52);
        }
        Kind::TQ2 => {
            for c in 0..2 {
                for n in 0..4 {
                    for m in 0..32 {
                        k.q[128 * c + 32 * n + m] = i16::from((blk[32 * c + m] >> (2 * n)) & 3) - 1;
                    }
                }
            }
            k.d = f16_at(blk, 64);
        }
        _ => unreachable!("unpack_k called for the 32-element type {kind:?}"),
    }
    k
}

/// `Σ_k W[row, k] · x[k]` for one row (`row.len()` a whole number of blocks) and one quantized token,
/// in the integer arithmetic described in the module docs.
pub(crate) fn dot(kind: Kind, row: &[u8], a: &ActRow<'_>) -> f32 {
    let mut sum = 0f32;
    if kind.block() == 32 {
        for (b, blk) in row.chunks_exact(kind.block_bytes()).enumerate() {
            let u = unpack_legacy(kind, blk);
            let y = &a.qs[32 * b..32 * b + 32];
            let i: i32 = u.q.iter().zip(y).map(|(&q, &y)| i32::from(q) * i32::from(y)).sum();
            let dy = a.d[b];
            sum += (u.d * dy) * i as f32;
            if kind.has_min() {
                let sy: i32 = y.iter().map(|&v| i32::from(v)).sum();
                sum += u.m * (dy * sy as f32);
            }
        }
    } else {
        for (b, blk) in row.chunks_exact(kind.block_bytes()).enumerate() {
            let u = unpack_k(kind, blk);
            let y = &a.qs[256 * b..256 * b + 256];
            let (mut i, mut m) = (0i32, 0i32);
            for (e, (&q, &y)) in u.q.iter().zip(y).enumerate() {
                i += i32::from(u.sc[e / 16]) * i32::from(q) * i32::from(y);
                m += i32::from(u.m[e / 16]) * i32::from(y);
            }
            let dy = a.d[b];
            sum += (u.d * dy) * i as f32;
            if kind.has_min() {
                sum -= (u.dmin * dy) * m as f32;
            }
        }
    }
    sum
}
