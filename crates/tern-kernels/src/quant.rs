//! Matrices stored in ggml block-quantized formats (Q4_0 … Q6_K, TQ1_0/TQ2_0, …), kept packed.
//!
//! [`matmul`] is the portable reference: each task widens 256-element chunks of a row (whole ggml
//! blocks; every supported type's block size divides 256) with tern-quants' reference dequantizer
//! into a stack buffer and dots them with the f32 activations, reusing each widened chunk for every
//! token. The weights never exist in f32 as a whole.

use crate::buf::ByteBuf;
use crate::pool::ThreadPool;
use crate::ternary::SyncPtr;
use tern_quants::GgmlType;

/// Elements widened at a time (a whole number of blocks for every type accepted by [`QuantMatrix::new`]).
const CHUNK: usize = 256;

/// A `rows × cols` matrix of ggml blocks, row-major (each row `cols / block_size` blocks).
#[derive(Clone, Debug)]
pub struct QuantMatrix {
    rows: usize,
    cols: usize,
    ty: GgmlType,
    row_bytes: usize,
    bytes: ByteBuf,
}

/// Why bytes cannot be used as a quantized matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantMatrixError {
    Unsupported(GgmlType),
    /// `cols` is not a whole number of blocks (or of 256-element chunks for 256-blocks).
    Cols {
        ty: GgmlType,
        cols: usize,
    },
    Length {
        expected: usize,
        found: usize,
    },
}

impl std::fmt::Display for QuantMatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuantMatrixError::Unsupported(t) => write!(f, "tensor type {t} cannot be used as a matrix here"),
            QuantMatrixError::Cols { ty, cols } => write!(f, "row length {cols} is not a whole number of {ty} blocks"),
            QuantMatrixError::Length { expected, found } => write!(f, "expected {expected} bytes, found {found}"),
        }
    }
}

impl std::error::Error for QuantMatrixError {}

impl QuantMatrix {
    pub fn new(rows: usize, cols: usize, ty: GgmlType, bytes: ByteBuf) -> Result<Self, QuantMatrixError> {
        if !ty.can_dequantize() || ty == GgmlType::I2_S {
            return Err(QuantMatrixError::Unsupported(ty));
        }
        let bs = ty.block_size() as usize;
        if bs == 0 || !CHUNK.is_multiple_of(bs) || !cols.is_multiple_of(bs) {
            return Err(QuantMatrixError::Cols { ty, cols });
        }
        let row_bytes = tern_quants::storage_size(ty, cols).ok_or(QuantMatrixError::Cols { ty, cols })?;
        let expected = row_bytes.saturating_mul(rows);
        if bytes.len() != expected {
            return Err(QuantMatrixError::Length { expected, found: bytes.len() });
        }
        Ok(QuantMatrix { rows, cols, ty, row_bytes, bytes })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Widens row `r` into `out` (`cols` values), e.g. for an embedding lookup.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        let src = &self.bytes.as_bytes()[r * self.row_bytes..(r + 1) * self.row_bytes];
        // Lengths were validated in `new`, so this cannot fail.
        let _ = tern_quants::dequantize_into(self.ty, src, &mut out[..self.cols]);
    }
}

/// `out[t·rows + r] = Σ_k x[t·cols + k] · W[r, k]`.
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn matmul(pool: &ThreadPool, w: &QuantMatrix, x: &[f32], out: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    assert!(x.len().is_multiple_of(cols), "quant::matmul: activation length");
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "quant::matmul: output length");
    let bs = w.ty.block_size() as usize;
    let chunk_bytes = |n: usize| n / bs * (w.row_bytes / (cols / bs));
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let data = w.bytes.as_bytes();
    pool.for_range(rows, 4, &|r0, r1| {
        let out_ptr = &out_ptr;
        let mut buf = [0f32; CHUNK];
        for r in r0..r1 {
            let row = &data[r * w.row_bytes..(r + 1) * w.row_bytes];
            for t in 0..tokens {
                // SAFETY: (t, r) is written only by the task owning row r; in bounds (checked above).
                unsafe { *out_ptr.0.add(t * rows + r) = 0.0 };
            }
            let (mut k0, mut b0) = (0, 0);
            while k0 < cols {
                let kn = (cols - k0).min(CHUNK);
                let nb = chunk_bytes(kn);
                let _ = tern_quants::dequantize_into(w.ty, &row[b0..b0 + nb], &mut buf[..kn]);
                for t in 0..tokens {
                    let d = crate::dense::dot_f32(&buf[..kn], &x[t * cols + k0..t * cols + k0 + kn]);
                    // SAFETY: as above.
                    unsafe { *out_ptr.0.add(t * rows + r) += d };
                }
                k0 += kn;
                b0 += nb;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_dequantized_dense() {
        let pool = ThreadPool::new(2);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::TQ2_0] {
            let (rows, cols, tokens) = (5usize, 512usize, 20usize);
            let vals: Vec<f32> = (0..rows * cols).map(|i| (((i * 7919) % 201) as f32 - 100.0) / 97.0).collect();
            let q = tern_quants::quantize(ty, &vals).unwrap();
            let deq = tern_quants::dequantize(ty, &q, rows * cols).unwrap();
            let m = QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(q)).unwrap();
            let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
            let mut out = vec![0f32; tokens * rows];
            matmul(&pool, &m, &x, &mut out);
            for t in 0..tokens {
                for r in 0..rows {
                    let want: f32 = (0..cols).map(|k| deq[r * cols + k] * x[t * cols + k]).sum();
                    assert!((out[t * rows + r] - want).abs() < 1e-3 * (1.0 + want.abs()), "{ty} t{t} r{r}");
                }
            }
        }
    }
}
