//! Matrices stored in ggml block-quantized formats (Q4_0 … Q6_K, TQ1_0 / TQ2_0, …), kept packed, and
//! their product with f32 activations.
//!
//! [`matmul`] works like llama.cpp's CPU backend (`ggml_compute_forward_mul_mat` with the
//! `vec_dot_type` of each weight type): the activations of every token are quantized once per call
//! to int8 blocks ([`act`]: Q8_0-style 32-blocks for Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0, ggml's
//! `block_q8_K` for Q2_K … Q6_K and TQ1_0 / TQ2_0), then every weight block is multiplied with its
//! activation block in integer arithmetic and scaled once per block in f32. The integer semantics
//! are ggml's `ggml_vec_dot_<type>_q8_*` (see `scalar.rs`, the reference every SIMD path is tested
//! against); the AVX2 and AVX-512 VNNI kernels are in `x86.rs`.
//!
//! Loop structure (each pool task owns a range of output rows, cut into chunks of 64 rows, each one
//! kernel call per tile of up to 4 tokens):
//! * decode (1 token): tiles of 4 rows share every activation load;
//! * prefill (several tokens): tiles of 2 rows × 4 tokens unpack every weight block once for 4 tokens,
//!   and tokens are processed in blocks whose quantized activations stay in L2 while the rows stream.
//!
//! Types without an integer path (F32, F16, BF16) fall back to the portable product that widens
//! 256-element chunks of a row with tern-quants' dequantizer and dots them in f32.
//!
//! Dispatch: [`matmul`] runs [`level`] ([`crate::isa::active`] clamped to what this CPU runs; the
//! AVX2 path additionally needs F16C). [`matmul_on`] pins a path for tests and benchmarks.
//!
//! Scratch: the quantized activations live in a [`QuantScratch`]. [`matmul`] keeps one per thread,
//! so a warm decode loop allocates nothing; [`matmul_with`] takes the caller's.

pub mod act;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::cell::RefCell;

use crate::buf::ByteBuf;
use crate::isa::{self, Isa};
use crate::pool::ThreadPool;
use crate::ternary::SyncPtr;
use act::ActFormat;
use tern_quants::GgmlType;

/// Elements widened at a time by the f32 fallback (a whole number of blocks for every type accepted
/// by [`QuantMatrix::new`]).
const CHUNK: usize = 256;
/// Budget for one block of quantized activations (tokens × K bytes), sized for L2.
const ACT_BUDGET: usize = 256 * 1024;

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
    /// `cols` is zero or not a whole number of blocks.
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
            QuantMatrixError::Cols { ty, cols } => {
                write!(f, "row length {cols} is not a positive whole number of {ty} blocks")
            }
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
        if bs == 0 || cols == 0 || !CHUNK.is_multiple_of(bs) || !cols.is_multiple_of(bs) {
            return Err(QuantMatrixError::Cols { ty, cols });
        }
        let row_bytes = tern_quants::storage_size(ty, cols).ok_or(QuantMatrixError::Cols { ty, cols })?;
        let expected = row_bytes.saturating_mul(rows);
        if bytes.len() != expected {
            return Err(QuantMatrixError::Length { expected, found: bytes.len() });
        }
        if let Some(kind) = Kind::of(ty) {
            debug_assert_eq!(row_bytes, cols / kind.block() * kind.block_bytes());
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

    /// The packed bytes of row `r`.
    ///
    /// # Panics
    /// If `r >= rows`.
    pub fn row_bytes(&self, r: usize) -> &[u8] {
        &self.bytes.as_bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Widens row `r` into `out` (`cols` values), e.g. for an embedding lookup.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        // Lengths were validated in `new`, so this cannot fail.
        let _ = tern_quants::dequantize_into(self.ty, self.row_bytes(r), &mut out[..self.cols]);
    }
}

/// The block types with an integer dot product.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    TQ1,
    TQ2,
}

impl Kind {
    fn of(ty: GgmlType) -> Option<Kind> {
        Some(match ty {
            GgmlType::Q4_0 => Kind::Q4_0,
            GgmlType::Q4_1 => Kind::Q4_1,
            GgmlType::Q5_0 => Kind::Q5_0,
            GgmlType::Q5_1 => Kind::Q5_1,
            GgmlType::Q8_0 => Kind::Q8_0,
            GgmlType::Q2_K => Kind::Q2K,
            GgmlType::Q3_K => Kind::Q3K,
            GgmlType::Q4_K => Kind::Q4K,
            GgmlType::Q5_K => Kind::Q5K,
            GgmlType::Q6_K => Kind::Q6K,
            GgmlType::TQ1_0 => Kind::TQ1,
            GgmlType::TQ2_0 => Kind::TQ2,
            _ => return None,
        })
    }

    /// Elements per block.
    pub(crate) const fn block(self) -> usize {
        match self {
            Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 | Kind::Q8_0 => 32,
            _ => 256,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub(crate) const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q5_0 => 22,
            Kind::Q5_1 => 24,
            Kind::Q8_0 => 34,
            Kind::Q2K => 84,
            Kind::Q3K => 110,
            Kind::Q4K => 144,
            Kind::Q5K => 176,
            Kind::Q6K => 210,
            Kind::TQ1 => 54,
            Kind::TQ2 => 66,
        }
    }

    /// Whether weights carry a min / offset term (`d·q + m` or `d·sc·q − dmin·m`).
    pub(crate) const fn has_min(self) -> bool {
        matches!(self, Kind::Q4_1 | Kind::Q5_1 | Kind::Q2K | Kind::Q4K | Kind::Q5K)
    }

    const fn act(self) -> ActFormat {
        if self.block() == 32 {
            ActFormat::Q8x32
        } else {
            ActFormat::Q8K
        }
    }
}

/// Whether `ty` has an integer kernel (otherwise [`matmul`] widens it to f32).
pub fn has_integer_path(ty: GgmlType) -> bool {
    Kind::of(ty).is_some()
}

/// The activation format [`matmul`] quantizes to for weights of type `ty` (`None`: no integer path).
pub fn act_format(ty: GgmlType) -> Option<ActFormat> {
    Kind::of(ty).map(Kind::act)
}

/// One quantized token as the kernels read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActRow<'a> {
    /// `cols` int8 codes.
    pub qs: &'a [i8],
    /// One scale per block.
    pub d: &'a [f32],
    /// [`ActFormat::Q8x32`]: `Σ q` of each 32-block (else empty).
    pub sums: &'a [i32],
    /// [`ActFormat::Q8K`]: `Σ q` of each 16 codes (else empty).
    pub bsums: &'a [i16],
}

impl ActRow<'static> {
    const EMPTY: ActRow<'static> = ActRow { qs: &[], d: &[], sums: &[], bsums: &[] };
}

/// Reusable buffers for quantized activations (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct QuantScratch {
    format: Option<ActFormat>,
    cols: usize,
    tokens: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    sums: Vec<i32>,
    bsums: Vec<i16>,
}

impl QuantScratch {
    pub fn new() -> QuantScratch {
        QuantScratch::default()
    }

    /// Quantizes `x` (`tokens × cols`, row-major) as [`matmul`] does for weights of type `ty`.
    ///
    /// # Panics
    /// If `ty` has no integer path, or `cols` is not a whole number of its activation blocks, or
    /// `x.len()` is not a multiple of `cols` (caller bugs).
    pub fn quantize(&mut self, ty: GgmlType, cols: usize, x: &[f32]) {
        let kind = Kind::of(ty).unwrap_or_else(|| panic!("QuantScratch::quantize: {ty} has no integer path"));
        self.quantize_as(kind.act(), cols, x);
    }

    fn quantize_as(&mut self, format: ActFormat, cols: usize, x: &[f32]) {
        let bs = format.block();
        assert!(cols > 0 && cols.is_multiple_of(bs), "QuantScratch: {cols} columns are not whole {bs}-blocks");
        assert!(x.len().is_multiple_of(cols), "QuantScratch: activation length");
        let (tokens, nb) = (x.len() / cols, cols / bs);
        self.format = Some(format);
        self.cols = cols;
        self.tokens = tokens;
        // `resize` only allocates when a call needs more than any earlier one.
        self.qs.resize(x.len(), 0);
        self.d.resize(tokens * nb, 0.0);
        match format {
            ActFormat::Q8x32 => {
                self.sums.resize(tokens * nb, 0);
                act::quantize_q8x32(x, &mut self.qs, &mut self.d, &mut self.sums);
            }
            ActFormat::Q8K => {
                self.bsums.resize(tokens * cols / 16, 0);
                act::quantize_q8k(x, &mut self.qs, &mut self.d, &mut self.bsums);
            }
        }
    }

    /// Tokens quantized by the last call.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The values the codes of token `t` stand for (`code · block scale`), i.e. the activations the
    /// integer kernels multiply the weights with; `out.len()` must be `cols`.
    ///
    /// # Panics
    /// If nothing was quantized, `t` is out of range or `out` has the wrong length.
    pub fn dequantize_token(&self, t: usize, out: &mut [f32]) {
        let format = self.format.expect("QuantScratch::dequantize_token before quantize");
        assert!(t < self.tokens && out.len() == self.cols, "QuantScratch::dequantize_token: bad token or length");
        let a = self.row(t);
        for (i, (o, &q)) in out.iter_mut().zip(a.qs).enumerate() {
            *o = f32::from(q) * a.d[i / format.block()];
        }
    }

    /// Token `t` of the last quantization.
    fn row(&self, t: usize) -> ActRow<'_> {
        let cols = self.cols;
        let nb = cols / self.format.map_or(1, ActFormat::block);
        let qs = &self.qs[t * cols..(t + 1) * cols];
        let d = &self.d[t * nb..(t + 1) * nb];
        match self.format {
            Some(ActFormat::Q8x32) => ActRow { qs, d, sums: &self.sums[t * nb..(t + 1) * nb], bsums: &[] },
            _ => ActRow { qs, d, sums: &[], bsums: &self.bsums[t * cols / 16..(t + 1) * cols / 16] },
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<QuantScratch> = RefCell::new(QuantScratch::new());
}

/// Whether this CPU has F16C (the AVX2 kernels convert the f16 block scales with it).
#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    static F16C: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *F16C.get_or_init(|| std::arch::is_x86_feature_detected!("f16c"))
}

/// `isa`, lowered to what this CPU can run for these kernels: [`crate::simd::usable`], and the AVX2
/// path also needs F16C (every AVX-512 CPU has it, see [`crate::simd::best`]).
pub fn usable(isa: Isa) -> Isa {
    let isa = crate::simd::usable(isa);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && !has_f16c() {
        return Isa::Scalar;
    }
    isa
}

/// The path [`matmul`] uses now: [`isa::active`] clamped by [`usable`].
pub fn level() -> Isa {
    usable(isa::active())
}

/// `out[t·rows + r] = Σ_k x[t·cols + k] · W[r, k]` on the path [`level`], with the activations
/// quantized into a per-thread scratch (see the module docs).
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn matmul(pool: &ThreadPool, w: &QuantMatrix, x: &[f32], out: &mut [f32]) {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => matmul_on(level(), pool, w, x, out, &mut s),
        // Only reachable if a kernel task re-entered `matmul` on this thread.
        Err(_) => matmul_on(level(), pool, w, x, out, &mut QuantScratch::new()),
    })
}

/// [`matmul`] with the caller's scratch.
pub fn matmul_with(pool: &ThreadPool, w: &QuantMatrix, x: &[f32], out: &mut [f32], scratch: &mut QuantScratch) {
    matmul_on(level(), pool, w, x, out, scratch)
}

/// [`matmul`] on path `isa` (clamped by [`usable`]). Every path computes the same integer block
/// sums; the f32 results differ only in the order of the per-block f32 additions.
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn matmul_on(isa: Isa, pool: &ThreadPool, w: &QuantMatrix, x: &[f32], out: &mut [f32], scratch: &mut QuantScratch) {
    let (rows, cols) = (w.rows, w.cols);
    assert!(cols > 0 && x.len().is_multiple_of(cols), "quant::matmul: activation length");
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "quant::matmul: output length");
    let Some(kind) = Kind::of(w.ty) else {
        return matmul_f32(pool, w, x, out);
    };
    if tokens == 0 {
        return;
    }
    scratch.quantize_as(kind.act(), cols, x);
    let acts: &QuantScratch = scratch;
    let isa = usable(isa);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    pool.for_range(rows, 4, &|r0, r1| rows_task(isa, kind, w, acts, r0, r1, &out_ptr));
}

/// Rows per kernel call: one call covers a chunk of rows for up to 4 tokens, small enough that the
/// chunk's weights stay in L2 while the token tiles of a token block pass over them.
const CHUNK_ROWS: usize = 64;
/// Tokens per kernel call (the prefill tile width).
const TOKEN_TILE: usize = 4;

/// Computes rows `r0..r1` of `w` for every token into `out` (`tokens × rows`, row-major).
///
/// Loops: token blocks whose quantized activations fit [`ACT_BUDGET`], chunks of [`CHUNK_ROWS`]
/// rows, tiles of up to [`TOKEN_TILE`] tokens; the kernel tiles the rows of a chunk itself.
fn rows_task(isa: Isa, kind: Kind, w: &QuantMatrix, acts: &QuantScratch, r0: usize, r1: usize, out: &SyncPtr<f32>) {
    let (tokens, rows) = (acts.tokens, w.rows);
    assert!(r0 <= r1 && r1 <= rows, "quant::matmul: task rows");
    let tb = (ACT_BUDGET / w.cols).max(TOKEN_TILE) / TOKEN_TILE * TOKEN_TILE;
    let mut buf = [0f32; CHUNK_ROWS * TOKEN_TILE];
    let mut xs: [ActRow<'_>; TOKEN_TILE] = [ActRow::EMPTY; TOKEN_TILE];
    let data = w.bytes.as_bytes();
    let mut tb0 = 0;
    while tb0 < tokens {
        let tb1 = (tb0 + tb).min(tokens);
        let mut c0 = r0;
        while c0 < r1 {
            let c1 = (c0 + CHUNK_ROWS).min(r1);
            let chunk = &data[c0 * w.row_bytes..c1 * w.row_bytes];
            let mut t0 = tb0;
            while t0 < tb1 {
                let tn = TOKEN_TILE.min(tb1 - t0);
                for (j, slot) in xs[..tn].iter_mut().enumerate() {
                    *slot = acts.row(t0 + j);
                }
                let n = c1 - c0;
                rows_kernel(isa, kind, chunk, w.row_bytes, &xs[..tn], &mut buf[..n * tn]);
                for (i, o) in buf[..n * tn].chunks_exact(tn).enumerate() {
                    for (j, &v) in o.iter().enumerate() {
                        // SAFETY: `out` holds `tokens · rows` values (checked by `matmul_on`) and
                        // t0 + j < tokens, c0 + i < r1 ≤ rows; rows r0..r1 belong to this task only, so
                        // no other thread writes this element.
                        unsafe { *out.0.add((t0 + j) * rows + c0 + i) = v };
                    }
                }
                t0 += tn;
            }
            c0 = c1;
        }
        tb0 = tb1;
    }
}

/// `out[i · xs.len() + j] = Σ W_i · x_j` for the packed rows `W_i` in `w` (`row_bytes` each) and
/// quantized tokens `xs[j]`, on a path already clamped by [`usable`].
fn rows_kernel(isa: Isa, kind: Kind, w: &[u8], row_bytes: usize, xs: &[ActRow<'_>], out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C.
        Isa::Avx512Vnni => unsafe { x86::rows_vnni(kind, w, row_bytes, xs, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX2, FMA and F16C.
        Isa::Avx2 => unsafe { x86::rows_avx2(kind, w, row_bytes, xs, out) },
        _ => {
            for (i, row) in w.chunks_exact(row_bytes).enumerate() {
                for (j, x) in xs.iter().enumerate() {
                    out[i * xs.len() + j] = scalar::dot(kind, row, x);
                }
            }
        }
    }
}

/// The f32 fallback for types without an integer path: each task widens 256-element chunks of a row
/// with tern-quants' reference dequantizer into a stack buffer and dots them with every token.
fn matmul_f32(pool: &ThreadPool, w: &QuantMatrix, x: &[f32], out: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    let tokens = x.len() / cols;
    let bs = w.ty.block_size() as usize;
    let chunk_bytes = |n: usize| n / bs * (w.row_bytes / (cols / bs));
    let out_ptr = SyncPtr(out.as_mut_ptr());
    pool.for_range(rows, 4, &|r0, r1| {
        let out_ptr = &out_ptr;
        let mut buf = [0f32; CHUNK];
        for r in r0..r1 {
            let row = w.row_bytes(r);
            for t in 0..tokens {
                // SAFETY: (t, r) is written only by the task owning row r; in bounds (checked by the caller).
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
    fn rejects_bad_shapes() {
        let buf = |n: usize| ByteBuf::from_vec(vec![0; n]);
        assert_eq!(
            QuantMatrix::new(2, 0, GgmlType::Q4_0, buf(0)).unwrap_err(),
            QuantMatrixError::Cols { ty: GgmlType::Q4_0, cols: 0 }
        );
        assert_eq!(
            QuantMatrix::new(2, 48, GgmlType::Q4_0, buf(54)).unwrap_err(),
            QuantMatrixError::Cols { ty: GgmlType::Q4_0, cols: 48 }
        );
        assert_eq!(
            QuantMatrix::new(2, 64, GgmlType::Q4_0, buf(71)).unwrap_err(),
            QuantMatrixError::Length { expected: 72, found: 71 }
        );
        assert_eq!(
            QuantMatrix::new(1, 256, GgmlType::I2_S, buf(96)).unwrap_err(),
            QuantMatrixError::Unsupported(GgmlType::I2_S)
        );
        assert!(QuantMatrix::new(2, 256, GgmlType::Q6_K, buf(420)).is_ok());
    }

    #[test]
    fn matches_dequantized_dense() {
        let pool = ThreadPool::new(2);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::TQ2_0, GgmlType::F16] {
            let (rows, cols, tokens) = (5usize, 512usize, 20usize);
            let vals: Vec<f32> = (0..rows * cols).map(|i| (((i * 7919) % 201) as f32 - 100.0) / 97.0).collect();
            let q = tern_quants::quantize(ty, &vals).unwrap();
            let deq = tern_quants::dequantize(ty, &q, rows * cols).unwrap();
            let m = QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(q)).unwrap();
            let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
            let mut out = vec![0f32; tokens * rows];
            matmul(&pool, &m, &x, &mut out);
            // Int8 activations: the error is about 1/254 of Σ|w·x| at worst per element, far less in
            // total since rounding errors cancel.
            for t in 0..tokens {
                for r in 0..rows {
                    let want: f64 = (0..cols).map(|k| deq[r * cols + k] as f64 * x[t * cols + k] as f64).sum();
                    let mag: f64 = (0..cols).map(|k| (deq[r * cols + k] as f64 * x[t * cols + k] as f64).abs()).sum();
                    let got = out[t * rows + r] as f64;
                    assert!((got - want).abs() <= 4e-3 * mag + 1e-6, "{ty} t{t} r{r}: {got} vs {want} (Σ|wx| {mag})");
                }
            }
        }
    }
}
