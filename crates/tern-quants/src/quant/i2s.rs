//! I2_S: bitnet.cpp's ternary weight type (on-disk type id 36 in bitnet.cpp's ggml fork).
//!
//! Source: microsoft/BitNet `src/ggml-bitnet-mad.cpp` (`quantize_i2_s`, x86 branch with
//! `QK_I2_S = 128`, and the `ggml_vec_dot_i2_i8_s` kernels that read it) and the fork's
//! `3rdparty/llama.cpp/ggml/src/ggml.c` (`ggml_nbytes`: `nbytes = nbytes / 4 + 32` for I2_S).
//!
//! # Layout of one I2_S tensor of `n` elements (`n % 128 == 0`), `n / 4 + 32` bytes
//! * **Packed codes**, bytes `[0, n/4)`: `n / 128` blocks of 32 bytes, in element order of the
//!   flattened tensor (row-major over ggml dims, `ne0` fastest). In block `b`, byte `j` (0..32) holds
//!   four 2-bit codes, most significant first:
//!   bits 7..6 → element `128·b + j`, bits 5..4 → `128·b + 32 + j`, bits 3..2 → `128·b + 64 + j`,
//!   bits 1..0 → `128·b + 96 + j`.
//! * **Codes**: 0 → −1, 1 → 0, 2 → +1. The kernels compute `Σ code·a − Σ a`, i.e. weight = code − 1,
//!   so this dequantizer decodes every code as `(code − 1)·scale` (code 3 is never written and would
//!   mean +2).
//! * **Tail**, bytes `[n/4, n/4 + 32)`: the per-tensor scale as a little-endian f32 in the first 4
//!   bytes; the remaining 28 bytes pad the tensor to a 32-byte boundary and are not meaningful (they are
//!   not written by `quantize_i2_s`).
//!
//! Values are `(code − 1) · scale`. There is no per-block scale.
//!
//! bitnet.cpp built for ARM (`QK_I2_S = 64`) packs 64-element blocks of 16 bytes instead (element
//! `j` at byte `j % 16`, shift `6 − 2·(j / 16)`); such files are indistinguishable on disk. This module
//! implements the x86 layout used by the published bitnet.cpp GGUFs (e.g. BitNet b1.58 2B-4T).
//!
//! # Quantizer
//! Mirrors `quantize_i2_s`: `scale = max |x|` over the whole tensor (computed in f64, stored as f32);
//! a code is 1 when `|x| < 1e-6`, else 2 when `x · scale > 0`, else 0. It expects weights that are
//! already ternary (`{−s, 0, +s}`, as bitnet.cpp's converter produces with BitNet's absmean
//! `weight_quant`); any other input is mapped to its sign.

use crate::types::GgmlType;
use crate::{QuantError, Result};

/// Elements per packing block (x86 `QK_I2_S`).
pub const BLOCK: usize = 128;
/// Bytes after the packed codes: 4 bytes of f32 scale plus padding.
pub const TAIL_BYTES: usize = 32;

fn layout(what: &'static str, expected: u64, found: u64) -> QuantError {
    QuantError::Layout { ty: GgmlType::I2_S, op: "i2_s", what, expected, found }
}

/// The per-tensor scale stored after the `n_elements / 4` packed bytes.
pub fn tensor_scale(tensor_bytes: &[u8], n_elements: usize) -> Result<f32> {
    let off = n_elements / 4;
    let s = tensor_bytes
        .get(off..off + 4)
        .ok_or_else(|| layout("tensor bytes (n/4 + 32)", (off + TAIL_BYTES) as u64, tensor_bytes.len() as u64))?;
    Ok(f32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Decode packed codes (any whole number of 128-element blocks, e.g. one row) with a given scale.
pub fn dequantize_packed_into(packed: &[u8], scale: f32, out: &mut [f32]) -> Result<()> {
    if !out.len().is_multiple_of(BLOCK) {
        return Err(layout(
            "element count (multiple of 128)",
            (out.len().div_ceil(BLOCK) * BLOCK) as u64,
            out.len() as u64,
        ));
    }
    if packed.len() != out.len() / 4 {
        return Err(layout("packed byte length (n/4)", (out.len() / 4) as u64, packed.len() as u64));
    }
    for (blk, y) in packed.chunks_exact(BLOCK / 4).zip(out.chunks_exact_mut(BLOCK)) {
        for (j, &byte) in blk.iter().enumerate() {
            for g in 0..4 {
                let code = (byte >> (6 - 2 * g)) & 3;
                y[32 * g + j] = f32::from(i16::from(code) - 1) * scale;
            }
        }
    }
    Ok(())
}

/// Dequantize a whole I2_S tensor (`out.len() / 4 + 32` bytes).
pub fn dequantize_tensor_into(tensor_bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let n = out.len();
    if tensor_bytes.len() != n / 4 + TAIL_BYTES {
        return Err(layout("tensor bytes (n/4 + 32)", (n / 4 + TAIL_BYTES) as u64, tensor_bytes.len() as u64));
    }
    let scale = tensor_scale(tensor_bytes, n)?;
    dequantize_packed_into(&tensor_bytes[..n / 4], scale, out)
}

/// The code `quantize_i2_s` assigns to `x` given the tensor scale.
#[inline]
fn code_of(x: f32, scale: f64) -> u8 {
    let x = f64::from(x);
    if x.abs() < 1e-6 {
        1
    } else if x * scale > 0.0 {
        2
    } else {
        0
    }
}

/// Quantize a whole tensor into `n / 4 + 32` bytes (see the module doc).
pub(crate) fn quantize_tensor_into(src: &[f32], dst: &mut [u8]) {
    // C: double max = 0; max = fmax(max, fabs(x)) -- fmax ignores NaN.
    let scale = src.iter().fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
    let n = src.len();
    dst.fill(0);
    for (x, blk) in src.chunks_exact(BLOCK).zip(dst[..n / 4].chunks_exact_mut(BLOCK / 4)) {
        for (j, b) in blk.iter_mut().enumerate() {
            *b = (0..4).fold(0u8, |acc, g| acc | (code_of(x[32 * g + j], scale) << (6 - 2 * g)));
        }
    }
    dst[n / 4..n / 4 + 4].copy_from_slice(&(scale as f32).to_le_bytes());
}
