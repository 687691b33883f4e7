//! Turning f32 rows into the bytes of a ggml type, a few rows at a time.
//!
//! * Block types (F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K, TQ1_0, TQ2_0) use tern-quants' ports of
//!   ggml's `quantize_row_*_ref`, row by row (every row is a whole number of blocks).
//! * Q5_0 (llama-quantize's fallback for Q4_K) is ported here from `quantize_row_q5_0_ref`
//!   (`ggml/src/ggml-quants.c`), since tern-quants has only its dequantizer.
//! * Ternary weights `t·s` (t ∈ {−1, 0, 1}) with a row length that TQ*/I2_S cannot hold are written as
//!   Q4_0 blocks with `d = f16(s)` and `q = t + 8`: exactly `t·f16(s)` after dequantization.
//! * I2_S (bitnet.cpp, see `tern_quants::quant::i2s`) is encoded in row chunks with the tensor's
//!   known scale; the 32-byte tail with the f32 scale follows the last row. Codes are 0, 1, 2 for
//!   −s, 0, +s (a value counts as zero below s/2, where bitnet.cpp's `quantize_i2_s` uses 1e-6, the
//!   same for ternary inputs unless s itself is tiny), so the bytes equal
//!   `tern_quants::quantize(I2_S, whole_tensor)` whenever the tensor's max |x| is `s`.

use tern_gguf::GgmlType;
use tern_quants::quant::f32_to_f16;

/// How the values of one output tensor become bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Encoder {
    /// A block type quantized row by row.
    Rows(GgmlType),
    /// Ternary values with scale `s` as exact Q4_0 blocks.
    TernaryQ4_0 { scale: f32 },
    /// bitnet.cpp I2_S with the per-tensor scale `s`.
    I2S { scale: f32 },
}

/// Elements per I2_S packing block (x86 layout).
const I2S_BLOCK: usize = 128;

impl Encoder {
    /// The ggml type written.
    pub(crate) fn ggml_type(self) -> GgmlType {
        match self {
            Encoder::Rows(t) => t,
            Encoder::TernaryQ4_0 { .. } => GgmlType::Q4_0,
            Encoder::I2S { .. } => GgmlType::I2_S,
        }
    }

    /// Appends the encoding of `vals` (a whole number of rows of `ne0` elements) to `out`.
    pub(crate) fn encode(self, vals: &[f32], ne0: usize, out: &mut Vec<u8>) -> Result<(), String> {
        if ne0 == 0 || !vals.len().is_multiple_of(ne0) {
            return Err(format!("{} values are not whole rows of {ne0}", vals.len()));
        }
        match self {
            Encoder::Rows(GgmlType::Q5_0) => {
                check_blocks(vals.len(), 32, "Q5_0")?;
                let start = out.len();
                out.resize(start + vals.len() / 32 * 22, 0);
                quantize_q5_0(vals, &mut out[start..]);
                Ok(())
            }
            Encoder::Rows(ty) => {
                let n = tern_quants::storage_size(ty, vals.len())
                    .ok_or_else(|| format!("{} values are not whole {ty} blocks", vals.len()))?;
                let start = out.len();
                out.resize(start + n, 0);
                tern_quants::quantize_into(ty, vals, &mut out[start..]).map_err(|e| e.to_string())
            }
            Encoder::TernaryQ4_0 { scale } => {
                check_blocks(vals.len(), 32, "Q4_0")?;
                let d = f32_to_f16(scale).to_le_bytes();
                for x in vals.chunks_exact(32) {
                    out.extend_from_slice(&d);
                    let q = |v: f32| -> Result<u8, String> { Ok((trit(v, scale)? + 8) as u8) };
                    for j in 0..16 {
                        out.push(q(x[j])? | (q(x[16 + j])? << 4));
                    }
                }
                Ok(())
            }
            Encoder::I2S { scale } => {
                check_blocks(vals.len(), I2S_BLOCK, "I2_S")?;
                if !ne0.is_multiple_of(I2S_BLOCK) {
                    return Err(format!("I2_S rows must be a multiple of {I2S_BLOCK} elements, found {ne0}"));
                }
                for x in vals.chunks_exact(I2S_BLOCK) {
                    for j in 0..32 {
                        let mut b = 0u8;
                        for g in 0..4 {
                            b |= i2s_code(x[32 * g + j], scale) << (6 - 2 * g);
                        }
                        out.push(b);
                    }
                }
                Ok(())
            }
        }
    }

    /// Bytes after the last row (I2_S: the f32 scale and 28 bytes of padding).
    pub(crate) fn tail(self) -> Vec<u8> {
        match self {
            Encoder::I2S { scale } => {
                let mut t = vec![0u8; 32];
                t[..4].copy_from_slice(&scale.to_le_bytes());
                t
            }
            _ => Vec::new(),
        }
    }
}

fn check_blocks(n: usize, block: usize, ty: &str) -> Result<(), String> {
    if n.is_multiple_of(block) {
        Ok(())
    } else {
        Err(format!("{n} values are not whole {ty} blocks of {block}"))
    }
}

/// `v / s` rounded, which must be −1, 0 or 1.
fn trit(v: f32, s: f32) -> Result<i8, String> {
    let t = if s == 0.0 { 0.0 } else { (v / s).round() };
    if !(-1.0..=1.0).contains(&t) || (v - t * s).abs() > s.abs() * 1e-5 {
        return Err(format!("value {v} is not a ternary multiple of the scale {s}"));
    }
    Ok(t as i8)
}

/// I2_S code of one value `t·s`: 0, 1, 2 for t = −1, 0, +1.
fn i2s_code(x: f32, s: f32) -> u8 {
    if x.abs() < 0.5 * s.abs() {
        1
    } else if x > 0.0 {
        2
    } else {
        0
    }
}

/// `quantize_row_q5_0_ref`: `d = max / −16` (max = the value of largest magnitude),
/// `q = min(31, (int8)(x / d + 16.5))`, low nibbles in `qs`, fifth bits in `qh`.
pub(crate) fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    for (x, blk) in src.chunks_exact(32).zip(dst.chunks_exact_mut(22)) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        blk[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
        let mut qh = 0u32;
        for j in 0..16 {
            let x0 = x[j] * id;
            let x1 = x[16 + j] * id;
            // C: MIN(31, (int8_t)(x + 16.5f)) stored in a uint8_t.
            let xi0 = 31.min(i32::from((x0 + 16.5) as i8)) as u8;
            let xi1 = 31.min(i32::from((x1 + 16.5) as i8)) as u8;
            blk[6 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= u32::from((xi0 & 0x10) >> 4) << j;
            qh |= u32::from((xi1 & 0x10) >> 4) << (j + 16);
        }
        blk[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ternary(n: usize, seed: u32) -> Vec<i8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 24) % 3) as i8 - 1
            })
            .collect()
    }

    #[test]
    fn ternary_q4_0_is_exact() {
        let s = 0.037_f32;
        let t = ternary(4 * 96, 7);
        let vals: Vec<f32> = t.iter().map(|&x| f32::from(x) * s).collect();
        let mut out = Vec::new();
        Encoder::TernaryQ4_0 { scale: s }.encode(&vals, 96, &mut out).unwrap();
        let back = tern_quants::dequantize(GgmlType::Q4_0, &out, vals.len()).unwrap();
        let d = tern_quants::quant::f16_to_f32(f32_to_f16(s));
        for (i, (&b, &x)) in back.iter().zip(&t).enumerate() {
            assert_eq!(b, f32::from(x) * d, "element {i}");
        }
        let bad = vec![0.5 * s; 32];
        assert!(Encoder::TernaryQ4_0 { scale: s }.encode(&bad, 32, &mut Vec::new()).is_err());
    }

    #[test]
    fn i2s_chunks_equal_whole_tensor_quantizer() {
        let s = 0.25_f32;
        let (rows, cols) = (6, 256);
        let vals: Vec<f32> = ternary(rows * cols, 3).iter().map(|&x| f32::from(x) * s).collect();
        let enc = Encoder::I2S { scale: s };
        let mut out = Vec::new();
        for chunk in vals.chunks(2 * cols) {
            enc.encode(chunk, cols, &mut out).unwrap();
        }
        out.extend(enc.tail());
        assert_eq!(out, tern_quants::quantize(GgmlType::I2_S, &vals).unwrap());
    }

    #[test]
    fn q5_0_matches_gguf_py() {
        // tests/data/q5_0_golden.json: tools/convert/make_q5_0_golden.py (gguf-py's Q5_0 quantizer).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/q5_0_golden.json");
        let g: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let vals: Vec<f32> = g["values_f32_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
            .collect();
        let hex = g["q5_0_hex"].as_str().unwrap();
        let want: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let mut out = Vec::new();
        Encoder::Rows(GgmlType::Q5_0).encode(&vals, 64, &mut out).unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn q5_0_round_trips_within_one_step() {
        let vals: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let mut out = vec![0u8; 256 / 32 * 22];
        quantize_q5_0(&vals, &mut out);
        let back = tern_quants::dequantize(GgmlType::Q5_0, &out, vals.len()).unwrap();
        for (blk, (x, y)) in vals.chunks(32).zip(back.chunks(32)).enumerate() {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            // Half a step from rounding, one step where the sign opposite to the extreme clamps at 31.
            let step = amax / 16.0;
            for (a, b) in x.iter().zip(y) {
                assert!((a - b).abs() <= step + 1e-3 * amax, "block {blk}: {a} vs {b}");
            }
        }
    }
}
