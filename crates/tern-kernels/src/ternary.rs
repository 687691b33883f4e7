//! Ternary weights, packed 2 bits per weight, and the ternary × int8 matrix product.
//!
//! # Layout ("T2", I2_S-style)
//! A `rows × cols` matrix of values in {-1, 0, 1} is stored row-major. Each row is padded along K
//! (the input dimension) to a multiple of [`BLOCK`] = 128 with zero weights and cut into blocks of
//! 128 weights held in 32 bytes. Inside a block, byte `j` (0..32) holds the weights `j`, `j+32`,
//! `j+64`, `j+96` in bit pairs 0-1, 2-3, 4-5, 6-7, each stored as the code `w + 1` ∈ {0, 1, 2}.
//! Unpacking lane `i` of a whole block is one shift and one mask of 32 bytes, producing 32
//! consecutive weights that line up with 32 consecutive int8 activations: the shape SIMD kernels
//! (AVX2 `maddubs`, AVX-512 VNNI `dpbusd`, NVIDIA `dp4a`) consume without shuffles.
//!
//! Because codes are `w + 1 ≥ 0`, kernels compute `Σ code·x` with unsigned × signed byte products and
//! subtract `Σ x` (carried with the quantized activations, see [`crate::act`]) once per row:
//! `Σ w·x = Σ (code − 1)·x = Σ code·x − Σ x`. Padding activations are zero, so padding never matters.
//!
//! The per-tensor weight scale is not stored here: callers fold it, with the activation scale, into
//! one f32 factor per token (see [`matmul`]).

use crate::act::ActScale;
use crate::pool::ThreadPool;

/// Weights per block along K.
pub const BLOCK: usize = 128;
/// Bytes per block.
pub const BLOCK_BYTES: usize = BLOCK / 4;

/// A packed ternary matrix in the T2 layout (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TernaryMatrix {
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

/// Errors from building a ternary matrix out of caller data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TernaryError {
    /// The input slice has the wrong length for the stated shape.
    Length { expected: usize, found: usize },
    /// A 2-bit code of 3 (value 2) was found: not a ternary weight.
    BadCode { row: usize, col: usize },
    /// A value outside {-1, 0, 1}.
    BadValue { row: usize, col: usize, value: i8 },
    /// The packed HF layout needs `rows` to be a multiple of 4.
    RowsNotMultipleOf4 { rows: usize },
}

impl std::fmt::Display for TernaryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TernaryError::Length { expected, found } => {
                write!(f, "expected {expected} bytes of packed weights, found {found}")
            }
            TernaryError::BadCode { row, col } => {
                write!(f, "invalid 2-bit ternary code 3 at row {row}, column {col} (codes are 0, 1, 2 for -1, 0, 1)")
            }
            TernaryError::BadValue { row, col, value } => {
                write!(f, "value {value} at row {row}, column {col} is not ternary (-1, 0, 1)")
            }
            TernaryError::RowsNotMultipleOf4 { rows } => {
                write!(f, "packed ternary weights need a multiple of 4 output rows, found {rows}")
            }
        }
    }
}

impl std::error::Error for TernaryError {}

impl TernaryMatrix {
    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns (inputs, K) before padding.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// K padded to a multiple of [`BLOCK`]; quantized activations must have this length.
    pub fn padded_cols(&self) -> usize {
        padded_k(self.cols)
    }
    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        self.padded_cols() / 4
    }
    /// The packed bytes, `rows * row_bytes()` of them.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Packed bytes of one row.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Builds from row-major values in {-1, 0, 1}.
    pub fn from_values(rows: usize, cols: usize, values: &[i8]) -> Result<Self, TernaryError> {
        let expected = rows * cols;
        if values.len() != expected {
            return Err(TernaryError::Length { expected, found: values.len() });
        }
        let mut m = Self::zeros(rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                let v = values[r * cols + c];
                if !(-1..=1).contains(&v) {
                    return Err(TernaryError::BadValue { row: r, col: c, value: v });
                }
                m.set(r, c, v);
            }
        }
        Ok(m)
    }

    /// Builds from transformers' packed BitNet layout: a `(rows/4, cols)` uint8 tensor where bits
    /// `2i..2i+1` of element `(p, c)` hold the code of row `i·rows/4 + p`, column `c`, as written by
    /// `transformers.integrations.bitnet.pack_weights` (value = code − 1).
    pub fn from_hf_packed(rows: usize, cols: usize, packed: &[u8]) -> Result<Self, TernaryError> {
        if !rows.is_multiple_of(4) {
            return Err(TernaryError::RowsNotMultipleOf4 { rows });
        }
        let prow = rows / 4;
        let expected = prow * cols;
        if packed.len() != expected {
            return Err(TernaryError::Length { expected, found: packed.len() });
        }
        let mut m = Self::zeros(rows, cols);
        for p in 0..prow {
            let src = &packed[p * cols..(p + 1) * cols];
            for lane in 0..4 {
                let r = lane * prow + p;
                for (c, &b) in src.iter().enumerate() {
                    let code = (b >> (2 * lane)) & 3;
                    if code == 3 {
                        return Err(TernaryError::BadCode { row: r, col: c });
                    }
                    m.set_code(r, c, code);
                }
            }
        }
        Ok(m)
    }

    /// An all-zero-weight matrix (every code 1).
    pub fn zeros(rows: usize, cols: usize) -> Self {
        let rb = padded_k(cols) / 4;
        TernaryMatrix { rows, cols, data: vec![0b0101_0101; rows * rb] }
    }

    fn set_code(&mut self, r: usize, c: usize, code: u8) {
        let (byte, shift) = locate(c);
        let idx = r * self.row_bytes() + byte;
        self.data[idx] = (self.data[idx] & !(3 << shift)) | (code << shift);
    }

    /// Sets weight `(r, c)` to `v` ∈ {-1, 0, 1}.
    pub fn set(&mut self, r: usize, c: usize, v: i8) {
        self.set_code(r, c, (v + 1) as u8);
    }

    /// Weight `(r, c)` as a value in {-1, 0, 1}.
    pub fn get(&self, r: usize, c: usize) -> i8 {
        let (byte, shift) = locate(c);
        ((self.row(r)[byte] >> shift) & 3) as i8 - 1
    }
}

/// K rounded up to a whole number of blocks.
pub fn padded_k(cols: usize) -> usize {
    cols.div_ceil(BLOCK) * BLOCK
}

/// Byte index inside a row and bit shift of column `c`.
#[inline]
fn locate(c: usize) -> (usize, u32) {
    let block = c / BLOCK;
    let within = c % BLOCK;
    let lane = within / BLOCK_BYTES;
    let j = within % BLOCK_BYTES;
    (block * BLOCK_BYTES + j, 2 * lane as u32)
}

/// `Σ code·x` over one packed row (`x.len() == 4 * row.len()`), the reference implementation.
pub fn dot_codes_scalar(row: &[u8], x: &[i8]) -> i32 {
    debug_assert_eq!(x.len(), row.len() * 4);
    let mut acc = 0i32;
    for (blk, xb) in row.chunks_exact(BLOCK_BYTES).zip(x.chunks_exact(BLOCK)) {
        for lane in 0..4 {
            let xs = &xb[lane * BLOCK_BYTES..(lane + 1) * BLOCK_BYTES];
            let mut s = 0i32;
            for (&b, &xv) in blk.iter().zip(xs) {
                s += ((b >> (2 * lane)) & 3) as i32 * xv as i32;
            }
            acc += s;
        }
    }
    acc
}

/// `Σ code·x` for one row, on the active ISA ([`crate::simd::level`]); bit-exact with [`dot_codes_scalar`].
#[inline]
pub fn dot_codes(row: &[u8], x: &[i8]) -> i32 {
    crate::simd::dot_codes(crate::simd::level(), row, x)
}

/// Quantized activations for `tokens` tokens, each padded to the matrix's `padded_cols()`.
pub struct QuantizedActs<'a> {
    /// `tokens × padded_cols` int8 codes.
    pub codes: &'a [i8],
    /// One scale/sum per token.
    pub scales: &'a [ActScale],
}

/// `out[t·rows + r] = (Σ_k w[r,k]·q[t,k]) · factor[t]` for every token `t` and row `r`.
///
/// `factor[t]` folds the activation scale and the weight scale (e.g. `w_scale / s_t` for
/// transformers' `AutoBitLinear`, `1 / (w_scale · s_t)` for `BitLinear`).
///
/// Runs on the active ISA ([`crate::simd::level`]); every path gives bit-identical results.
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn matmul(pool: &ThreadPool, w: &TernaryMatrix, acts: &QuantizedActs<'_>, factor: &[f32], out: &mut [f32]) {
    crate::simd::ternary_matmul(crate::simd::level(), pool, w, acts, factor, out);
}

/// A raw pointer that may cross threads; used for disjoint writes from pool tasks.
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
// SAFETY: users guarantee that concurrent tasks write disjoint elements.
unsafe impl<T> Sync for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Send for SyncPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn hf_packed_layout_matches_transformers_docstring() {
        // transformers' unpack_weights docstring: packed [[0b10100001, 0b00011000],
        // [0b10010000, 0b00001010]] unpacks to the 8×2 matrix below (rows i·2+p).
        let packed = [0b1010_0001u8, 0b0001_1000, 0b1001_0000, 0b0000_1010];
        let m = TernaryMatrix::from_hf_packed(8, 2, &packed).unwrap();
        let expect: [[i8; 2]; 8] = [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]];
        for (r, row) in expect.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                assert_eq!(m.get(r, c), v, "row {r} col {c}");
            }
        }
    }

    #[test]
    fn hf_packed_rejects_code_3_and_bad_shapes() {
        assert_eq!(TernaryMatrix::from_hf_packed(4, 1, &[0b1100_0000]), Err(TernaryError::BadCode { row: 3, col: 0 }));
        assert!(matches!(TernaryMatrix::from_hf_packed(6, 1, &[0; 2]), Err(TernaryError::RowsNotMultipleOf4 { .. })));
        assert!(matches!(TernaryMatrix::from_hf_packed(8, 3, &[0x55; 5]), Err(TernaryError::Length { .. })));
    }

    #[test]
    fn block_layout_is_lane_major() {
        let cols = 300;
        let mut m = TernaryMatrix::zeros(1, cols);
        m.set(0, 0, 1);
        m.set(0, 32, -1);
        m.set(0, 129, 1);
        // byte 0 holds cols 0 (lane 0) and 32 (lane 1): codes 2 and 0, lanes 2,3 code 1.
        assert_eq!(m.row(0)[0], 0b0101_0010);
        // col 129 = block 1, lane 0, byte 1.
        assert_eq!(m.row(0)[32 + 1], 0b0101_0110);
        assert_eq!(m.row_bytes(), 3 * 32);
    }

    #[test]
    fn matmul_matches_naive() {
        let pool = ThreadPool::new(2);
        let mut seed = 7u64;
        for &(rows, cols, tokens) in &[(1usize, 1usize, 1usize), (4, 127, 2), (12, 129, 3), (33, 300, 1), (64, 704, 5)]
        {
            let vals: Vec<i8> = (0..rows * cols).map(|_| (lcg(&mut seed) % 3) as i8 - 1).collect();
            let w = TernaryMatrix::from_values(rows, cols, &vals).unwrap();
            let k = w.padded_cols();
            let mut codes = vec![0i8; tokens * k];
            let mut scales = Vec::new();
            for t in 0..tokens {
                let x: Vec<f32> = (0..cols).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
                scales.push(crate::act::quantize_i8(&x, &mut codes[t * k..(t + 1) * k]));
            }
            let factor = vec![1.0f32; tokens];
            let mut out = vec![0f32; tokens * rows];
            matmul(&pool, &w, &QuantizedActs { codes: &codes, scales: &scales }, &factor, &mut out);
            for t in 0..tokens {
                for r in 0..rows {
                    let naive: i32 = (0..cols).map(|c| vals[r * cols + c] as i32 * codes[t * k + c] as i32).sum();
                    assert_eq!(out[t * rows + r], naive as f32, "rows {rows} cols {cols} t {t} r {r}");
                }
            }
        }
    }
}
