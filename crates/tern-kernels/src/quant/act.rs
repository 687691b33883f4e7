//! Per-token int8 quantization of f32 activations into the two block formats the integer dot
//! products of [`super`] consume, as llama.cpp does before every quantized matrix product.
//!
//! * [`ActFormat::Q8x32`] (for the 32-element weight blocks Q4_0 … Q8_0): blocks of 32 codes with
//!   `d = amax / 127` and `q = round(x · 127 / amax)`, like ggml's `quantize_row_q8_0` / `q8_1`
//!   (`ggml/src/ggml-quants.c`, `quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`), plus the exact
//!   integer sum `Σ q` of each block (ggml's Q8_1 keeps `d · Σ q` as f16). Two deliberate
//!   differences: `d` stays f32 (ggml rounds it to f16), and rounding is to nearest, ties to even
//!   (ggml's reference uses `roundf`, its AVX2 path `_MM_ROUND_NEAREST`, i.e. ties to even).
//! * [`ActFormat::Q8K`] (for the 256-element k-quants and TQ1_0 / TQ2_0): ggml's `block_q8_K` as
//!   `quantize_row_q8_K_ref` computes it: `iscale = -127 / max` where `max` is the value of largest
//!   magnitude, `q = nearest_int(iscale · x)`, `d = 1 / iscale` (f32), and the sums of each 16 codes
//!   (`bsums`).
//!
//! Codes are always within `-127..=127` (clamped), which the SIMD kernels' overflow bounds rely on.
//! A block holding a NaN or an infinity gets `d = NaN` and zero codes, so the product is NaN rather
//! than a silently wrong finite number.

/// Elements per block of [`ActFormat::Q8x32`].
pub const Q8_BLOCK: usize = 32;
/// Elements per block of [`ActFormat::Q8K`].
pub const Q8K_BLOCK: usize = 256;

/// How activations are quantized for a weight type (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActFormat {
    /// 32 codes, an f32 scale and the integer code sum per block.
    Q8x32,
    /// 256 codes, an f32 scale per block and the code sums of every 16 codes.
    Q8K,
}

impl ActFormat {
    /// Elements per block.
    pub const fn block(self) -> usize {
        match self {
            ActFormat::Q8x32 => Q8_BLOCK,
            ActFormat::Q8K => Q8K_BLOCK,
        }
    }
}

/// ggml's `nearest_int`: round to nearest, ties to even, exact for `|v| < 2^22` (callers pass
/// `|v| ≤ 127.5`).
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    let val = v + 12_582_912.0;
    ((val.to_bits() as i32) & 0x007f_ffff) - 0x0040_0000
}

/// `(max |x|, all finite)`, written so that it vectorizes (8 independent lanes; `v · 0` is NaN
/// exactly for infinities and NaN).
#[inline]
fn abs_max(x: &[f32]) -> (f32, bool) {
    let mut m = [0f32; 8];
    let mut z = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            let a = c[i].abs();
            m[i] = if a > m[i] { a } else { m[i] };
            z[i] += c[i] * 0.0;
        }
    }
    for (i, &v) in chunks.remainder().iter().enumerate() {
        let a = v.abs();
        m[i] = if a > m[i] { a } else { m[i] };
        z[i] += v * 0.0;
    }
    let amax = m.iter().fold(0f32, |acc, &v| if v > acc { v } else { acc });
    (amax, z.iter().sum::<f32>() == 0.0)
}

/// Codes `round(v · scale)` of `x` into `q` (ties to even, clamped to ±127), returning their sum.
#[inline]
fn round_codes(x: &[f32], scale: f32, q: &mut [i8]) -> i32 {
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        let c = nearest_int((v * scale).clamp(-127.0, 127.0));
        *q = c as i8;
        sum += c;
    }
    sum
}

/// Quantizes `x` (a whole number of 32-blocks) into `qs` (same length), `d` and `sums` (one per block).
pub(crate) fn quantize_q8x32(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    for (((xb, qb), db), sb) in x.chunks_exact(Q8_BLOCK).zip(qs.chunks_exact_mut(Q8_BLOCK)).zip(d).zip(sums) {
        let (amax, finite) = abs_max(xb);
        if !finite || amax == 0.0 {
            qb.fill(0);
            *db = if finite { 0.0 } else { f32::NAN };
            *sb = 0;
            continue;
        }
        *sb = round_codes(xb, 127.0 / amax, qb);
        *db = amax / 127.0;
    }
}

/// Quantizes `x` (a whole number of 256-blocks) into `qs` (same length), `d` (one per block) and
/// `bsums` (one per 16 elements), as `quantize_row_q8_K_ref`.
pub(crate) fn quantize_q8k(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    for (((xb, qb), db), bb) in
        x.chunks_exact(Q8K_BLOCK).zip(qs.chunks_exact_mut(Q8K_BLOCK)).zip(d).zip(bsums.chunks_exact_mut(Q8K_BLOCK / 16))
    {
        let (amax, finite) = abs_max(xb);
        if !finite || amax == 0.0 {
            qb.fill(0);
            bb.fill(0);
            *db = if finite { 0.0 } else { f32::NAN };
            continue;
        }
        // ggml keeps the first value of largest magnitude, with its sign.
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        round_codes(xb, iscale, qb);
        for (s, q16) in bb.iter_mut().zip(qb.chunks_exact(16)) {
            // |Σ| ≤ 16 · 127 fits an i16.
            *s = q16.iter().map(|&q| i16::from(q)).sum();
        }
        *db = 1.0 / iscale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8x32_codes_and_sums() {
        let mut x = [0f32; 32];
        // amax = 127, so d = 1 and the codes are x rounded, ties to even.
        x[..5].copy_from_slice(&[127.0, -64.0, 2.5, 3.5, -0.5]);
        let (mut q, mut d, mut s) = ([0i8; 32], [0f32], [0i32]);
        quantize_q8x32(&x, &mut q, &mut d, &mut s);
        assert_eq!(d[0], 1.0);
        assert_eq!(&q[..5], &[127, -64, 2, 4, 0]);
        assert_eq!(s[0], 127 - 64 + 2 + 4);
    }

    #[test]
    fn q8k_follows_ggml_sign_convention() {
        let mut x = [0f32; 256];
        x[5] = -4.0;
        x[17] = 2.0;
        let (mut q, mut d, mut b) = ([0i8; 256], [0f32], [0i16; 16]);
        quantize_q8k(&x, &mut q, &mut d, &mut b);
        // max = -4 -> iscale = 127/4 -> d = 4/127 and codes keep their sign.
        assert_eq!(d[0], 1.0 / (-127.0f32 / -4.0));
        assert_eq!((q[5], q[17]), (-127, 64));
        assert_eq!((b[0], b[1]), (-127, 64));
    }

    #[test]
    fn non_finite_blocks_poison_the_scale() {
        let mut x = [1f32; 256];
        x[3] = f32::NAN;
        let (mut q, mut d, mut s) = ([0i8; 256], [0f32; 8], [0i32; 8]);
        quantize_q8x32(&x, &mut q, &mut d, &mut s);
        assert!(d[0].is_nan() && d[1] == 1.0 / 127.0);
        let (mut d1, mut b) = ([0f32], [0i16; 16]);
        x[3] = f32::INFINITY;
        quantize_q8k(&x, &mut q, &mut d1, &mut b);
        assert!(d1[0].is_nan());
    }
}
