//! Property tests: the SIMD dense f32 / f16 / bf16 kernels agree with the scalar reference within
//! 1e-5 relative to `Σ |w·x|` (only the summation order differs), the scalar reference agrees with
//! an f64 naive product, and the SIMD widening of f16 / bf16 is exact for every bit pattern.
//! Paths the CPU lacks are skipped with a message.

mod common;

use common::{paths, Rng};
use proptest::prelude::*;
use tern_kernels::dense::{self, DenseDType};
use tern_kernels::isa::Isa;
use tern_kernels::simd::{self, DenseView};
use tern_kernels::ThreadPool;

/// Allowed |simd − scalar| relative to `Σ |w·x|`.
const REL: f64 = 1e-5;

fn dtype() -> impl Strategy<Value = DenseDType> {
    prop_oneof![Just(DenseDType::F32), Just(DenseDType::F16), Just(DenseDType::BF16)]
}

/// Random weights stored as `dtype`, and the f32 values they hold.
fn weights(dtype: DenseDType, n: usize, rng: &mut Rng) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::with_capacity(n * dtype.size());
    let mut vals = Vec::with_capacity(n);
    for _ in 0..n {
        let v = rng.f32(2.0);
        match dtype {
            DenseDType::F32 => {
                bytes.extend(v.to_le_bytes());
                vals.push(v);
            }
            DenseDType::F16 => {
                let h = half::f16::from_f32(v);
                bytes.extend(h.to_le_bytes());
                vals.push(h.to_f32());
            }
            DenseDType::BF16 => {
                let h = half::bf16::from_f32(v);
                bytes.extend(h.to_le_bytes());
                vals.push(h.to_f32());
            }
        }
    }
    (bytes, vals)
}

fn run(isa: Isa, pool: &ThreadPool, w: DenseView<'_>, x: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len() / w.cols * w.rows];
    simd::dense_matmul(isa, pool, w, x, &mut out);
    out
}

/// Checks every output of `got` against `reference` within [`REL`] · Σ|w·x|.
fn check(
    label: &str,
    got: &[f32],
    reference: &[f32],
    vals: &[f32],
    x: &[f32],
    (rows, cols): (usize, usize),
) -> Result<(), TestCaseError> {
    let tokens = x.len() / cols;
    for t in 0..tokens {
        for r in 0..rows {
            let mag: f64 = (0..cols).map(|k| (vals[r * cols + k] as f64 * x[t * cols + k] as f64).abs()).sum();
            let (g, e) = (got[t * rows + r] as f64, reference[t * rows + r] as f64);
            prop_assert!((g - e).abs() <= REL * mag + 1e-30, "{label} t{t} r{r}: {g} vs {e} (Σ|wx| = {mag})");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// Random shapes: K across chunk boundaries and vector tails, rows not a multiple of 4, 1..7 tokens.
    #[test]
    fn matmul_matches_scalar(
        rows in 1usize..=11,
        cols in 1usize..=1100,
        tokens in 1usize..=7,
        dt in dtype(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let (bytes, vals) = weights(dt, rows * cols, &mut rng);
        let x: Vec<f32> = (0..tokens * cols).map(|_| rng.f32(3.0)).collect();
        let view = DenseView { rows, cols, dtype: dt, bytes: &bytes };
        let pool = ThreadPool::new(threads);
        let reference = run(Isa::Scalar, &pool, view, &x);
        // The reference against an f64 naive product (f32 accumulation error only).
        let naive: Vec<f32> = (0..tokens * rows)
            .map(|i| {
                let (t, r) = (i / rows, i % rows);
                (0..cols).map(|k| vals[r * cols + k] as f64 * x[t * cols + k] as f64).sum::<f64>() as f32
            })
            .collect();
        check("scalar vs f64", &reference, &naive, &vals, &x, (rows, cols))?;
        for isa in paths() {
            let got = run(isa, &pool, view, &x);
            check(isa.name(), &got, &reference, &vals, &x, (rows, cols))?;
        }
    }

    #[test]
    fn dot_f32_matches_scalar(n in 0usize..=300, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let a: Vec<f32> = (0..n).map(|_| rng.f32(4.0)).collect();
        let b: Vec<f32> = (0..n + 3).map(|_| rng.f32(4.0)).collect();
        let reference = simd::dot_f32_scalar(&a, &b);
        let mag: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
        for isa in paths() {
            let got = simd::dot_f32(isa, &a, &b);
            prop_assert!(((got - reference) as f64).abs() <= REL * mag + 1e-30, "{}: {} vs {}", isa.name(), got, reference);
        }
    }
}

/// More tokens than one token block (64) and several K chunks, on a 3-thread pool.
#[test]
fn prefill_many_tokens() {
    let (rows, cols, tokens) = (23usize, 1500usize, 150usize);
    let mut rng = Rng(9);
    let pool = ThreadPool::new(3);
    for dt in [DenseDType::F32, DenseDType::F16, DenseDType::BF16] {
        let (bytes, vals) = weights(dt, rows * cols, &mut rng);
        let x: Vec<f32> = (0..tokens * cols).map(|_| rng.f32(1.0)).collect();
        let view = DenseView { rows, cols, dtype: dt, bytes: &bytes };
        let reference = run(Isa::Scalar, &pool, view, &x);
        for isa in paths() {
            check(isa.name(), &run(isa, &pool, view, &x), &reference, &vals, &x, (rows, cols)).unwrap();
        }
    }
}

/// Widening every f16 and bf16 bit pattern is exact on every path (NaN stays NaN).
#[test]
fn widen_exhaustive() {
    let src: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    for dt in [DenseDType::F16, DenseDType::BF16] {
        let mut reference = vec![0f32; 1 << 16];
        dense::widen(dt, &src, &mut reference);
        for isa in paths() {
            // Odd offsets and lengths exercise the vector tails.
            for (start, len) in [(0usize, 1usize << 16), (3, 1000), (17, 7), (5, 0)] {
                let mut got = vec![0f32; len];
                simd::widen(isa, dt, &src[2 * start..2 * (start + len)], &mut got);
                for (i, (g, e)) in got.iter().zip(&reference[start..start + len]).enumerate() {
                    let same = if e.is_nan() { g.is_nan() } else { g.to_bits() == e.to_bits() };
                    assert!(same, "{} {dt:?} pattern {:#06x}: {g} vs {e}", isa.name(), start + i);
                }
            }
        }
    }
}

/// Special values flow through like the scalar path: ±inf and NaN weights.
#[test]
fn non_finite_weights() {
    let pool = ThreadPool::new(1);
    let cols = 37;
    let mut vals = vec![0.5f32; 3 * cols];
    vals[5] = f32::INFINITY;
    vals[cols + 30] = f32::NAN;
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = DenseView { rows: 3, cols, dtype: DenseDType::F32, bytes: &bytes };
    let x = vec![1.0f32; cols];
    let reference = run(Isa::Scalar, &pool, view, &x);
    assert!(reference[0].is_infinite() && reference[1].is_nan() && reference[2] == 0.5 * cols as f32);
    for isa in paths() {
        let got = run(isa, &pool, view, &x);
        assert!(got[0] == f32::INFINITY && got[1].is_nan() && got[2] == reference[2], "{}: {got:?}", isa.name());
    }
}
