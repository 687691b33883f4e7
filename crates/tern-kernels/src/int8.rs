//! Int8 matrices with one f32 scale per 64 weights ("I8B", 8.5 bits per weight), and their product
//! with f32 activations quantized the same way: tern's fast layout for quantized LM heads.
//!
//! A row is cut into blocks of [`I8_BLOCK`] = 64 weights (the last one zero-padded); block `b` of row
//! `r` stores `q = round(w / s)` in -127..=127 with `s = max|w| / 127` (ggml's Q8_0 rule, on 64
//! instead of 32 values). Activations are quantized per token and per 64-block alike
//! ([`Int8Acts`]), so
//! `y[t, r] = Σ_b s_w[r, b] · s_x[t, b] · Σ_{k ∈ b} q_w · q_x`.
//! The integer block sums are exact on every path; the f32 accumulation over blocks happens in SIMD
//! lanes, so the paths differ from the scalar reference only in summation order.
//!
//! Why not ggml's Q8_0 with its kernel: the same bits, but each row here is one stream of 64-byte
//! loads with the per-block scale folded in two vector ops, which keeps the 128256-row head of a
//! Llama-3 vocabulary at the memory ceiling (`tests/ternary_layout_bench.rs` `head_stream`).
//!
//! Kernels: AVX-512 VNNI (`vpdpbusd` on `|q_w|` and the activations with `q_w`'s sign, 8-row decode
//! tiles, 2 × 4 prefill tiles), AVX2 (`vpmaddubsw` with `vpsignb`, pairs ≤ 2·127·127, no saturation),
//! scalar reference.

use crate::isa::Isa;
use crate::pool::ThreadPool;
use crate::ternary::SyncPtr;

/// Weights per block.
pub const I8_BLOCK: usize = 64;

/// A `rows × cols` int8 matrix with per-64-block f32 scales (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Matrix {
    rows: usize,
    cols: usize,
    /// `rows × blocks × 64` codes.
    codes: Vec<i8>,
    /// `rows × blocks` scales.
    scales: Vec<f32>,
}

/// Quantizes one block the way [`Int8Matrix`] and [`Int8Acts`] store it: returns the scale.
#[inline]
fn quantize_block(x: &[f32], out: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let s = amax / 127.0;
    let id = if s > 0.0 { 1.0 / s } else { 0.0 };
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    out[x.len()..].fill(0);
    if s.is_finite() {
        s
    } else {
        f32::NAN
    }
}

impl Int8Matrix {
    /// Quantizes rows given as f32 (`row(r, out)` fills `cols` values) on `threads` threads.
    pub fn quantize_rows(rows: usize, cols: usize, threads: usize, row: &(dyn Fn(usize, &mut [f32]) + Sync)) -> Self {
        let nb = cols.div_ceil(I8_BLOCK);
        let mut codes = vec![0i8; rows * nb * I8_BLOCK];
        let mut scales = vec![0f32; rows * nb];
        let threads = threads.clamp(1, rows.max(1));
        let per = rows.div_ceil(threads).max(1);
        if nb > 0 {
            std::thread::scope(|s| {
                for (i, (cc, sc)) in codes.chunks_mut(per * nb * I8_BLOCK).zip(scales.chunks_mut(per * nb)).enumerate()
                {
                    s.spawn(move || {
                        let mut buf = vec![0f32; cols];
                        for (j, (c, s)) in cc.chunks_mut(nb * I8_BLOCK).zip(sc.chunks_mut(nb)).enumerate() {
                            row(i * per + j, &mut buf);
                            for (b, (cb, sb)) in c.chunks_mut(I8_BLOCK).zip(s.iter_mut()).enumerate() {
                                let x = &buf[b * I8_BLOCK..((b + 1) * I8_BLOCK).min(cols)];
                                *sb = quantize_block(x, cb);
                            }
                        }
                    });
                }
            });
        }
        Int8Matrix { rows, cols, codes, scales }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Blocks per row.
    pub fn blocks(&self) -> usize {
        self.cols.div_ceil(I8_BLOCK)
    }
    /// Bytes held (codes and scales).
    pub fn byte_len(&self) -> usize {
        self.codes.len() + 4 * self.scales.len()
    }
    /// The value the matrix stores for row `r` (`out.len() == cols`).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        let nb = self.blocks();
        let codes = &self.codes[r * nb * I8_BLOCK..(r + 1) * nb * I8_BLOCK];
        for (k, o) in out.iter_mut().enumerate().take(self.cols) {
            *o = f32::from(codes[k]) * self.scales[r * nb + k / I8_BLOCK];
        }
    }
}

/// Activations quantized for [`matmul`]: per token and per 64-block int8 codes and scales.
#[derive(Clone, Debug, Default)]
pub struct Int8Acts {
    tokens: usize,
    nb: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

impl Int8Acts {
    pub fn new() -> Self {
        Int8Acts::default()
    }

    /// Quantizes `x` (`tokens × cols`); reuses the buffers.
    ///
    /// # Panics
    /// If `cols` is 0 or does not divide `x.len()`.
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        assert!(cols > 0 && x.len().is_multiple_of(cols), "Int8Acts::quantize: lengths");
        let (tokens, nb) = (x.len() / cols, cols.div_ceil(I8_BLOCK));
        self.tokens = tokens;
        self.nb = nb;
        self.codes.resize(tokens * nb * I8_BLOCK, 0);
        self.scales.resize(tokens * nb, 0.0);
        for t in 0..tokens {
            let xr = &x[t * cols..(t + 1) * cols];
            for b in 0..nb {
                let xb = &xr[b * I8_BLOCK..((b + 1) * I8_BLOCK).min(cols)];
                let c = &mut self.codes[(t * nb + b) * I8_BLOCK..(t * nb + b + 1) * I8_BLOCK];
                self.scales[t * nb + b] = quantize_block(xb, c);
            }
        }
    }
}

/// `Σ_b s_w[b]·s_x[b]·Σ q_w·q_x` for one row and one token: the scalar reference.
pub fn dot_scalar(wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (((wb, &sw), xb), &sx) in wq.chunks_exact(I8_BLOCK).zip(ws).zip(xq.chunks_exact(I8_BLOCK)).zip(xs) {
        let d: i32 = wb.iter().zip(xb).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
        acc += d as f32 * (sw * sx);
    }
    acc
}

/// `out[t·rows + r] = x[t] · W[r]` with the activations quantized into `acts` (see the module docs),
/// on path `isa` (clamped to what this CPU runs).
///
/// # Panics
/// On inconsistent lengths (caller bugs).
pub fn matmul_on(isa: Isa, pool: &ThreadPool, w: &Int8Matrix, x: &[f32], out: &mut [f32], acts: &mut Int8Acts) {
    let (rows, cols) = (w.rows, w.cols);
    assert!(cols > 0 && x.len().is_multiple_of(cols), "int8::matmul: activation length");
    let tokens = x.len() / cols;
    assert_eq!(out.len(), tokens * rows, "int8::matmul: output length");
    acts.quantize(x, cols);
    let acts: &Int8Acts = acts;
    let isa = crate::simd::usable(isa);
    let nb = w.blocks();
    let out_ptr = SyncPtr(out.as_mut_ptr());
    pool.for_range(rows, 8, &|r0, r1| {
        let out_ptr = &out_ptr;
        let mut store = |t: usize, r: usize, v: f32| {
            assert!(t < tokens && (r0..r1).contains(&r), "int8::matmul: output index outside the task");
            // SAFETY: (t, r) is inside `out` (tokens × rows, checked above) and rows r0..r1 belong to
            // this task only.
            unsafe { *out_ptr.0.add(t * rows + r) = v };
        };
        crate::simd::int8_rows(isa, w, &w.codes, &w.scales, nb, acts, r0, r1, &mut store);
    });
}

/// [`matmul_on`] on the active path with a per-thread activation scratch.
pub fn matmul(pool: &ThreadPool, w: &Int8Matrix, x: &[f32], out: &mut [f32]) {
    thread_local! {
        static ACTS: std::cell::RefCell<Int8Acts> = std::cell::RefCell::new(Int8Acts::new());
    }
    ACTS.with(|a| match a.try_borrow_mut() {
        Ok(mut a) => matmul_on(crate::simd::level(), pool, w, x, out, &mut a),
        Err(_) => matmul_on(crate::simd::level(), pool, w, x, out, &mut Int8Acts::new()),
    })
}

impl Int8Acts {
    pub(crate) fn tokens(&self) -> usize {
        self.tokens
    }
    /// Codes and scales of token `t`.
    pub(crate) fn token(&self, t: usize) -> (&[i8], &[f32]) {
        let nb = self.nb;
        (&self.codes[t * nb * I8_BLOCK..(t + 1) * nb * I8_BLOCK], &self.scales[t * nb..(t + 1) * nb])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_and_dot_reference() {
        let cols = 150;
        let vals: Vec<f32> = (0..3 * cols).map(|i| ((i * 7919 % 201) as f32 - 100.0) / 37.0).collect();
        let m = Int8Matrix::quantize_rows(3, cols, 2, &|r, out| out.copy_from_slice(&vals[r * cols..(r + 1) * cols]));
        assert_eq!(m.blocks(), 3);
        let mut back = vec![0f32; cols];
        m.row_to_f32(1, &mut back);
        for (k, (&b, &v)) in back.iter().zip(&vals[cols..2 * cols]).enumerate() {
            let s = m.scales[3 + k / 64];
            assert!((b - v).abs() <= s * 0.5 + 1e-6, "{k}: {b} vs {v}");
        }
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let pool = ThreadPool::new(2);
        let mut out = vec![0f32; 3];
        matmul_on(Isa::Scalar, &pool, &m, &x, &mut out, &mut Int8Acts::new());
        for r in 0..3 {
            let exact: f32 = (0..cols).map(|k| vals[r * cols + k] * x[k]).sum();
            let mag: f32 = (0..cols).map(|k| (vals[r * cols + k] * x[k]).abs()).sum();
            assert!((out[r] - exact).abs() <= 0.02 * mag, "row {r}: {} vs {exact}", out[r]);
        }
    }
}
