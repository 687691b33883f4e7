//! Where an output tensor's values come from, read a few rows at a time as f32.
//!
//! * safetensors float tensors (F32/F16/BF16), optionally with rows permuted;
//! * transformers' packed BitNet weights (`(rows/4, cols)` U8, lane `k` of byte `(p, c)` holding row
//!   `k·rows/4 + p`, value = code − 1; see `tern_kernels::ternary::TernaryMatrix::from_hf_packed`)
//!   times the effective scale;
//! * latent float weights ternarized like `tern_model::load` (transformers `WeightQuant`): `round(w·q)`
//!   clamped to ±1 times `1/q`, with `q = 1 / max(mean|W|, 1e-5)` for the whole tensor;
//! * values computed by the converter (`rope_freqs`);
//! * a GGUF tensor, dequantized (times a folded `.scale`), or copied as raw bytes.

use std::sync::Arc;
use tern_formats::safetensors::{DType, TensorEntry};
use tern_gguf::{GgmlType, GgufFile};
use tern_quants::quant::{f16_to_f32, i2s};

/// Row permutation `perm[new_row] = old_row`.
pub(crate) type Perm = Arc<Vec<usize>>;

#[derive(Clone)]
pub(crate) enum TensorData {
    HfFloat { entry: TensorEntry, cols: usize, perm: Option<Perm> },
    HfPacked { entry: TensorEntry, rows: usize, cols: usize, scale: f32, perm: Option<Perm> },
    HfLatent { entry: TensorEntry, cols: usize, q: f32, scale: f32, perm: Option<Perm> },
    Values { v: Vec<f32>, cols: usize },
    Gguf { file: Arc<GgufFile>, index: usize, mul: f32, raw: bool },
}

impl std::fmt::Debug for TensorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorData::HfFloat { entry, .. } => write!(f, "HfFloat({})", entry.name),
            TensorData::HfPacked { entry, scale, .. } => write!(f, "HfPacked({}, scale {scale})", entry.name),
            TensorData::HfLatent { entry, scale, .. } => write!(f, "HfLatent({}, scale {scale})", entry.name),
            TensorData::Values { v, .. } => write!(f, "Values({})", v.len()),
            TensorData::Gguf { index, mul, raw, .. } => write!(f, "Gguf(#{index}, mul {mul}, raw {raw})"),
        }
    }
}

/// Widens little-endian F32/F16/BF16 bytes to f32.
pub(crate) fn widen(dtype: DType, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
    match dtype {
        DType::F32 => out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        DType::F16 => out.extend(bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))),
        DType::BF16 => {
            out.extend(bytes.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)))
        }
        other => return Err(format!("dtype {other} is not a float type (F32, F16, BF16)")),
    }
    Ok(())
}

/// transformers `WeightQuant` as `tern_model::load::ternarize_absmean` computes it: returns
/// `(q, 1/q)` where the ternary value of `w` is `round_half_even(w·q)` clamped to ±1.
pub(crate) fn absmean_scale(entry: &TensorEntry) -> Result<(f32, f32), String> {
    let bytes = entry.bytes();
    let esize = entry.dtype.size();
    let mut sum = 0f64;
    let mut buf = Vec::new();
    let mut index = 0usize;
    for chunk in bytes.chunks(esize * 65536) {
        buf.clear();
        widen(entry.dtype, chunk, &mut buf)?;
        for &x in &buf {
            if !x.is_finite() {
                return Err(format!("non-finite latent weight {x} at index {index}"));
            }
            sum += f64::from(x.abs());
            index += 1;
        }
    }
    let mean = ((sum / index.max(1) as f64) as f32).max(1e-5);
    let q = 1.0f32 / mean;
    Ok((q, 1.0 / q))
}

impl TensorData {
    /// Appends rows `r0..r1` (each `cols` values) to `out`.
    pub(crate) fn rows(&self, r0: usize, r1: usize, out: &mut Vec<f32>) -> Result<(), String> {
        match self {
            TensorData::HfFloat { entry, cols, perm } => {
                let rb = cols * entry.dtype.size();
                let bytes = entry.bytes();
                for r in r0..r1 {
                    let src = perm.as_ref().map_or(r, |p| p[r]);
                    let row = bytes.get(src * rb..(src + 1) * rb).ok_or("row outside the tensor data")?;
                    widen(entry.dtype, row, out)?;
                }
                Ok(())
            }
            TensorData::HfPacked { entry, rows, cols, scale, perm } => {
                let prow = rows / 4;
                let bytes = entry.bytes();
                for r in r0..r1 {
                    let src = perm.as_ref().map_or(r, |p| p[r]);
                    let (lane, p) = (src / prow, src % prow);
                    let row = bytes.get(p * cols..(p + 1) * cols).ok_or("row outside the tensor data")?;
                    for (c, &b) in row.iter().enumerate() {
                        let code = (b >> (2 * lane)) & 3;
                        if code == 3 {
                            return Err(format!(
                                "invalid ternary code 3 at row {src}, column {c} (packed byte {b:#04x})"
                            ));
                        }
                        out.push(f32::from(i16::from(code) - 1) * scale);
                    }
                }
                Ok(())
            }
            TensorData::HfLatent { entry, cols, q, scale, perm } => {
                let rb = cols * entry.dtype.size();
                let bytes = entry.bytes();
                let mut tmp = Vec::with_capacity(*cols);
                for r in r0..r1 {
                    let src = perm.as_ref().map_or(r, |p| p[r]);
                    let row = bytes.get(src * rb..(src + 1) * rb).ok_or("row outside the tensor data")?;
                    tmp.clear();
                    widen(entry.dtype, row, &mut tmp)?;
                    out.extend(tmp.iter().map(|&x| (x * q).round_ties_even().clamp(-1.0, 1.0) * scale));
                }
                Ok(())
            }
            TensorData::Values { v, cols } => {
                out.extend_from_slice(v.get(r0 * cols..r1 * cols).ok_or("rows outside the values")?);
                Ok(())
            }
            TensorData::Gguf { file, index, mul, .. } => {
                let t = file.tensors().get(*index).ok_or("tensor index out of range")?;
                let ne0 = t.ne0() as usize;
                let data = file.tensor_data(t).map_err(|e| e.to_string())?;
                let start = out.len();
                out.resize(start + (r1 - r0) * ne0, 0.0);
                if t.ggml_type == GgmlType::I2_S {
                    let n = t.n_elements() as usize;
                    let s = i2s::tensor_scale(data, n).map_err(|e| e.to_string())?;
                    let packed = data.get(r0 * ne0 / 4..r1 * ne0 / 4).ok_or("rows outside the tensor data")?;
                    i2s::dequantize_packed_into(packed, s, &mut out[start..]).map_err(|e| e.to_string())?;
                } else {
                    let rb = t.ggml_type.row_size(ne0 as u64).ok_or("row size undefined for the type")? as usize;
                    let bytes = data.get(r0 * rb..r1 * rb).ok_or("rows outside the tensor data")?;
                    tern_quants::dequantize_into(t.ggml_type, bytes, &mut out[start..]).map_err(|e| e.to_string())?;
                }
                if *mul != 1.0 {
                    for x in &mut out[start..] {
                        *x *= mul;
                    }
                }
                Ok(())
            }
        }
    }

    /// The raw bytes to copy unchanged, if this tensor is a verbatim copy.
    pub(crate) fn raw(&self) -> Option<Result<&[u8], String>> {
        match self {
            TensorData::Gguf { file, index, raw: true, .. } => {
                let t = file.tensors().get(*index)?;
                Some(file.tensor_data(t).map_err(|e| e.to_string()))
            }
            _ => None,
        }
    }
}

/// `perm[gguf_row] = hf_row` for `LlamaModel.permute(w, n_head)`: HF row `h·hd + j·hd/2 + i`
/// goes to GGUF row `h·hd + 2i + j` (the inverse of `tern_model::load_gguf`'s reorder).
pub(crate) fn llama_permutation(n_head: usize, head_dim: usize) -> Perm {
    let half = head_dim / 2;
    let mut perm = vec![0; n_head * head_dim];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                perm[h * head_dim + 2 * i + j] = h * head_dim + j * half + i;
            }
        }
    }
    Arc::new(perm)
}

#[cfg(test)]
mod tests {
    #[test]
    fn permutation_matches_llama_permute() {
        // numpy: w.reshape(n_head, 2, hd // 2, cols).swapaxes(1, 2).reshape(w.shape), on row indices.
        let (nh, hd) = (2usize, 6usize);
        let mut expected = Vec::new();
        for h in 0..nh {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    expected.push(h * hd + j * (hd / 2) + i);
                }
            }
        }
        assert_eq!(*super::llama_permutation(nh, hd), expected);
    }
}
