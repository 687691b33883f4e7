//! Ternary weights, packed 2 or 1.6 bits per weight, and the ternary × int8 matrix product.
//!
//! # Layouts
//! A `rows × cols` matrix of values in {-1, 0, 1} is stored row-major, each row padded along K (the
//! input dimension) with zero weights to whole blocks. Weights are stored as codes `w + 1` ∈ {0, 1, 2}.
//!
//! * [`TernaryLayout::T2`] (I2_S-style, 2 bits per weight): blocks of [`BLOCK`] = 128 weights in 32
//!   bytes. Inside a block, byte `j` (0..32) holds the weights `j`, `j+32`, `j+64`, `j+96` in bit
//!   pairs 0-1, 2-3, 4-5, 6-7. Unpacking lane `i` of a whole block is one shift and one mask of 32
//!   bytes, producing 32 consecutive codes that line up with 32 consecutive int8 activations: the shape
//!   SIMD kernels (AVX2 `maddubs`, AVX-512 VNNI `dpbusd`, NVIDIA `dp4a`) consume without shuffles.
//! * [`TernaryLayout::Tq2`]: ggml's `TQ2_0` blocks exactly as a GGUF file stores them (256 weights in
//!   66 bytes: 64 code bytes, which are two T2 blocks, then an f16 scale). Used in place (zero copy)
//!   when every block carries the same scale ([`TernaryMatrix::from_tq2_0`] checks it and returns the
//!   scale); the kernels skip the 2 scale bytes. K must be a multiple of 256.
//! * [`TernaryLayout::T1`] (1.6 bits per weight, TQ1-style base 3): blocks of [`T1_BLOCK`] = 320
//!   weights in 64 bytes. Byte `j` (0..64) holds the five weights `j + 64·n` (n = 0..5) as the base-3
//!   number `v = Σ c_n·3^(4−n)` (first weight most significant), stored as `q = ⌈v·256/243⌉` like
//!   ggml's TQ1_0, so that digit `n` is `((q·3^n mod 256)·3) >> 8`. Digit plane `n` of a block is 64
//!   codes in line with the 64 activations `x[320b + 64n ..]`.
//!
//! Because codes are `w + 1 ≥ 0`, kernels compute `Σ code·x` with unsigned × signed byte products and
//! subtract `Σ x` (carried with the quantized activations, see [`crate::act`]) once per row:
//! `Σ w·x = Σ (code − 1)·x = Σ code·x − Σ x`. Padding activations are zero, so padding never matters.
//!
//! The per-tensor weight scale is not stored here: callers fold it, with the activation scale, into
//! one f32 factor per token (see [`matmul`]).

use crate::act::ActScale;
use crate::buf::ByteBuf;
use crate::pool::ThreadPool;

/// Weights per T2 block along K.
pub const BLOCK: usize = 128;
/// Bytes per T2 block.
pub const BLOCK_BYTES: usize = BLOCK / 4;
/// Weights per ggml TQ2_0 block (two T2 blocks).
pub const TQ2_BLOCK: usize = 256;
/// Bytes per ggml TQ2_0 block (64 code bytes + f16 scale).
pub const TQ2_BLOCK_BYTES: usize = 66;
/// Weights per T1 block along K.
pub const T1_BLOCK: usize = 320;
/// Bytes per T1 block.
pub const T1_BLOCK_BYTES: usize = 64;

/// How a [`TernaryMatrix`] packs its codes (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TernaryLayout {
    /// tern's 2-bit layout: 128 weights in 32 bytes.
    T2,
    /// ggml TQ2_0 blocks in place: 256 weights in 66 bytes (two T2 blocks + an ignored f16 scale).
    Tq2,
    /// tern's base-3 layout: 320 weights in 64 bytes (1.6 bits per weight).
    T1,
}

impl TernaryLayout {
    /// Short name for reports (`t2`, `tq2_0`, `t1`).
    pub fn name(self) -> &'static str {
        match self {
            TernaryLayout::T2 => "t2",
            TernaryLayout::Tq2 => "tq2_0",
            TernaryLayout::T1 => "t1",
        }
    }
    /// Weights per block along K (rows are padded to a multiple of it).
    pub fn block(self) -> usize {
        match self {
            TernaryLayout::T2 => BLOCK,
            TernaryLayout::Tq2 => TQ2_BLOCK,
            TernaryLayout::T1 => T1_BLOCK,
        }
    }
    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            TernaryLayout::T2 => BLOCK_BYTES,
            TernaryLayout::Tq2 => TQ2_BLOCK_BYTES,
            TernaryLayout::T1 => T1_BLOCK_BYTES,
        }
    }
    /// K padded to whole blocks.
    pub fn padded_k(self, cols: usize) -> usize {
        cols.div_ceil(self.block()) * self.block()
    }
    /// Bytes of one packed row of `cols` weights.
    pub fn row_bytes(self, cols: usize) -> usize {
        self.padded_k(cols) / self.block() * self.block_bytes()
    }
}

/// A packed ternary matrix (see the module docs).
#[derive(Clone, Debug)]
pub struct TernaryMatrix {
    rows: usize,
    cols: usize,
    layout: TernaryLayout,
    data: ByteBuf,
}

impl PartialEq for TernaryMatrix {
    fn eq(&self, o: &Self) -> bool {
        self.rows == o.rows && self.cols == o.cols && self.layout == o.layout && self.data() == o.data()
    }
}
impl Eq for TernaryMatrix {}

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
    /// TQ2_0 rows must be whole 256-weight blocks.
    ColsNotMultiple { cols: usize, block: usize },
    /// A TQ2_0 block whose scale differs from the tensor's first non-zero block scale (bits of the f16).
    NonUniformScale { row: usize, block: usize, scale: u16, found: u16 },
    /// A TQ2_0 scale that is not a finite number.
    BadScale { row: usize, block: usize, bits: u16 },
    /// A T1 byte above 242 (five base-3 digits hold at most 242).
    BadT1Byte { row: usize, byte: usize, value: u8 },
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
            TernaryError::ColsNotMultiple { cols, block } => {
                write!(f, "row length {cols} is not a positive multiple of the {block}-weight block")
            }
            TernaryError::NonUniformScale { row, block, scale, found } => write!(
                f,
                "block {block} of row {row} has scale {} but the tensor's is {} (blocks with different scales)",
                f16_bits_to_f32(*found),
                f16_bits_to_f32(*scale)
            ),
            TernaryError::BadScale { row, block, bits } => {
                write!(f, "block {block} of row {row} has a non-finite scale (f16 bits {bits:#06x})")
            }
            TernaryError::BadT1Byte { row, byte, value } => {
                write!(f, "byte {byte} of row {row} is {value}, above the base-3 maximum 242")
            }
        }
    }
}

impl std::error::Error for TernaryError {}

/// IEEE half bits → f32 (exact).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// `3^(4−n)` for the five digits of a T1 byte (first weight most significant).
const T1_POW: [u16; 5] = [81, 27, 9, 3, 1];

/// The stored byte for five codes (each 0..=2), first code most significant: `⌈v·256/243⌉`.
#[inline]
pub fn t1_pack(codes: [u8; 5]) -> u8 {
    let v: u16 = codes.iter().zip(T1_POW).map(|(&c, p)| u16::from(c) * p).sum();
    (v * 256).div_ceil(243) as u8
}

/// Digit `n` (0..5) of a stored T1 byte: `((q·3^n mod 256)·3) >> 8`, as ggml decodes TQ1_0.
#[inline]
pub fn t1_digit(q: u8, n: usize) -> u8 {
    T1_DIGITS[n][q as usize]
}

/// `T1_DIGITS[n][q]` = digit `n` of the stored byte `q` (every byte decodes to a code ≤ 2).
pub(crate) static T1_DIGITS: [[u8; 256]; 5] = t1_digit_tables();

const fn t1_digit_tables() -> [[u8; 256]; 5] {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let mut t = [[0u8; 256]; 5];
    let mut n = 0;
    while n < 5 {
        let mut q = 0;
        while q < 256 {
            t[n][q] = (((q as u8).wrapping_mul(POW3[n]) as u16 * 3) >> 8) as u8;
            q += 1;
        }
        n += 1;
    }
    t
}

impl TernaryMatrix {
    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns (inputs, K) before padding.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The packing.
    pub fn layout(&self) -> TernaryLayout {
        self.layout
    }
    /// K padded to whole blocks; quantized activations must have this length.
    pub fn padded_cols(&self) -> usize {
        self.layout.padded_k(self.cols)
    }
    /// Bytes per packed row.
    pub fn row_bytes(&self) -> usize {
        self.layout.row_bytes(self.cols)
    }
    /// The packed bytes, `rows * row_bytes()` of them.
    pub fn data(&self) -> &[u8] {
        self.data.as_bytes()
    }
    /// Packed bytes of one row.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data()[r * rb..(r + 1) * rb]
    }

    /// Builds a T2 matrix from row-major values in {-1, 0, 1}.
    pub fn from_values(rows: usize, cols: usize, values: &[i8]) -> Result<Self, TernaryError> {
        Self::from_values_as(TernaryLayout::T2, rows, cols, values)
    }

    /// Builds a matrix in `layout` from row-major values in {-1, 0, 1}. For [`TernaryLayout::Tq2`]
    /// the block scales are written as 1.0 and `cols` must be a multiple of 256.
    pub fn from_values_as(
        layout: TernaryLayout,
        rows: usize,
        cols: usize,
        values: &[i8],
    ) -> Result<Self, TernaryError> {
        let expected = rows * cols;
        if values.len() != expected {
            return Err(TernaryError::Length { expected, found: values.len() });
        }
        if layout == TernaryLayout::Tq2 && !cols.is_multiple_of(TQ2_BLOCK) {
            return Err(TernaryError::ColsNotMultiple { cols, block: TQ2_BLOCK });
        }
        let rb = layout.row_bytes(cols);
        let mut data = vec![0u8; rows * rb];
        let mut codes = vec![1u8; layout.padded_k(cols)];
        for r in 0..rows {
            for (c, (dst, &v)) in codes.iter_mut().zip(&values[r * cols..(r + 1) * cols]).enumerate() {
                if !(-1..=1).contains(&v) {
                    return Err(TernaryError::BadValue { row: r, col: c, value: v });
                }
                *dst = (v + 1) as u8;
            }
            pack_row(layout, &codes, &mut data[r * rb..(r + 1) * rb]);
        }
        Ok(TernaryMatrix { rows, cols, layout, data: ByteBuf::from_vec(data) })
    }

    /// Builds from rows of codes (`w + 1` ∈ {0, 1, 2}), `row_codes(r, out)` filling `padded_k` codes
    /// of row `r` (padding must be 1). The fast path for generated or converted weights; codes are
    /// not validated beyond what the layout can hold (a code of 3 means `w = 2` in T2 / Tq2).
    pub fn from_code_rows(
        layout: TernaryLayout,
        rows: usize,
        cols: usize,
        row_codes: &(dyn Fn(usize, &mut [u8]) + Sync),
        threads: usize,
    ) -> Self {
        let rb = layout.row_bytes(cols);
        let kp = layout.padded_k(cols);
        let mut data = vec![0u8; rows * rb];
        let threads = threads.max(1).min(rows.max(1));
        let per = rows.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for (i, chunk) in data.chunks_mut(per * rb.max(1)).enumerate() {
                s.spawn(move || {
                    let mut codes = vec![1u8; kp];
                    for (j, dst) in chunk.chunks_exact_mut(rb.max(1)).enumerate() {
                        codes.fill(1);
                        row_codes(i * per + j, &mut codes);
                        pack_row(layout, &codes, dst);
                    }
                });
            }
        });
        TernaryMatrix { rows, cols, layout, data: ByteBuf::from_vec(data) }
    }

    /// Wraps packed T2 bytes (`rows × row_bytes`), rejecting 2-bit codes of 3.
    pub fn from_t2_bytes(rows: usize, cols: usize, data: ByteBuf) -> Result<Self, TernaryError> {
        let m = TernaryMatrix { rows, cols, layout: TernaryLayout::T2, data };
        let expected = rows * m.row_bytes();
        if m.data.len() != expected {
            return Err(TernaryError::Length { expected, found: m.data.len() });
        }
        let rb = m.row_bytes();
        for (i, &b) in m.data().iter().enumerate() {
            let hi = b & (b >> 1) & 0x55;
            if hi != 0 {
                let lane = hi.trailing_zeros() as usize / 2;
                let (r, byte) = (i / rb, i % rb);
                let col = byte / BLOCK_BYTES * BLOCK + lane * BLOCK_BYTES + byte % BLOCK_BYTES;
                return Err(TernaryError::BadCode { row: r, col });
            }
        }
        Ok(m)
    }

    /// Uses ggml `TQ2_0` blocks in place (zero copy) when every block has the same f16 scale `d`
    /// (blocks with `d = 0` are accepted when all their weights are zero). Returns the matrix and `d`;
    /// the weights are `(code − 1)·d` exactly as ggml dequantizes them, codes of 3 included.
    pub fn from_tq2_0(rows: usize, cols: usize, data: ByteBuf) -> Result<(Self, f32), TernaryError> {
        if cols == 0 || !cols.is_multiple_of(TQ2_BLOCK) {
            return Err(TernaryError::ColsNotMultiple { cols, block: TQ2_BLOCK });
        }
        let m = TernaryMatrix { rows, cols, layout: TernaryLayout::Tq2, data };
        let rb = m.row_bytes();
        let expected = rows * rb;
        if m.data.len() != expected {
            return Err(TernaryError::Length { expected, found: m.data.len() });
        }
        let mut scale: Option<u16> = None;
        for (i, blk) in m.data().chunks_exact(TQ2_BLOCK_BYTES).enumerate() {
            let bits = u16::from_le_bytes([blk[64], blk[65]]);
            let (row, block) = (i / (rb / TQ2_BLOCK_BYTES), i % (rb / TQ2_BLOCK_BYTES));
            if !f16_bits_to_f32(bits).is_finite() {
                return Err(TernaryError::BadScale { row, block, bits });
            }
            if bits & 0x7FFF == 0 && blk[..64].iter().all(|&b| b == 0x55) {
                continue;
            }
            match scale {
                None => scale = Some(bits),
                Some(s) if s == bits => {}
                Some(s) => return Err(TernaryError::NonUniformScale { row, block, scale: s, found: bits }),
            }
        }
        let d = scale.map_or(0.0, f16_bits_to_f32);
        Ok((m, d))
    }

    /// Wraps packed T1 bytes (`rows × row_bytes`), rejecting bytes above 242.
    pub fn from_t1_bytes(rows: usize, cols: usize, data: ByteBuf) -> Result<Self, TernaryError> {
        let m = TernaryMatrix { rows, cols, layout: TernaryLayout::T1, data };
        let expected = rows * m.row_bytes();
        if m.data.len() != expected {
            return Err(TernaryError::Length { expected, found: m.data.len() });
        }
        // ⌈242·256/243⌉ = 255: every byte is the image of some v ≤ 242, except the few the ceiling skips;
        // decode and re-encode to reject bytes that are not canonical.
        let rb = m.row_bytes();
        for (i, &q) in m.data().iter().enumerate() {
            let codes = [0, 1, 2, 3, 4].map(|n| t1_digit(q, n));
            if codes.iter().any(|&c| c > 2) || t1_pack(codes) != q {
                return Err(TernaryError::BadT1Byte { row: i / rb, byte: i % rb, value: q });
            }
        }
        Ok(m)
    }

    /// The same weights in another layout (T2 ↔ T1 ↔ Tq2; Tq2 output writes scale 1.0).
    pub fn to_layout(&self, layout: TernaryLayout, threads: usize) -> Result<Self, TernaryError> {
        if layout == self.layout {
            return Ok(self.clone());
        }
        if layout == TernaryLayout::Tq2 && !self.cols.is_multiple_of(TQ2_BLOCK) {
            return Err(TernaryError::ColsNotMultiple { cols: self.cols, block: TQ2_BLOCK });
        }
        let cols = self.cols;
        Ok(Self::from_code_rows(layout, self.rows, cols, &|r, out| self.row_codes(r, &mut out[..cols]), threads))
    }

    /// An all-zero-weight T2 matrix (every code 1).
    pub fn zeros(rows: usize, cols: usize) -> Self {
        let rb = TernaryLayout::T2.row_bytes(cols);
        TernaryMatrix { rows, cols, layout: TernaryLayout::T2, data: ByteBuf::from_vec(vec![0b0101_0101; rows * rb]) }
    }

    /// Sets weight `(r, c)` to `v` ∈ {-1, 0, 1} (copies the data first if it is shared).
    pub fn set(&mut self, r: usize, c: usize, v: i8) {
        let mut codes = vec![1u8; self.padded_cols()];
        self.row_codes(r, &mut codes[..self.cols]);
        codes[c] = (v + 1) as u8;
        let rb = self.row_bytes();
        let mut data = self.data().to_vec();
        pack_row(self.layout, &codes, &mut data[r * rb..(r + 1) * rb]);
        if self.layout == TernaryLayout::Tq2 {
            // keep the original scales
            for (dst, src) in data[r * rb..(r + 1) * rb]
                .chunks_exact_mut(TQ2_BLOCK_BYTES)
                .zip(self.row(r).chunks_exact(TQ2_BLOCK_BYTES))
            {
                dst[64..66].copy_from_slice(&src[64..66]);
            }
        }
        self.data = ByteBuf::from_vec(data);
    }

    /// Weight `(r, c)` as a value in {-1, 0, 1} (2 for a TQ2_0 code of 3).
    pub fn get(&self, r: usize, c: usize) -> i8 {
        code_at(self.layout, self.row(r), c) as i8 - 1
    }

    /// Codes (`w + 1`) of the first `out.len()` weights of row `r`.
    pub fn row_codes(&self, r: usize, out: &mut [u8]) {
        let row = self.row(r);
        match self.layout {
            TernaryLayout::T2 | TernaryLayout::Tq2 => {
                let stride = if self.layout == TernaryLayout::T2 { 2 * BLOCK_BYTES } else { TQ2_BLOCK_BYTES };
                for (b, chunk) in out.chunks_mut(BLOCK).enumerate() {
                    let off = (b / 2) * stride + (b % 2) * BLOCK_BYTES;
                    let blk = &row[off..off + BLOCK_BYTES];
                    for (i, o) in chunk.iter_mut().enumerate() {
                        *o = (blk[i % BLOCK_BYTES] >> (2 * (i / BLOCK_BYTES))) & 3;
                    }
                }
            }
            TernaryLayout::T1 => {
                for (blk, chunk) in row.chunks_exact(T1_BLOCK_BYTES).zip(out.chunks_mut(T1_BLOCK)) {
                    for (i, o) in chunk.iter_mut().enumerate() {
                        *o = t1_digit(blk[i % T1_BLOCK_BYTES], i / T1_BLOCK_BYTES);
                    }
                }
            }
        }
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
        let layout = TernaryLayout::T2;
        let rb = layout.row_bytes(cols);
        let mut data = vec![0u8; rows * rb];
        let mut codes = vec![1u8; layout.padded_k(cols)];
        for lane in 0..4 {
            for p in 0..prow {
                let r = lane * prow + p;
                let src = &packed[p * cols..(p + 1) * cols];
                for (c, (&b, dst)) in src.iter().zip(codes.iter_mut()).enumerate() {
                    let code = (b >> (2 * lane)) & 3;
                    if code == 3 {
                        return Err(TernaryError::BadCode { row: r, col: c });
                    }
                    *dst = code;
                }
                pack_row(layout, &codes, &mut data[r * rb..(r + 1) * rb]);
            }
        }
        Ok(TernaryMatrix { rows, cols, layout, data: ByteBuf::from_vec(data) })
    }
}

/// Weights per ggml TQ1_0 block.
pub const TQ1_BLOCK: usize = 256;
/// Bytes per ggml TQ1_0 block (`qs[48]`, `qh[4]`, f16 `d`).
pub const TQ1_BLOCK_BYTES: usize = 54;

/// Writes ggml `TQ1_0` blocks for `codes` (a multiple of 256 codes `w + 1` ∈ {0, 1, 2}) with scale `d`,
/// byte for byte what `quantize_row_tq1_0_ref` writes for the values `(code − 1)·d` (an all-zero
/// block gets `d = 0`, as ggml's block absmax gives).
pub fn tq1_0_from_codes(codes: &[u8], d: f32, out: &mut [u8]) {
    let dbits = half::f16::from_f32(d).to_bits().to_le_bytes();
    for (c, blk) in codes.chunks_exact(TQ1_BLOCK).zip(out.chunks_exact_mut(TQ1_BLOCK_BYTES)) {
        for m in 0..32 {
            blk[m] = t1_pack([c[m], c[m + 32], c[m + 64], c[m + 96], c[m + 128]]);
        }
        for m in 0..16 {
            blk[32 + m] = t1_pack([c[160 + m], c[176 + m], c[192 + m], c[208 + m], c[224 + m]]);
        }
        for j in 0..4 {
            blk[48 + j] = t1_pack([c[240 + j], c[244 + j], c[248 + j], c[252 + j], 0]);
        }
        let zero = c.iter().all(|&v| v == 1);
        blk[52..54].copy_from_slice(if zero { &[0, 0] } else { &dbits });
    }
}

/// Writes ggml `TQ2_0` blocks for `codes` (a multiple of 256 codes) with scale `d` (all-zero blocks
/// get `d = 0`, as ggml's block absmax gives).
pub fn tq2_0_from_codes(codes: &[u8], d: f32, out: &mut [u8]) {
    let dbits = half::f16::from_f32(d).to_bits().to_le_bytes();
    for (c, blk) in codes.chunks_exact(TQ2_BLOCK).zip(out.chunks_exact_mut(TQ2_BLOCK_BYTES)) {
        pack_row(TernaryLayout::Tq2, c, blk);
        let zero = c.iter().all(|&v| v == 1);
        blk[64..66].copy_from_slice(if zero { &[0, 0] } else { &dbits });
    }
}

/// Decodes the 256 codes of one ggml `TQ1_0` block (its `d` is ignored).
pub fn tq1_0_block_codes(blk: &[u8], out: &mut [u8]) {
    for n in 0..5 {
        for m in 0..32 {
            out[32 * n + m] = t1_digit(blk[m], n);
        }
        for m in 0..16 {
            out[160 + 16 * n + m] = t1_digit(blk[32 + m], n);
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            out[240 + 4 * n + j] = t1_digit(blk[48 + j], n);
        }
    }
}

impl TernaryMatrix {
    /// Repacks ggml `TQ1_0` blocks into `layout` (T1 keeps 1.6 bits per weight) when every block
    /// has the same f16 scale `d` (all-zero blocks may have `d = 0`). Returns the matrix and `d`.
    /// The work is split over `threads` threads.
    pub fn from_tq1_0(
        layout: TernaryLayout,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        threads: usize,
    ) -> Result<(Self, f32), TernaryError> {
        if cols == 0 || !cols.is_multiple_of(TQ1_BLOCK) {
            return Err(TernaryError::ColsNotMultiple { cols, block: TQ1_BLOCK });
        }
        if layout == TernaryLayout::Tq2 && !cols.is_multiple_of(TQ2_BLOCK) {
            return Err(TernaryError::ColsNotMultiple { cols, block: TQ2_BLOCK });
        }
        let nb = cols / TQ1_BLOCK;
        let expected = rows * nb * TQ1_BLOCK_BYTES;
        if bytes.len() != expected {
            return Err(TernaryError::Length { expected, found: bytes.len() });
        }
        let mut scale: Option<u16> = None;
        for (i, blk) in bytes.chunks_exact(TQ1_BLOCK_BYTES).enumerate() {
            let bits = u16::from_le_bytes([blk[52], blk[53]]);
            let (row, block) = (i / nb, i % nb);
            if !f16_bits_to_f32(bits).is_finite() {
                return Err(TernaryError::BadScale { row, block, bits });
            }
            if bits & 0x7FFF == 0 {
                let mut codes = [0u8; TQ1_BLOCK];
                tq1_0_block_codes(blk, &mut codes);
                if codes.iter().all(|&c| c == 1) {
                    continue;
                }
            }
            match scale {
                None => scale = Some(bits),
                Some(s) if s == bits => {}
                Some(s) => return Err(TernaryError::NonUniformScale { row, block, scale: s, found: bits }),
            }
        }
        let rb = nb * TQ1_BLOCK_BYTES;
        let m = Self::from_code_rows(
            layout,
            rows,
            cols,
            &|r, out| {
                for (blk, o) in bytes[r * rb..(r + 1) * rb].chunks_exact(TQ1_BLOCK_BYTES).zip(out.chunks_mut(TQ1_BLOCK))
                {
                    tq1_0_block_codes(blk, o);
                }
            },
            threads,
        );
        Ok((m, scale.map_or(0.0, f16_bits_to_f32)))
    }
}

/// Packs `codes` (`layout.padded_k` of them, padding 1) into one row of `layout`; Tq2 blocks get
/// scale 1.0.
fn pack_row(layout: TernaryLayout, codes: &[u8], dst: &mut [u8]) {
    match layout {
        TernaryLayout::T2 | TernaryLayout::Tq2 => {
            let stride = if layout == TernaryLayout::T2 { 2 * BLOCK_BYTES } else { TQ2_BLOCK_BYTES };
            for (b, c) in codes.chunks_exact(BLOCK).enumerate() {
                let off = (b / 2) * stride + (b % 2) * BLOCK_BYTES;
                for (j, o) in dst[off..off + BLOCK_BYTES].iter_mut().enumerate() {
                    *o = c[j] | (c[j + 32] << 2) | (c[j + 64] << 4) | (c[j + 96] << 6);
                }
            }
            if layout == TernaryLayout::Tq2 {
                let one = half::f16::from_f32(1.0).to_bits().to_le_bytes();
                for blk in dst.chunks_exact_mut(TQ2_BLOCK_BYTES) {
                    blk[64..66].copy_from_slice(&one);
                }
            }
        }
        TernaryLayout::T1 => {
            for (c, blk) in codes.chunks_exact(T1_BLOCK).zip(dst.chunks_exact_mut(T1_BLOCK_BYTES)) {
                for (j, o) in blk.iter_mut().enumerate() {
                    *o = t1_pack([c[j], c[j + 64], c[j + 128], c[j + 192], c[j + 256]]);
                }
            }
        }
    }
}

/// The code of column `c` in a packed row.
fn code_at(layout: TernaryLayout, row: &[u8], c: usize) -> u8 {
    match layout {
        TernaryLayout::T2 | TernaryLayout::Tq2 => {
            let stride = if layout == TernaryLayout::T2 { 2 * BLOCK_BYTES } else { TQ2_BLOCK_BYTES };
            let (b, within) = (c / BLOCK, c % BLOCK);
            let off = (b / 2) * stride + (b % 2) * BLOCK_BYTES;
            (row[off + within % BLOCK_BYTES] >> (2 * (within / BLOCK_BYTES))) & 3
        }
        TernaryLayout::T1 => {
            let (b, within) = (c / T1_BLOCK, c % T1_BLOCK);
            t1_digit(row[b * T1_BLOCK_BYTES + within % T1_BLOCK_BYTES], within / T1_BLOCK_BYTES)
        }
    }
}

/// K rounded up to a whole number of T2 blocks.
pub fn padded_k(cols: usize) -> usize {
    cols.div_ceil(BLOCK) * BLOCK
}

/// `Σ code·x` over one packed T2 row (`x.len() == 4 * row.len()`), the reference implementation.
pub fn dot_codes_scalar(row: &[u8], x: &[i8]) -> i32 {
    dot_codes_scalar_as(TernaryLayout::T2, row, x)
}

/// `Σ code·x` over one packed row of `layout`: the reference every SIMD path is tested against.
/// Covers the whole blocks present in both `row` and `x`; sums wrap like i32 arithmetic.
pub fn dot_codes_scalar_as(layout: TernaryLayout, row: &[u8], x: &[i8]) -> i32 {
    let mut acc = 0i32;
    match layout {
        TernaryLayout::T2 | TernaryLayout::Tq2 => {
            let stride = if layout == TernaryLayout::T2 { 2 * BLOCK_BYTES } else { TQ2_BLOCK_BYTES };
            let nb = (row.len() / stride) * 2 + usize::from(row.len() % stride >= BLOCK_BYTES);
            for (b, xb) in x.chunks_exact(BLOCK).take(nb).enumerate() {
                let off = (b / 2) * stride + (b % 2) * BLOCK_BYTES;
                let blk = &row[off..off + BLOCK_BYTES];
                for lane in 0..4 {
                    let xs = &xb[lane * BLOCK_BYTES..(lane + 1) * BLOCK_BYTES];
                    let mut s = 0i32;
                    for (&b, &xv) in blk.iter().zip(xs) {
                        s = s.wrapping_add(((b >> (2 * lane)) & 3) as i32 * xv as i32);
                    }
                    acc = acc.wrapping_add(s);
                }
            }
        }
        TernaryLayout::T1 => {
            for (blk, xb) in row.chunks_exact(T1_BLOCK_BYTES).zip(x.chunks_exact(T1_BLOCK)) {
                for n in 0..5 {
                    let xs = &xb[n * T1_BLOCK_BYTES..(n + 1) * T1_BLOCK_BYTES];
                    let mut s = 0i32;
                    for (&q, &xv) in blk.iter().zip(xs) {
                        s += t1_digit(q, n) as i32 * xv as i32;
                    }
                    acc = acc.wrapping_add(s);
                }
            }
        }
    }
    acc
}

/// `Σ code·x` for one T2 row, on the active ISA ([`crate::simd::level`]); bit-exact with [`dot_codes_scalar`].
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

pub use crate::simd::{TernaryPart, MANY_MAX};

/// Several [`matmul`]s over the same quantized activations in one pool dispatch (see
/// [`crate::simd::ternary_matmul_many`]); bit-identical with separate calls.
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn matmul_many(pool: &ThreadPool, parts: &mut [TernaryPart<'_>], acts: &QuantizedActs<'_>) {
    crate::simd::ternary_matmul_many(crate::simd::level(), pool, parts, acts);
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
