//! Reference (scalar, written for clarity) dequantizers and quantizers for ggml block types.
//!
//! Each routine is a port of the same-named function in llama.cpp's `ggml/src/ggml-quants.c`
//! (`dequantize_row_*`, `quantize_row_*_ref`) or `ggml/src/ggml-impl.h` (fp16/bf16 conversion), with
//! the float operations in the same order, so results are bit-identical to ggml's scalar reference
//! compiled without FMA contraction (and to gguf-py's `gguf.quants`, which computes the same
//! expressions in numpy). I2_S follows bitnet.cpp; see [`i2s`].
//!
//! Dequantizers: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, TQ1_0,
//! TQ2_0, I2_S. Quantizers: F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K, TQ1_0, TQ2_0, I2_S.
//!
//! Buffers are checked against the type's layout: the element count must be a whole number of blocks
//! and the byte buffer exactly `n / block_size * type_size` long (`n / 4 + 32` for I2_S), otherwise
//! [`QuantError::Layout`] names the type, the expected and the found length. Nothing panics on odd
//! input: NaN and infinities propagate as ggml's code would compute them where that is defined.

pub mod float;
pub mod i2s;
pub mod kquants;
pub mod legacy;
pub mod ternary;

use crate::types::GgmlType;
use crate::{QuantError, Result};

pub use float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};

/// Read the little-endian f16 at `b[off..off+2]` as f32.
#[inline]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[off], b[off + 1]]))
}

/// Store `x` as a little-endian f16 (ggml rounding) at `b[off..off+2]`.
#[inline]
pub(crate) fn put_f16(b: &mut [u8], off: usize, x: f32) {
    b[off..off + 2].copy_from_slice(&f32_to_f16(x).to_le_bytes());
}

/// Bytes needed to store `n_elements` of type `ty` (`None` if `n_elements` is not a whole number of
/// blocks, overflows, or the type has no defined size).
pub fn storage_size(ty: GgmlType, n_elements: usize) -> Option<usize> {
    let n = ty.storage_size_for_elements(n_elements as u64)?;
    if !(n_elements as u64).is_multiple_of(ty.block_size()) {
        return None;
    }
    usize::try_from(n).ok()
}

fn layout_err(ty: GgmlType, op: &'static str, what: &'static str, expected: u64, found: u64) -> QuantError {
    QuantError::Layout { ty, op, what, expected, found }
}

fn check_layout(ty: GgmlType, op: &'static str, n_elements: usize, n_bytes: usize) -> Result<()> {
    let block = ty.block_size();
    if !(n_elements as u64).is_multiple_of(block) {
        let rounded = (n_elements as u64).div_ceil(block) * block;
        return Err(layout_err(ty, op, "element count (a multiple of the block size)", rounded, n_elements as u64));
    }
    let expected = storage_size(ty, n_elements)
        .ok_or_else(|| layout_err(ty, op, "representable byte size for element count", 0, n_elements as u64))?;
    if expected != n_bytes {
        return Err(layout_err(ty, op, "byte length", expected as u64, n_bytes as u64));
    }
    Ok(())
}

fn unsupported(ty: GgmlType, op: &'static str) -> QuantError {
    QuantError::UnsupportedType { ty, op }
}

/// Dequantize `n_elements` values of type `ty` from `bytes` (exactly their storage size).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    if !ty.can_dequantize() {
        return Err(unsupported(ty, "dequantization"));
    }
    check_layout(ty, "dequantize", n_elements, bytes.len())?;
    let mut out = vec![0f32; n_elements];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Dequantize into `out` (its length is the element count). `bytes` may hold any whole number of
/// blocks, e.g. one row of a tensor; for I2_S it must be a whole tensor (packed codes plus the 32-byte
/// tail with the scale), use [`i2s::dequantize_packed_into`] for parts of one.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    if !ty.can_dequantize() {
        return Err(unsupported(ty, "dequantization"));
    }
    check_layout(ty, "dequantize", out.len(), bytes.len())?;
    use GgmlType::*;
    match ty {
        F32 => float::dequantize_f32(bytes, out),
        F16 => float::dequantize_f16(bytes, out),
        BF16 => float::dequantize_bf16(bytes, out),
        Q4_0 => legacy::dequantize_q4_0(bytes, out),
        Q4_1 => legacy::dequantize_q4_1(bytes, out),
        Q5_0 => legacy::dequantize_q5_0(bytes, out),
        Q5_1 => legacy::dequantize_q5_1(bytes, out),
        Q8_0 => legacy::dequantize_q8_0(bytes, out),
        Q2_K => kquants::dequantize_q2_k(bytes, out),
        Q3_K => kquants::dequantize_q3_k(bytes, out),
        Q4_K => kquants::dequantize_q4_k(bytes, out),
        Q5_K => kquants::dequantize_q5_k(bytes, out),
        Q6_K => kquants::dequantize_q6_k(bytes, out),
        TQ1_0 => ternary::dequantize_tq1_0(bytes, out),
        TQ2_0 => ternary::dequantize_tq2_0(bytes, out),
        I2_S => return i2s::dequantize_tensor_into(bytes, out),
        _ => return Err(unsupported(ty, "dequantization")),
    }
    Ok(())
}

/// Quantize `src` to type `ty`. For I2_S the whole slice is one tensor (one shared scale).
pub fn quantize(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>> {
    if !ty.can_quantize() {
        return Err(unsupported(ty, "quantization"));
    }
    let n = storage_size(ty, src.len()).ok_or_else(|| {
        let block = ty.block_size();
        layout_err(
            ty,
            "quantize",
            "element count (a multiple of the block size)",
            (src.len() as u64).div_ceil(block) * block,
            src.len() as u64,
        )
    })?;
    let mut out = vec![0u8; n];
    quantize_into(ty, src, &mut out)?;
    Ok(out)
}

/// Quantize `src` into `dst`, which must be exactly the storage size of `src.len()` elements.
pub fn quantize_into(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    if !ty.can_quantize() {
        return Err(unsupported(ty, "quantization"));
    }
    check_layout(ty, "quantize", src.len(), dst.len())?;
    use GgmlType::*;
    match ty {
        F32 => float::quantize_f32(src, dst),
        F16 => float::quantize_f16(src, dst),
        BF16 => float::quantize_bf16(src, dst),
        Q4_0 => legacy::quantize_q4_0(src, dst),
        Q8_0 => legacy::quantize_q8_0(src, dst),
        Q4_K => kquants::quantize_q4_k(src, dst),
        Q6_K => kquants::quantize_q6_k(src, dst),
        TQ1_0 => ternary::quantize_tq1_0(src, dst),
        TQ2_0 => ternary::quantize_tq2_0(src, dst),
        I2_S => i2s::quantize_tensor_into(src, dst),
        _ => return Err(unsupported(ty, "quantization")),
    }
    Ok(())
}
