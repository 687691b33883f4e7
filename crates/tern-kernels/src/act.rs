//! Per-token int8 activation quantization, exactly as transformers' BitNet layers compute it.
//!
//! Reference: `transformers/integrations/bitnet.py`, `ActQuant.forward` / `BitLinear.activation_quant`:
//! `s = 127 / max(|x|).clamp(min=1e-5)`, `q = round(x * s).clamp(-128, 127)` where `round` is
//! torch's round-half-to-even. The arithmetic is f32, in the same order, so the int8 codes are
//! identical to transformers' for f32 inputs. The AVX2 / AVX-512 paths (`simd`) convert with the
//! default round-to-nearest-even mode and saturate, bit-exact with [`quantize_i8_scalar`].

/// One quantized token: codes (padded with zeros to the packed K), the scale `s` and `Σ q`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActScale {
    /// `127 / max(|x|, 1e-5)`; the real value of code `q` is `q / scale`.
    pub scale: f32,
    /// Sum of the codes, used by kernels that store ternary weights as `w + 1`.
    pub sum: i32,
}

/// Quantizes `x` into `out[..x.len()]` and zero-fills `out[x.len()..]`, on the active ISA
/// ([`crate::simd::level`]); bit-exact with [`quantize_i8_scalar`].
///
/// # Panics
/// If `out` is shorter than `x` (a caller bug, not an input error).
pub fn quantize_i8(x: &[f32], out: &mut [i8]) -> ActScale {
    quantize_i8_on(crate::simd::level(), x, out)
}

/// [`quantize_i8`] on path `isa` (clamped to what this CPU runs).
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_i8_on(isa: crate::isa::Isa, x: &[f32], out: &mut [i8]) -> ActScale {
    assert!(out.len() >= x.len(), "quantize_i8: output shorter than input");
    let (head, tail) = out.split_at_mut(x.len());
    tail.fill(0);
    crate::simd::quantize_i8(isa, x, head)
}

/// The reference: `s = 127 / max(|x|, 1e-5)` (NaN inputs are skipped by the max), `q = round_half_even(x·s)`
/// clamped to int8 (a NaN product, from a NaN or infinite input, becomes 0).
///
/// # Panics
/// If `out` is shorter than `x`.
pub fn quantize_i8_scalar(x: &[f32], out: &mut [i8]) -> ActScale {
    assert!(out.len() >= x.len(), "quantize_i8: output shorter than input");
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // A NaN input is skipped by `f32::max` and becomes code 0 (`as i8` maps NaN to 0).
    let scale = 127.0f32 / max.max(1e-5);
    let mut sum = 0i32;
    for (o, &v) in out.iter_mut().zip(x) {
        let q = (v * scale).round_ties_even().clamp(-128.0, 127.0) as i8;
        sum += q as i32;
        *o = q;
    }
    out[x.len()..].fill(0);
    ActScale { scale, sum }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_torch_semantics() {
        // max = 2 -> scale 63.5; 0.5*63.5 = 31.75 -> 32; -2 -> -127; 1/127 ... ties to even.
        let x = [0.5f32, -2.0, 0.0, 1.0, 0.007874016];
        let mut q = [0i8; 8];
        let s = quantize_i8(&x, &mut q);
        assert_eq!(s.scale, 63.5);
        assert_eq!(&q[..5], &[32, -127, 0, 64, 0]);
        assert_eq!(&q[5..], &[0, 0, 0]);
        assert_eq!(s.sum, 32 - 127 + 64);
    }

    #[test]
    fn ties_round_to_even() {
        // max = 127 -> scale 1: 2.5 -> 2, 3.5 -> 4, -0.5 -> 0, -1.5 -> -2.
        let x = [127.0f32, 2.5, 3.5, -0.5, -1.5];
        let mut q = [0i8; 5];
        quantize_i8(&x, &mut q);
        assert_eq!(q, [127, 2, 4, 0, -2]);
    }

    #[test]
    fn tiny_and_zero_inputs_use_floor() {
        let x = [0.0f32; 4];
        let mut q = [1i8; 4];
        let s = quantize_i8(&x, &mut q);
        assert_eq!(s.scale, 127.0 / 1e-5);
        assert_eq!(q, [0; 4]);
        assert_eq!(s.sum, 0);
    }
}
