//! Dense f32 / f16 / bf16 weights and `y = x · Wᵀ` with f32 activations and f32 accumulation.
//!
//! Weights stay in their stored dtype (little-endian, row-major `rows × cols`, as in safetensors and
//! PyTorch `nn.Linear.weight`) and are widened to f32 a chunk at a time inside the kernel, matching
//! transformers' float32 compute on upcast weights.

use crate::buf::ByteBuf;
use crate::pool::ThreadPool;

/// Storage dtype of a dense matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseDType {
    F32,
    F16,
    BF16,
}

impl DenseDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DenseDType::F32 => 4,
            DenseDType::F16 | DenseDType::BF16 => 2,
        }
    }
    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            DenseDType::F32 => "f32",
            DenseDType::F16 => "f16",
            DenseDType::BF16 => "bf16",
        }
    }
}

/// A dense row-major matrix.
#[derive(Clone, Debug)]
pub struct DenseMatrix {
    rows: usize,
    cols: usize,
    dtype: DenseDType,
    bytes: ByteBuf,
}

/// Returned when the byte length does not match `rows × cols × dtype size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenseLenError {
    pub expected: usize,
    pub found: usize,
}

impl DenseMatrix {
    /// Wraps bytes as a `rows × cols` matrix.
    pub fn new(rows: usize, cols: usize, dtype: DenseDType, bytes: ByteBuf) -> Result<Self, DenseLenError> {
        let expected = rows.saturating_mul(cols).saturating_mul(dtype.size());
        if bytes.len() != expected {
            return Err(DenseLenError { expected, found: bytes.len() });
        }
        Ok(DenseMatrix { rows, cols, dtype, bytes })
    }

    /// An owned f32 matrix.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Result<Self, DenseLenError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(rows, cols, DenseDType::F32, ByteBuf::from_vec(bytes))
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn dtype(&self) -> DenseDType {
        self.dtype
    }
    /// Bytes held.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Widens row `r` into `out` (`out.len() == cols`).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        let rb = self.cols * self.dtype.size();
        let src = &self.bytes.as_bytes()[r * rb..(r + 1) * rb];
        widen(self.dtype, src, out);
    }

    /// All values widened to f32 (for tests and load-time transforms).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.rows * self.cols];
        widen(self.dtype, self.bytes.as_bytes(), &mut v);
        v
    }
}

/// Widens little-endian `src` of `dtype` into `out` (`src.len() == out.len() * size`).
pub fn widen(dtype: DenseDType, src: &[u8], out: &mut [f32]) {
    match dtype {
        DenseDType::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DenseDType::BF16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
            }
        }
        DenseDType::F16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
    }
}

/// `out[t·rows + r] = Σ_k x[t·cols + k] · W[r, k]` for `tokens = x.len() / cols` tokens.
///
/// Runs on the active ISA ([`crate::simd::level`]); SIMD paths differ from the scalar reference only
/// in summation order.
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn matmul(pool: &ThreadPool, w: &DenseMatrix, x: &[f32], out: &mut [f32]) {
    let view = crate::simd::DenseView { rows: w.rows, cols: w.cols, dtype: w.dtype, bytes: w.bytes.as_bytes() };
    crate::simd::dense_matmul(crate::simd::level(), pool, view, x, out);
}

/// f32 dot product on the active ISA ([`crate::simd::level`]); the scalar reference is
/// [`crate::simd::dot_f32_scalar`].
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    crate::simd::dot_f32(crate::simd::level(), a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_all_dtypes() {
        let pool = ThreadPool::new(2);
        let (rows, cols, tokens) = (7usize, 1030usize, 3usize);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 13 % 29) as f32 - 14.0) / 16.0).collect();
        for dtype in [DenseDType::F32, DenseDType::F16, DenseDType::BF16] {
            // All values are exactly representable in f16 and bf16.
            let bytes: Vec<u8> = match dtype {
                DenseDType::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
                DenseDType::F16 => w.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
                DenseDType::BF16 => w.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            };
            let m = DenseMatrix::new(rows, cols, dtype, ByteBuf::from_vec(bytes)).unwrap();
            let mut out = vec![0f32; tokens * rows];
            matmul(&pool, &m, &x, &mut out);
            for t in 0..tokens {
                for r in 0..rows {
                    let naive: f64 = (0..cols).map(|k| w[r * cols + k] as f64 * x[t * cols + k] as f64).sum();
                    assert!((out[t * rows + r] as f64 - naive).abs() < 1e-3, "{dtype:?} t{t} r{r}");
                }
            }
        }
    }

    #[test]
    fn rejects_wrong_length() {
        assert!(DenseMatrix::new(2, 3, DenseDType::BF16, ByteBuf::from_vec(vec![0; 11])).is_err());
    }
}
