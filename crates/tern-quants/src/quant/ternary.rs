//! Ternary block types TQ1_0 (1.6875 bpw) and TQ2_0 (2.0625 bpw), 256 elements per block.
//!
//! Ports of `quantize_row_tq1_0_ref`, `quantize_row_tq2_0_ref`, `dequantize_row_tq1_0`,
//! `dequantize_row_tq2_0` from llama.cpp `ggml/src/ggml-quants.c` (added by compilade for ternary
//! models such as BitNet b1.58 / TriLMs). Both store one f16 scale `d` = the block's largest |x|, and
//! trits t ∈ {0,1,2} meaning x = (t - 1)·d.
//!
//! * TQ2_0, 66 bytes: `u8 qs[64]`, `f16 d`. Byte `32·c + m` (c = 0, 1) holds, at bits `2n..2n+2`,
//!   element `128·c + 32·n + m` (n = 0..4).
//! * TQ1_0, 54 bytes: `u8 qs[48]`, `u8 qh[4]`, `f16 d`. Five trits are packed base-3 into one byte
//!   (most significant trit first) and stored as `ceil(v · 256 / 243)`, so that the n-th trit is
//!   recovered as `((u8)(q · 3^n) · 3) >> 8`. Bytes `qs[0..32]` hold elements `m + 32·n` (n = 0..5) of the
//!   first 160; `qs[32..48]` hold elements `160 + m + 16·n`; `qh[j]` holds four trits, elements
//!   `240 + j + 4·n` (n = 0..4), shifted up by one trit.

use super::{f16_at, put_f16};

const QK_K: usize = 256;

pub(crate) fn dequantize_tq1_0(b: &[u8], out: &mut [f32]) {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    let trit = |q: u8, n: usize| -> f32 {
        let q = q.wrapping_mul(POW3[n]);
        let xi = ((u16::from(q) * 3) >> 8) as i16;
        f32::from(xi - 1)
    };
    for (blk, y) in b.chunks_exact(54).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(blk, 52);
        let (qs, qh) = (&blk[0..48], &blk[48..52]);
        let mut yi = 0;
        for n in 0..5 {
            for &q in &qs[..32] {
                y[yi] = trit(q, n) * d;
                yi += 1;
            }
        }
        for n in 0..5 {
            for &q in &qs[32..48] {
                y[yi] = trit(q, n) * d;
                yi += 1;
            }
        }
        for n in 0..4 {
            for &q in qh {
                y[yi] = trit(q, n) * d;
                yi += 1;
            }
        }
    }
}

pub(crate) fn dequantize_tq2_0(b: &[u8], out: &mut [f32]) {
    for (blk, y) in b.chunks_exact(66).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(blk, 64);
        let mut yi = 0;
        for j in (0..64).step_by(32) {
            for l in 0..4 {
                for m in 0..32 {
                    let q = ((blk[j + m] >> (l * 2)) & 3) as i8;
                    y[yi] = f32::from(q - 1) * d;
                    yi += 1;
                }
            }
        }
    }
}

/// amax of a block as ggml computes it (`MAX(amax, fabsf(v))`, so NaN propagates).
fn block_amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |amax, &v| if amax > v.abs() { amax } else { v.abs() })
}

/// `lroundf(v) + 1` as a trit in {0, 1, 2} (the input is in [-1, 1] for finite blocks).
#[inline]
fn trit_of(v: f32) -> u8 {
    ((v.round() as i32) + 1) as u8
}

pub(crate) fn quantize_tq1_0(src: &[f32], dst: &mut [u8]) {
    for (x, blk) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(54)) {
        let d = block_amax(x);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(blk, 52, d);
        let pack = |vals: &mut dyn Iterator<Item = f32>| -> u8 {
            let mut q: u8 = 0;
            for v in vals {
                q = q.wrapping_mul(3).wrapping_add(trit_of(v * id));
            }
            q
        };
        // ceiling division by 243 = 3^5 after scaling to 256
        let scale_up = |q: u8| (u16::from(q) * 256).div_ceil(243) as u8;
        for m in 0..32 {
            let q = pack(&mut (0..5).map(|n| x[m + n * 32]));
            blk[m] = scale_up(q);
        }
        for m in 0..16 {
            let q = pack(&mut (0..5).map(|n| x[160 + m + n * 16]));
            blk[32 + m] = scale_up(q);
        }
        for j in 0..4 {
            let q = pack(&mut (0..4).map(|n| x[240 + j + n * 4]));
            // shift the first value to the most significant trit
            blk[48 + j] = scale_up(q.wrapping_mul(3));
        }
    }
}

pub(crate) fn quantize_tq2_0(src: &[f32], dst: &mut [u8]) {
    for (x, blk) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(66)) {
        let d = block_amax(x);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(blk, 64, d);
        for j in (0..64).step_by(32) {
            let xs = &x[j * 4..j * 4 + 128];
            for m in 0..32 {
                let mut q = 0u8;
                for n in 0..4 {
                    q = q.wrapping_add((trit_of(xs[m + n * 32] * id) & 3) << (2 * n));
                }
                blk[j + m] = q;
            }
        }
    }
}
