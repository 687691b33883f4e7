//! The 32-element "legacy" block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//!
//! Ports of `dequantize_row_q4_0/q4_1/q5_0/q5_1/q8_0` and `quantize_row_q4_0_ref/q8_0_ref` from
//! llama.cpp `ggml/src/ggml-quants.c`. Block layouts (`ggml-common.h`), all little-endian:
//!
//! | type | bytes | layout |
//! |------|-------|--------|
//! | Q4_0 | 18 | `f16 d`, `u8 qs[16]`: element j = low nibble of `qs[j]`, j+16 = high nibble; x = (q - 8)·d |
//! | Q4_1 | 20 | `f16 d`, `f16 m`, `u8 qs[16]`: x = q·d + m |
//! | Q5_0 | 22 | `f16 d`, `u32 qh`, `u8 qs[16]`: 5th bit of element j is bit j of qh; x = (q - 16)·d |
//! | Q5_1 | 24 | `f16 d`, `f16 m`, `u32 qh`, `u8 qs[16]`: x = q·d + m |
//! | Q8_0 | 34 | `f16 d`, `i8 qs[32]`: x = q·d |

use super::{f16_at, put_f16};

const QK: usize = 32;

pub(crate) fn dequantize_q4_0(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(blk, 0);
        let qs = &blk[2..18];
        for j in 0..QK / 2 {
            let x0 = i32::from(qs[j] & 0x0F) - 8;
            let x1 = i32::from(qs[j] >> 4) - 8;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

pub(crate) fn dequantize_q4_1(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(20).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(blk, 0);
        let m = f16_at(blk, 2);
        let qs = &blk[4..20];
        for j in 0..QK / 2 {
            let x0 = qs[j] & 0x0F;
            let x1 = qs[j] >> 4;
            y[j] = f32::from(x0) * d + m;
            y[j + QK / 2] = f32::from(x1) * d + m;
        }
    }
}

pub(crate) fn dequantize_q5_0(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(22).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(blk, 0);
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let qs = &blk[6..22];
        for j in 0..QK / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = i32::from((qs[j] & 0x0F) | xh_0) - 16;
            let x1 = i32::from((qs[j] >> 4) | xh_1) - 16;
            y[j] = x0 as f32 * d;
            y[j + QK / 2] = x1 as f32 * d;
        }
    }
}

pub(crate) fn dequantize_q5_1(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(24).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(blk, 0);
        let m = f16_at(blk, 2);
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        let qs = &blk[8..24];
        for j in 0..QK / 2 {
            let xh_0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh_1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = (qs[j] & 0x0F) | xh_0;
            let x1 = (qs[j] >> 4) | xh_1;
            y[j] = f32::from(x0) * d + m;
            y[j + QK / 2] = f32::from(x1) * d + m;
        }
    }
}

pub(crate) fn dequantize_q8_0(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(34).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(blk, 0);
        for (o, &q) in y.iter_mut().zip(&blk[2..34]) {
            *o = f32::from(q as i8) * d;
        }
    }
}

/// `quantize_row_q4_0_ref`: d = (the value of largest magnitude) / -8, q = min(15, (i8)(x/d + 8.5)).
pub(crate) fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    for (x, blk) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(18)) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(blk, 0, d);
        for j in 0..QK / 2 {
            let x0 = x[j] * id;
            let x1 = x[QK / 2 + j] * id;
            // C: MIN(15, (int8_t)(x + 8.5f)) stored in a uint8_t.
            let xi0 = 15.min(i32::from((x0 + 8.5) as i8)) as u8;
            let xi1 = 15.min(i32::from((x1 + 8.5) as i8)) as u8;
            blk[2 + j] = xi0 | (xi1 << 4);
        }
    }
}

/// `quantize_row_q8_0_ref`: d = amax / 127, q = roundf(x / d) (half away from zero).
pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    for (x, blk) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(34)) {
        let mut amax = 0.0f32;
        for &v in x {
            // C: MAX(amax, fabsf(v)), i.e. a NaN propagates.
            amax = if amax > v.abs() { amax } else { v.abs() };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(blk, 0, d);
        for (q, &v) in blk[2..].iter_mut().zip(x) {
            *q = ((v * id).round() as i8) as u8;
        }
    }
}
