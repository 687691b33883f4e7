//! SIMD matrix kernels behind one run-time dispatch, with the portable scalar paths they are tested against.
//!
//! * Ternary × int8 ([`ternary_matmul`], [`dot_codes`]) over the T2 layout documented in
//!   [`crate::ternary`]: AVX2 `vpmaddubsw` + `vpmaddwd` (`x86_avx2.rs`) and AVX-512 VNNI `vpdpbusd`
//!   (`x86_avx512.rs`). Integer arithmetic, so every path is bit-exact with
//!   [`crate::ternary::dot_codes_scalar`], and the f32 output is `(Σ code·x − Σ x) as f32 · factor` on
//!   every path.
//! * Dense f32 / f16 / bf16 weights × f32 activations ([`dense_matmul`], [`dot_f32`], [`widen`]) with
//!   FMA in 4-row × N-token register tiles; bf16 / f16 are widened exactly (in registers for decode, once
//!   per K chunk and reused across tokens for prefill), so only the summation order differs from the
//!   scalar reference.
//!
//! Dispatch: the public kernels in [`crate::ternary`] and [`crate::dense`] call these with [`level`],
//! i.e. [`isa::active`] (one atomic load; honours `TERN_ISA` and [`isa::set_override`]), clamped to what
//! this CPU can run. The `isa` argument of every function here is clamped the same way, so asking for a
//! path the CPU lacks runs the best one it has and never an illegal instruction.
//!
//! Loop structure of the matrix products (each pool task owns a range of output rows):
//! * ternary, 1 token (decode): tiles of 8 (AVX-512) or 4 (AVX2) rows share each activation load;
//! * ternary, several tokens (prefill): each unpacked weight block is reused across 4 tokens (tiles
//!   of 2 rows × 4 tokens on AVX-512, 1 × 4 on AVX2), and tokens are processed in blocks whose
//!   activations stay in L2 while all rows of the task stream by;
//! * dense, at most one register tile of tokens (decode: 4 on AVX-512, 2 on AVX2): 4-row tiles
//!   stream whole rows, widening bf16 / f16 in registers;
//! * dense, more tokens (prefill): K is cut into chunks of [`DENSE_KC`]; for every chunk, 4 rows are
//!   widened once into an L1-resident buffer and multiplied with every token of the token block in
//!   4-row × 4-token (AVX-512) or 4 × 2 (AVX2) register tiles.

use std::sync::OnceLock;

use crate::dense::DenseDType;
use crate::isa::{self, Isa};
use crate::pool::ThreadPool;
use crate::ternary::{dot_codes_scalar_as, QuantizedActs, SyncPtr, TernaryLayout, TernaryMatrix, BLOCK, BLOCK_BYTES};

/// Calls `$f::<R, T>(a, b, out)` for the first listed `(R, T)` equal to `(a.len(), b.len())` and
/// returns from the enclosing function; falls through when no listed shape matches.
#[cfg(target_arch = "x86_64")]
macro_rules! tile_shapes {
    ($f:ident, $a:expr, $b:expr, $out:expr; $(($r:literal, $t:literal)),+ $(,)?) => {
        match ($a.len(), $b.len()) {
            $(($r, $t) => {
                if let (Ok(a), Ok(b)) = ($a.try_into(), $b.try_into()) {
                    return $f::<$r, $t>(a, b, $out);
                }
            })+
            _ => {}
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;

/// Elements of K per dense chunk (4 widened rows of it are 8 KiB, well inside L1).
pub const DENSE_KC: usize = 512;
/// Dense tokens per cache block: a block's activation chunk (64 × 512 × 4 B = 128 KiB) stays in L2.
const DENSE_TOKEN_BLOCK: usize = 64;
/// Budget for one block of ternary activations (tokens × padded K bytes), sized for L2.
const TERNARY_X_BUDGET: usize = 512 * 1024;

/// The best path this CPU can run (detected once).
///
/// Besides what [`isa::hardware`] checks, the AVX-512 path needs AVX2, FMA and F16C (the compiler
/// treats them as implied by AVX-512F) and the AVX2 path needs AVX2 and FMA; a CPU that reports
/// AVX-512 without them is demoted rather than trusted.
pub fn best() -> Isa {
    static BEST: OnceLock<Isa> = OnceLock::new();
    *BEST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let hw = isa::hardware();
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            if hw >= Isa::Avx512Vnni && avx2 && std::arch::is_x86_feature_detected!("f16c") {
                return Isa::Avx512Vnni;
            }
            if hw >= Isa::Avx2 && avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    })
}

/// `isa`, lowered to [`best`] if this CPU cannot run it.
#[inline]
pub fn usable(isa: Isa) -> Isa {
    isa.min(best())
}

/// The path the kernels use now: [`isa::active`] clamped by [`usable`].
#[inline]
pub fn level() -> Isa {
    usable(isa::active())
}

// ---------------------------------------------------------------------------------------------
// Ternary × int8
// ---------------------------------------------------------------------------------------------

/// [`crate::act::quantize_i8`] of `x` into `out` (same length) on path `isa`.
pub(crate) fn quantize_i8(isa: Isa, x: &[f32], out: &mut [i8]) -> crate::act::ActScale {
    debug_assert_eq!(x.len(), out.len());
    match usable(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: clamped by `usable`: this CPU has AVX-512 F/BW/VL (and AVX2, FMA).
        Isa::Avx512Vnni => unsafe { x86_avx512::quantize_i8(x, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: clamped by `usable`: this CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { x86_avx2::quantize_i8(x, out) },
        _ => crate::act::quantize_i8_scalar(x, out),
    }
}

/// Byte stride of a pair of T2 blocks in tern's T2 layout.
pub(crate) const T2_PAIR: usize = 2 * BLOCK_BYTES;
/// Byte stride of a pair of T2 blocks inside ggml TQ2_0 blocks (64 code bytes + f16 scale).
pub(crate) const TQ2_PAIR: usize = crate::ternary::TQ2_BLOCK_BYTES;

/// Byte offset of T2 block `b` when pairs of blocks start `P` bytes apart.
#[inline(always)]
pub(crate) const fn t2_block_offset<const P: usize>(b: usize) -> usize {
    (b >> 1) * P + (b & 1) * BLOCK_BYTES
}

/// Whole T2 blocks in a row of `len` bytes whose block pairs start `P` bytes apart.
#[inline(always)]
pub(crate) const fn t2_blocks_in<const P: usize>(len: usize) -> usize {
    (len / P) * 2 + if len % P >= BLOCK_BYTES { 1 } else { 0 }
}

/// The path the kernels of `layout` run for `isa` (already clamped by [`usable`]); every layout has
/// every path today, so this is the identity (kept as the one place a layout-specific requirement
/// would lower the path).
#[inline]
fn layout_isa(isa: Isa, _layout: TernaryLayout) -> Isa {
    isa
}

/// `Σ code·x` over one packed T2 row on path `isa` (see [`crate::ternary::dot_codes_scalar`]).
///
/// Like the scalar reference, it covers `min(row.len() / 32, x.len() / 128)` whole blocks.
pub fn dot_codes(isa: Isa, row: &[u8], x: &[i8]) -> i32 {
    dot_codes_as(isa, TernaryLayout::T2, row, x)
}

/// `Σ code·x` over one packed row of `layout` on path `isa`; bit-exact with
/// [`crate::ternary::dot_codes_scalar_as`] (whole blocks present in both `row` and `x`).
pub fn dot_codes_as(isa: Isa, layout: TernaryLayout, row: &[u8], x: &[i8]) -> i32 {
    let mut out = [0i32];
    let isa = layout_isa(usable(isa), layout);
    ternary_tile(isa, layout, &[row], &[x], &mut out);
    out[0]
}

/// `out[i · xs.len() + j] = Σ code·x` of `rows[i]` and `xs[j]` on a path already clamped by [`usable`]
/// and [`layout_isa`].
#[inline]
fn ternary_tile(isa: Isa, layout: TernaryLayout, rows: &[&[u8]], xs: &[&[i8]], out: &mut [i32]) {
    let pair = if layout == TernaryLayout::Tq2 { TQ2_PAIR } else { T2_PAIR };
    match (isa, layout) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX-512 F/BW/VL/VNNI (plus AVX2, FMA
        // and F16C, see `best`).
        (Isa::Avx512Vnni, TernaryLayout::T1) => unsafe { x86_avx512::t1_tile(rows, xs, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX2 and FMA.
        (Isa::Avx2, TernaryLayout::T1) => unsafe { x86_avx2::t1_tile(rows, xs, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`, so this CPU has AVX-512 F/BW/VL/VNNI (plus AVX2,
        // FMA and F16C, see `best`).
        (Isa::Avx512Vnni, _) => unsafe {
            if !(xs.len() == 1 && x86_avx512::ternary_gemv(pair, rows, xs[0], out)) {
                x86_avx512::ternary_tile(pair, rows, xs, out)
            }
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`, so this CPU has AVX2 and FMA.
        (Isa::Avx2, _) => unsafe { x86_avx2::ternary_tile(pair, rows, xs, out) },
        _ => {
            for (i, row) in rows.iter().enumerate() {
                for (j, x) in xs.iter().enumerate() {
                    out[i * xs.len() + j] = dot_codes_scalar_as(layout, row, x);
                }
            }
        }
    }
}

/// Rows per AVX-512 decode tile (`TERN_GEMV_ROWS` = 1, 2, 4 or 8 for experiments; default 4).
fn gemv_rows() -> usize {
    static R: OnceLock<usize> = OnceLock::new();
    *R.get_or_init(|| {
        std::env::var("TERN_GEMV_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|r| [1, 2, 4, 8].contains(r))
            .unwrap_or(4)
    })
}

/// `(rows, tokens)` of the register tile used by `isa` for a product with `tokens` tokens.
fn ternary_shape(isa: Isa, layout: TernaryLayout, tokens: usize) -> (usize, usize) {
    match (isa, layout, tokens) {
        (Isa::Scalar, _, _) => (1, 1),
        (Isa::Avx512Vnni, TernaryLayout::T1, 1) => (4, 1),
        (Isa::Avx512Vnni, TernaryLayout::T1, _) => (1, 4),
        (Isa::Avx2, TernaryLayout::T1, 1) => (2, 1),
        (Isa::Avx2, TernaryLayout::T1, _) => (1, 4),
        (Isa::Avx512Vnni, _, 1) => (gemv_rows(), 1),
        (Isa::Avx512Vnni, _, _) => (2, 4),
        (Isa::Avx2, _, 1) => (4, 1),
        (Isa::Avx2, _, _) => (1, 4),
    }
}

/// [`crate::ternary::matmul`] on path `isa`: `out[t·rows + r] = (Σ_k w[r,k]·q[t,k]) · factor[t]`,
/// computed as `(Σ code·q − Σ q) as f32 · factor[t]`, bit-identical on every path.
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn ternary_matmul(
    isa: Isa,
    pool: &ThreadPool,
    w: &TernaryMatrix,
    acts: &QuantizedActs<'_>,
    factor: &[f32],
    out: &mut [f32],
) {
    let k = w.padded_cols();
    let tokens = acts.scales.len();
    assert_eq!(acts.codes.len(), tokens * k, "ternary::matmul: activation length");
    assert_eq!(factor.len(), tokens, "ternary::matmul: factor length");
    assert_eq!(out.len(), tokens * w.rows(), "ternary::matmul: output length");
    let isa = layout_isa(usable(isa), w.layout());
    let rows = w.rows();
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let data = w.data();
    pool.for_range(rows, 8, &|r0, r1| {
        let mut out = TaskOut { ptr: &out_ptr, rows, tokens, r0, r1 };
        ternary_rows(isa, w, data, acts.codes, tokens, r0, r1, &mut |t, r, dot| {
            let acc = dot.wrapping_sub(acts.scales[t].sum);
            *out.at(t, r) = acc as f32 * factor[t];
        });
    });
}

/// One matrix of [`ternary_matmul_many`]: its weights, per-token factors and `tokens × rows` output.
pub struct TernaryPart<'a> {
    pub w: &'a TernaryMatrix,
    pub factor: &'a [f32],
    pub out: &'a mut [f32],
}

/// Most matrices one [`ternary_matmul_many`] call takes (kept on the stack: no allocation).
pub const MANY_MAX: usize = 8;

/// Several [`ternary_matmul`]s over the same activations (e.g. q/k/v, or gate/up) in one pool
/// dispatch: the rows of all matrices are split over the threads as one range, so the threads meet
/// once instead of once per matrix. Results are bit-identical with separate calls.
///
/// # Panics
/// If there are more than [`MANY_MAX`] matrices, the matrices' padded K differ from the activations',
/// or on inconsistent lengths.
pub fn ternary_matmul_many(isa: Isa, pool: &ThreadPool, parts: &mut [TernaryPart<'_>], acts: &QuantizedActs<'_>) {
    let tokens = acts.scales.len();
    let isa = usable(isa);
    struct Part<'a> {
        w: &'a TernaryMatrix,
        data: &'a [u8],
        factor: &'a [f32],
        out: SyncPtr<f32>,
        start: usize,
        isa: Isa,
    }
    assert!(parts.len() <= MANY_MAX, "ternary::matmul_many: at most {MANY_MAX} matrices");
    let mut total = 0;
    let mut ps: [Option<Part<'_>>; MANY_MAX] = Default::default();
    for (slot, p) in ps.iter_mut().zip(parts.iter_mut()) {
        let k = p.w.padded_cols();
        assert_eq!(acts.codes.len(), tokens * k, "ternary::matmul_many: activation length");
        assert_eq!(p.factor.len(), tokens, "ternary::matmul_many: factor length");
        assert_eq!(p.out.len(), tokens * p.w.rows(), "ternary::matmul_many: output length");
        *slot = Some(Part {
            w: p.w,
            data: p.w.data(),
            factor: p.factor,
            out: SyncPtr(p.out.as_mut_ptr()),
            start: total,
            isa: layout_isa(isa, p.w.layout()),
        });
        // Each part starts on a multiple of 8 rows so tile shapes match a single-matrix call.
        total += p.w.rows().div_ceil(8) * 8;
    }
    pool.for_range(total, 8, &|g0, g1| {
        for p in ps.iter().flatten() {
            let rows = p.w.rows();
            let r0 = g0.max(p.start) - p.start;
            let r1 = (g1.min(p.start + rows)).max(p.start) - p.start;
            if r0 >= r1 {
                continue;
            }
            let mut out = TaskOut { ptr: &p.out, rows, tokens, r0, r1 };
            ternary_rows(p.isa, p.w, p.data, acts.codes, tokens, r0, r1, &mut |t, r, dot| {
                let acc = dot.wrapping_sub(acts.scales[t].sum);
                *out.at(t, r) = acc as f32 * p.factor[t];
            });
        }
    });
}

/// Write access to rows `r0..r1` (all tokens) of a `tokens × rows` output that pool tasks with
/// disjoint row ranges share.
struct TaskOut<'a> {
    ptr: &'a SyncPtr<f32>,
    rows: usize,
    tokens: usize,
    r0: usize,
    r1: usize,
}

impl TaskOut<'_> {
    /// Element `(t, r)`.
    ///
    /// # Panics
    /// If `(t, r)` is outside this task's rows.
    #[inline]
    fn at(&mut self, t: usize, r: usize) -> &mut f32 {
        assert!(t < self.tokens && self.r0 <= r && r < self.r1, "output index outside the task");
        // SAFETY: `ptr` points to `tokens * rows` f32s (the matmul entry points check the output
        // length before creating tasks), so (t, r) is in bounds; rows r0..r1 belong to this task
        // only, so no other thread touches the element; the `&mut self` borrow makes the returned
        // reference unique within the task.
        unsafe { &mut *self.ptr.0.add(t * self.rows + r) }
    }
}

/// Computes `Σ code·x` for rows `r0..r1` and every token, handing each to `store(t, r, dot)`.
/// `data` is `w.data()` (fetched once by the caller).
#[allow(clippy::too_many_arguments)]
fn ternary_rows(
    isa: Isa,
    w: &TernaryMatrix,
    data: &[u8],
    codes: &[i8],
    tokens: usize,
    r0: usize,
    r1: usize,
    store: &mut dyn FnMut(usize, usize, i32),
) {
    let k = w.padded_cols();
    let rb = w.row_bytes();
    let layout = w.layout();
    let row = |r: usize| &data[r * rb..(r + 1) * rb];
    let x = |t: usize| &codes[t * k..(t + 1) * k];
    if isa == Isa::Scalar {
        // The reference loop: one row against one token at a time.
        for r in r0..r1 {
            for t in 0..tokens {
                store(t, r, dot_codes_scalar_as(layout, row(r), x(t)));
            }
        }
        return;
    }
    let (rt, tt) = ternary_shape(isa, layout, tokens);
    // Tokens per block: a multiple of the tile width whose activations fit the L2 budget.
    let tb = (TERNARY_X_BUDGET / k.max(1)).max(tt) / tt * tt;
    let mut acc = [0i32; 32];
    let mut rows_buf: [&[u8]; 8] = [&[]; 8];
    let mut xs_buf: [&[i8]; 4] = [&[]; 4];
    let mut tb0 = 0;
    while tb0 < tokens {
        let tb1 = (tb0 + tb).min(tokens);
        let mut r = r0;
        while r < r1 {
            let rn = if r1 - r >= rt { rt } else { 1 };
            for (i, slot) in rows_buf[..rn].iter_mut().enumerate() {
                *slot = row(r + i);
            }
            let mut t0 = tb0;
            while t0 < tb1 {
                let tn = tt.min(tb1 - t0);
                for (j, slot) in xs_buf[..tn].iter_mut().enumerate() {
                    *slot = x(t0 + j);
                }
                ternary_tile(isa, layout, &rows_buf[..rn], &xs_buf[..tn], &mut acc[..rn * tn]);
                for i in 0..rn {
                    for j in 0..tn {
                        store(t0 + j, r + i, acc[i * tn + j]);
                    }
                }
                t0 += tn;
            }
            r += rn;
        }
        tb0 = tb1;
    }
}

// ---------------------------------------------------------------------------------------------
// Int8 with per-64-block scales (crate::int8)
// ---------------------------------------------------------------------------------------------

/// Rows `r0..r1` of [`crate::int8::matmul_on`] for every token, handed to `store(t, r, y)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn int8_rows(
    isa: Isa,
    w: &crate::int8::Int8Matrix,
    codes: &[i8],
    scales: &[f32],
    nb: usize,
    acts: &crate::int8::Int8Acts,
    r0: usize,
    r1: usize,
    store: &mut dyn FnMut(usize, usize, f32),
) {
    use crate::int8::{dot_scalar, I8_BLOCK};
    let _ = w;
    let rb = nb * I8_BLOCK;
    let tokens = acts.tokens();
    let wrow = |r: usize| (&codes[r * rb..(r + 1) * rb], &scales[r * nb..(r + 1) * nb]);
    if isa == Isa::Scalar {
        for r in r0..r1 {
            let (wq, ws) = wrow(r);
            for t in 0..tokens {
                let (xq, xs) = acts.token(t);
                store(t, r, dot_scalar(wq, ws, xq, xs));
            }
        }
        return;
    }
    let (rt, tt) = match (isa, tokens) {
        (Isa::Avx512Vnni, 1) => (8, 1),
        (Isa::Avx512Vnni, _) => (2, 4),
        (_, 1) => (4, 1),
        _ => (1, 4),
    };
    let mut acc = [0f32; 32];
    let mut wq: [&[i8]; 8] = [&[]; 8];
    let mut ws: [&[f32]; 8] = [&[]; 8];
    let mut xq: [&[i8]; 4] = [&[]; 4];
    let mut xs: [&[f32]; 4] = [&[]; 4];
    let mut r = r0;
    while r < r1 {
        let rn = if r1 - r >= rt { rt } else { 1 };
        for i in 0..rn {
            (wq[i], ws[i]) = wrow(r + i);
        }
        let mut t0 = 0;
        while t0 < tokens {
            let tn = tt.min(tokens - t0);
            for j in 0..tn {
                (xq[j], xs[j]) = acts.token(t0 + j);
            }
            int8_tile(isa, &wq[..rn], &ws[..rn], &xq[..tn], &xs[..tn], &mut acc[..rn * tn]);
            for i in 0..rn {
                for j in 0..tn {
                    store(t0 + j, r + i, acc[i * tn + j]);
                }
            }
            t0 += tn;
        }
        r += rn;
    }
}

/// `out[i·T + j]` = the int8 block dot product of row `i` and token `j` on a clamped path.
#[inline]
fn int8_tile(isa: Isa, wq: &[&[i8]], ws: &[&[f32]], xq: &[&[i8]], xs: &[&[f32]], out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: clamped by `usable`: this CPU has AVX-512 F/BW/VL/VNNI (and AVX2, FMA).
        Isa::Avx512Vnni => unsafe { x86_avx512::int8_tile(wq, ws, xq, xs, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: clamped by `usable`: this CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { x86_avx2::int8_tile(wq, ws, xq, xs, out) },
        _ => {
            for i in 0..wq.len() {
                for j in 0..xq.len() {
                    out[i * xq.len() + j] = crate::int8::dot_scalar(wq[i], ws[i], xq[j], xs[j]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dense f32 / f16 / bf16
// ---------------------------------------------------------------------------------------------

/// f32 dot product over `min(a.len(), b.len())` elements on path `isa`.
pub fn dot_f32(isa: Isa, a: &[f32], b: &[f32]) -> f32 {
    match usable(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: clamped by `usable`: this CPU has AVX-512F (and FMA).
        Isa::Avx512Vnni => unsafe { x86_avx512::dot_f32(a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: clamped by `usable`: this CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { x86_avx2::dot_f32(a, b) },
        _ => dot_f32_scalar(a, b),
    }
}

/// The scalar reference dot product: 8 independent accumulators (the loop auto-vectorizes with SSE2).
pub fn dot_f32_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// A borrowed dense row-major `rows × cols` matrix of little-endian `dtype` values.
#[derive(Clone, Copy, Debug)]
pub struct DenseView<'a> {
    pub rows: usize,
    pub cols: usize,
    pub dtype: DenseDType,
    /// `rows · cols · dtype.size()` bytes.
    pub bytes: &'a [u8],
}

/// [`crate::dense::matmul`] on path `isa`: `out[t·rows + r] = Σ_k x[t·cols + k] · W[r, k]` for
/// `tokens = x.len() / cols` tokens. SIMD paths differ from the scalar one only in summation order.
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn dense_matmul(isa: Isa, pool: &ThreadPool, w: DenseView<'_>, x: &[f32], out: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    assert_eq!(
        Some(w.bytes.len()),
        rows.checked_mul(cols).and_then(|n| n.checked_mul(w.dtype.size())),
        "dense::matmul: weight length"
    );
    assert!(cols > 0 && x.len().is_multiple_of(cols), "dense::matmul: activation length");
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "dense::matmul: output length");
    let isa = usable(isa);
    let out_ptr = SyncPtr(out.as_mut_ptr());
    pool.for_range(rows, 4, &|r0, r1| {
        let mut out = TaskOut { ptr: &out_ptr, rows, tokens, r0, r1 };
        if isa == Isa::Scalar {
            dense_rows_scalar(w, x, tokens, &mut out);
        } else {
            dense_rows_simd(isa, w, x, tokens, &mut out);
        }
    });
}

/// The scalar reference: for each row, widen K chunks and dot them with every token.
fn dense_rows_scalar(w: DenseView<'_>, x: &[f32], tokens: usize, out: &mut TaskOut<'_>) {
    let (r0, r1) = (out.r0, out.r1);
    let (cols, esz) = (w.cols, w.dtype.size());
    let mut wbuf = [0f32; DENSE_KC];
    for r in r0..r1 {
        let row = &w.bytes[r * cols * esz..(r + 1) * cols * esz];
        for t in 0..tokens {
            *out.at(t, r) = 0.0;
        }
        let mut k0 = 0;
        while k0 < cols {
            let kn = (cols - k0).min(DENSE_KC);
            crate::dense::widen(w.dtype, &row[k0 * esz..(k0 + kn) * esz], &mut wbuf[..kn]);
            for t in 0..tokens {
                *out.at(t, r) += dot_f32_scalar(&wbuf[..kn], &x[t * cols + k0..t * cols + k0 + kn]);
            }
            k0 += kn;
        }
    }
}

/// [`crate::dense::widen`] on path `isa`: little-endian `src` of `dtype` into `out`
/// (`min(src.len() / size, out.len())` values). Every path is exact (bf16 and f16 are subsets of f32).
pub fn widen(isa: Isa, dtype: DenseDType, src: &[u8], out: &mut [f32]) {
    let n = (src.len() / dtype.size()).min(out.len());
    let (src, out) = (&src[..n * dtype.size()], &mut out[..n]);
    match (usable(isa), dtype) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX-512F/BW/VL.
        (Isa::Avx512Vnni, DenseDType::BF16) => unsafe { x86_avx512::widen_bf16(src, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        (Isa::Avx512Vnni, DenseDType::F16) => unsafe { x86_avx512::widen_f16(src, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX2.
        (Isa::Avx2, DenseDType::BF16) => unsafe { x86_avx2::widen_bf16(src, out) },
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, DenseDType::F16) if std::arch::is_x86_feature_detected!("f16c") => {
            // SAFETY: AVX2 (clamped by `usable`) and F16C (checked by the guard) are present.
            unsafe { x86_avx2::widen_f16(src, out) }
        }
        _ => crate::dense::widen(dtype, src, out),
    }
}

/// `out[i · xs.len() + j] = Σ W_i · x_j` over the shortest length, where `ws[i]` holds the
/// little-endian `dtype` weights of row `i` (f16 only on AVX-512 or the scalar path).
#[inline]
fn dense_tile(isa: Isa, ws: &[&[u8]], dtype: DenseDType, xs: &[&[f32]], out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX-512 F/BW/VL (and FMA, F16C).
        Isa::Avx512Vnni => unsafe { x86_avx512::dense_tile(ws, dtype, xs, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` was clamped by `usable`: this CPU has AVX2 and FMA.
        Isa::Avx2 => unsafe { x86_avx2::dense_tile(ws, dtype, xs, out) },
        _ => {
            let mut wf = Vec::new();
            for (i, wb) in ws.iter().enumerate() {
                wf.resize(wb.len() / dtype.size(), 0.0);
                crate::dense::widen(dtype, wb, &mut wf);
                for (j, x) in xs.iter().enumerate() {
                    out[i * xs.len() + j] = dot_f32_scalar(&wf, x);
                }
            }
        }
    }
}

/// Tokens per dense register tile.
fn dense_tokens_per_tile(isa: Isa) -> usize {
    match isa {
        Isa::Avx512Vnni => 4,
        Isa::Avx2 => 2,
        Isa::Scalar => 1,
    }
}

/// Views f32s as their (native = little-endian on every SIMD target) bytes.
fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: the pointer and byte length cover exactly `v`'s initialized memory, every byte of an
    // f32 is a valid u8, u8 needs no alignment, and the borrow keeps `v` alive and unmodified.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// The SIMD dense product for rows `r0..r1` (see the module docs for the loop structure).
fn dense_rows_simd(isa: Isa, w: DenseView<'_>, x: &[f32], tokens: usize, out: &mut TaskOut<'_>) {
    let (r0, r1) = (out.r0, out.r1);
    const R: usize = 4;
    let (cols, esz) = (w.cols, w.dtype.size());
    let tt = dense_tokens_per_tile(isa);
    let mut acc = [0f32; R * 4];
    let mut xs_buf: [&[f32]; 4] = [&[]; 4];
    let row = |r: usize| &w.bytes[r * cols * esz..(r + 1) * cols * esz];
    if tokens <= tt && (w.dtype != DenseDType::F16 || isa == Isa::Avx512Vnni) {
        // Decode: each weight is used by at most one tile, so it is widened in registers on the fly
        // and every output is one dot product over the whole K.
        for (j, slot) in xs_buf[..tokens].iter_mut().enumerate() {
            *slot = &x[j * cols..(j + 1) * cols];
        }
        let mut r = r0;
        while r < r1 {
            let rn = if r1 - r >= R { R } else { 1 };
            let mut ws: [&[u8]; R] = [&[]; R];
            for (i, slot) in ws[..rn].iter_mut().enumerate() {
                *slot = row(r + i);
            }
            dense_tile(isa, &ws[..rn], w.dtype, &xs_buf[..tokens], &mut acc[..rn * tokens]);
            for i in 0..rn {
                for j in 0..tokens {
                    *out.at(j, r + i) = acc[i * tokens + j];
                }
            }
            r += rn;
        }
        return;
    }
    for r in r0..r1 {
        for t in 0..tokens {
            *out.at(t, r) = 0.0;
        }
    }
    let mut wbuf = [[0f32; DENSE_KC]; R];
    let mut tb0 = 0;
    while tb0 < tokens {
        let tb1 = (tb0 + DENSE_TOKEN_BLOCK).min(tokens);
        let mut k0 = 0;
        while k0 < cols {
            let kn = (cols - k0).min(DENSE_KC);
            let mut r = r0;
            while r < r1 {
                let rn = R.min(r1 - r);
                let mut ws: [&[u8]; R] = [&[]; R];
                for (i, (slot, buf)) in ws.iter_mut().zip(wbuf.iter_mut()).take(rn).enumerate() {
                    let src = &row(r + i)[k0 * esz..(k0 + kn) * esz];
                    *slot = if w.dtype == DenseDType::F32 {
                        src
                    } else {
                        widen(isa, w.dtype, src, &mut buf[..kn]);
                        f32_bytes(&buf[..kn])
                    };
                }
                let mut t0 = tb0;
                while t0 < tb1 {
                    let tn = tt.min(tb1 - t0);
                    for (j, slot) in xs_buf[..tn].iter_mut().enumerate() {
                        let start = (t0 + j) * cols + k0;
                        *slot = &x[start..start + kn];
                    }
                    dense_tile(isa, &ws[..rn], DenseDType::F32, &xs_buf[..tn], &mut acc[..rn * tn]);
                    for i in 0..rn {
                        for j in 0..tn {
                            *out.at(t0 + j, r + i) += acc[i * tn + j];
                        }
                    }
                    t0 += tn;
                }
                r += rn;
            }
            k0 += kn;
        }
        tb0 = tb1;
    }
}

/// Compile-time checks of the layout constants the kernels hard-code.
const _: () = assert!(BLOCK == 128 && BLOCK_BYTES == 32);
