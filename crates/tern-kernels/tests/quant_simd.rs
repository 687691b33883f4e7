//! Property tests of the integer kernels behind `quant::matmul` for every block type with an integer
//! path (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, TQ1_0, TQ2_0):
//!
//! * exactness: with power-of-two weight scales and integer activations whose blocks have
//!   `max |x| = 127` (activation scale ±1), every f32 operation of every path is exact, so the scalar
//!   reference and each SIMD path must equal, bit for bit, the exact product of tern-quants'
//!   dequantized weights with the activations — any integer slip or layout mistake shows;
//! * every SIMD path agrees with the scalar reference within 1e-5 · Σ|w·x| on random blocks
//!   (only the order of the per-block f32 additions differs), and the scalar reference with an f64
//!   product of the dequantized weights and the quantized activations;
//! * int8 activation quantization costs at most 1e-2 relative L2 error against the f32 product of
//!   the dequantized weights with the original activations.
//!
//! Shapes cover odd row counts (tile remainders and row chunks), 1–7 tokens (decode and prefill
//! tiles) and 1–3 threads; a product with many tokens crosses token blocks. SIMD paths the CPU lacks are skipped with a message.

mod common;

use common::Rng;
use proptest::prelude::*;
use tern_kernels::buf::ByteBuf;
use tern_kernels::isa::Isa;
use tern_kernels::quant::{self, QuantMatrix, QuantScratch};
use tern_kernels::ThreadPool;
use tern_quants::GgmlType;

const TYPES: [GgmlType; 12] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
];

/// The SIMD paths this CPU runs; prints the ones it skips.
fn paths() -> Vec<Isa> {
    [Isa::Avx2, Isa::Avx512Vnni]
        .into_iter()
        .filter(|&isa| {
            let ok = quant::usable(isa) == isa;
            if !ok {
                eprintln!("skipped: this CPU lacks the {} path", isa.name());
            }
            ok
        })
        .collect()
}

/// Elements per block, bytes per block and the offsets of the f16 scale fields (d, and dmin / m).
fn layout(ty: GgmlType) -> (usize, usize, &'static [usize]) {
    match ty {
        GgmlType::Q4_0 => (32, 18, &[0]),
        GgmlType::Q4_1 => (32, 20, &[0, 2]),
        GgmlType::Q5_0 => (32, 22, &[0]),
        GgmlType::Q5_1 => (32, 24, &[0, 2]),
        GgmlType::Q8_0 => (32, 34, &[0]),
        GgmlType::Q2_K => (256, 84, &[80, 82]),
        GgmlType::Q3_K => (256, 110, &[108]),
        GgmlType::Q4_K => (256, 144, &[0, 2]),
        GgmlType::Q5_K => (256, 176, &[0, 2]),
        GgmlType::Q6_K => (256, 210, &[208]),
        GgmlType::TQ1_0 => (256, 54, &[52]),
        GgmlType::TQ2_0 => (256, 66, &[64]),
        _ => unreachable!(),
    }
}

/// Random blocks: random bytes, with every f16 scale field set by `scale`.
fn random_blocks(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    rng: &mut Rng,
    scale: &mut dyn FnMut(&mut Rng) -> f32,
) -> Vec<u8> {
    let (bs, bytes, fields) = layout(ty);
    let mut out: Vec<u8> = (0..rows * cols / bs * bytes).map(|_| rng.next() as u8).collect();
    for blk in out.chunks_exact_mut(bytes) {
        for &off in fields {
            let h = half::f16::from_f32(scale(rng));
            blk[off..off + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    out
}

fn matrix(ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> (QuantMatrix, Vec<f32>) {
    let deq = tern_quants::dequantize(ty, &bytes, rows * cols).expect("dequantize");
    (QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(bytes)).expect("matrix"), deq)
}

fn run(isa: Isa, pool: &ThreadPool, w: &QuantMatrix, x: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len() / w.cols() * w.rows()];
    quant::matmul_on(isa, pool, w, x, &mut out, &mut QuantScratch::new());
    out
}

/// The quantized activations' values (codes × block scales), token after token.
fn act_values(ty: GgmlType, cols: usize, x: &[f32]) -> Vec<f32> {
    let mut s = QuantScratch::new();
    s.quantize(ty, cols, x);
    let mut v = vec![0f32; x.len()];
    for (t, chunk) in v.chunks_exact_mut(cols).enumerate() {
        s.dequantize_token(t, chunk);
    }
    v
}

/// `(Σ w·x, Σ |w·x|)` in f64 for output `(t, r)`.
fn exact(w: &[f32], x: &[f32], cols: usize, t: usize, r: usize) -> (f64, f64) {
    let (w, x) = (&w[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]);
    w.iter().zip(x).fold((0.0, 0.0), |(s, m), (&a, &b)| {
        let p = a as f64 * b as f64;
        (s + p, m + p.abs())
    })
}

fn ty_strategy() -> impl Strategy<Value = GgmlType> {
    (0..TYPES.len()).prop_map(|i| TYPES[i])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Power-of-two scales and integer activations: every path is exact.
    #[test]
    fn every_path_is_exact_on_exact_inputs(
        ty in ty_strategy(),
        rows in 1usize..=9,
        nb in 1usize..=2,
        tokens in 1usize..=6,
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let (bs, _, _) = layout(ty);
        // Every f32 partial sum is exact if Σ|w·x| / (smallest scale) < 2^24. Worst case (Q6_K):
        // 2 super-blocks of Σ|sc·q·x| ≤ 128 · 32 · (255 · 2 + 127) < 2^22, scales 1 and 1/2; 32-blocks:
        // 8 blocks of Σ|q·x| ≤ 128 · (31 · 2 + 127) < 2^15, scales 1 … 1/8.
        let cols = if bs == 32 { 32 * 4 * nb } else { 256 * nb };
        let exponents = if bs == 32 { 4 } else { 2 };
        let bytes = random_blocks(ty, rows, cols, &mut rng, &mut |r: &mut Rng| {
            let e = r.below(exponents) as i32;
            if r.below(2) == 0 { 2f32.powi(-e) } else { -(2f32.powi(-e)) }
        });
        let (w, deq) = matrix(ty, rows, cols, bytes);
        // Integer activations in -2..=2 with one ±127 per activation block (so its scale is ±1).
        let ab = quant::act_format(ty).unwrap().block();
        let mut x: Vec<f32> = (0..tokens * cols).map(|_| rng.below(5) as f32 - 2.0).collect();
        for blk in x.chunks_exact_mut(ab) {
            let i = rng.below(ab as u64) as usize;
            blk[i] = if rng.below(2) == 0 { 127.0 } else { -127.0 };
        }
        prop_assert_eq!(act_values(ty, cols, &x), x.clone(), "activations must quantize exactly");
        let pool = ThreadPool::new(threads);
        let mut all = vec![Isa::Scalar];
        all.extend(paths());
        for isa in all {
            let got = run(isa, &pool, &w, &x);
            for t in 0..tokens {
                for r in 0..rows {
                    let (want, _) = exact(&deq, &x, cols, t, r);
                    prop_assert_eq!(got[t * rows + r] as f64, want, "{} {} t{} r{}", ty, isa.name(), t, r);
                }
            }
        }
    }

    /// Random blocks and activations: SIMD within 1e-5 · Σ|w·x| of the scalar reference, which is
    /// within 1e-5 · Σ|w·x| of the f64 product with the quantized activations.
    #[test]
    fn simd_matches_scalar(
        ty in ty_strategy(),
        // Small counts exercise the tile remainders, larger ones the 64-row chunks of a task.
        rows in prop_oneof![1usize..=11, 60usize..=140],
        nb in 1usize..=3,
        tokens in 1usize..=7,
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let (bs, _, _) = layout(ty);
        let cols = if bs == 32 { 32 * 5 * nb } else { 256 * nb };
        let bytes = random_blocks(ty, rows, cols, &mut rng, &mut |r: &mut Rng| r.f32(0.05));
        let (w, deq) = matrix(ty, rows, cols, bytes);
        let x: Vec<f32> = (0..tokens * cols).map(|_| rng.f32(3.0)).collect();
        let xq = act_values(ty, cols, &x);
        let pool = ThreadPool::new(threads);
        let reference = run(Isa::Scalar, &pool, &w, &x);
        for t in 0..tokens {
            for r in 0..rows {
                let (want, mag) = exact(&deq, &xq, cols, t, r);
                let got = reference[t * rows + r] as f64;
                prop_assert!((got - want).abs() <= 1e-5 * mag + 1e-30, "{} scalar t{} r{}: {} vs {} (Σ|wx| {})", ty, t, r, got, want, mag);
            }
        }
        for isa in paths() {
            let got = run(isa, &pool, &w, &x);
            for t in 0..tokens {
                for r in 0..rows {
                    let (_, mag) = exact(&deq, &xq, cols, t, r);
                    let (g, e) = (got[t * rows + r] as f64, reference[t * rows + r] as f64);
                    prop_assert!((g - e).abs() <= 1e-5 * mag + 1e-30, "{} {} t{} r{}: {} vs {} (Σ|wx| {})", ty, isa.name(), t, r, g, e, mag);
                }
            }
        }
    }
}

/// Int8 activations against f32 activations: relative L2 error of the whole output ≤ 1e-2, for
/// realistic weights (tern-quants' quantizers where they exist, random blocks otherwise).
#[test]
fn q8_activation_error_is_small() {
    let pool = ThreadPool::new(2);
    let (rows, tokens) = (64usize, 3usize);
    for ty in TYPES {
        let cols = 1024;
        let mut rng = Rng(ty as u64 + 17);
        let vals: Vec<f32> = (0..rows * cols).map(|_| rng.f32(1.0) + rng.f32(1.0) + rng.f32(1.0)).collect();
        let bytes = match tern_quants::quantize(ty, &vals) {
            Ok(b) => b,
            Err(_) => {
                let mut b = random_blocks(ty, rows, cols, &mut rng, &mut |r: &mut Rng| 0.01 + r.f32(0.005));
                if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    // Centre the weights as a real quantizer does (m = block minimum = −d · levels / 2).
                    let (_, size, _) = layout(ty);
                    let half_levels = if ty == GgmlType::Q4_1 { 7.5 } else { 15.5 };
                    for blk in b.chunks_exact_mut(size) {
                        let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                        blk[2..4].copy_from_slice(&half::f16::from_f32(-d * half_levels).to_le_bytes());
                    }
                }
                b
            }
        };
        let (w, deq) = matrix(ty, rows, cols, bytes);
        let x: Vec<f32> = (0..tokens * cols).map(|_| rng.f32(1.0) + rng.f32(1.0) + rng.f32(1.0)).collect();
        let got = run(Isa::Scalar, &pool, &w, &x);
        let (mut err, mut norm) = (0f64, 0f64);
        for t in 0..tokens {
            for r in 0..rows {
                let (want, _) = exact(&deq, &x, cols, t, r);
                err += (got[t * rows + r] as f64 - want).powi(2);
                norm += want * want;
            }
        }
        let rel = (err / norm).sqrt();
        eprintln!("{ty}: relative L2 error of int8 activations {rel:.2e}");
        assert!(rel <= 1e-2, "{ty}: relative L2 error {rel}");
    }
}

/// Non-finite activations give NaN outputs on every path instead of finite garbage.
#[test]
fn non_finite_activations_propagate() {
    let pool = ThreadPool::new(1);
    for ty in TYPES {
        let mut rng = Rng(5);
        let (rows, cols) = (5usize, 256usize);
        let bytes = random_blocks(ty, rows, cols, &mut rng, &mut |r: &mut Rng| r.f32(0.05));
        let (w, _) = matrix(ty, rows, cols, bytes);
        let mut x: Vec<f32> = (0..2 * cols).map(|_| rng.f32(1.0)).collect();
        x[cols + 7] = f32::NAN;
        let mut all = vec![Isa::Scalar];
        all.extend(paths());
        for isa in all {
            let got = run(isa, &pool, &w, &x);
            assert!(got[..rows].iter().all(|v| v.is_finite()), "{ty} {}: token 0 is finite", isa.name());
            assert!(got[rows..].iter().all(|v| v.is_nan()), "{ty} {}: token 1 is NaN", isa.name());
        }
    }
}

/// Enough tokens to span several token blocks (the activations of a block are limited to 256 KiB,
/// i.e. 32 tokens of 8192 columns), a row count that leaves remainders in every tile shape.
#[test]
fn many_tokens_cross_token_blocks() {
    let pool = ThreadPool::new(3);
    for ty in [GgmlType::Q4_0, GgmlType::Q4_K] {
        let (rows, cols, tokens) = (9usize, 8192usize, 70usize);
        let mut rng = Rng(99);
        let bytes = random_blocks(ty, rows, cols, &mut rng, &mut |r: &mut Rng| r.f32(0.05));
        let (w, deq) = matrix(ty, rows, cols, bytes);
        let x: Vec<f32> = (0..tokens * cols).map(|_| rng.f32(2.0)).collect();
        let xq = act_values(ty, cols, &x);
        let reference = run(Isa::Scalar, &pool, &w, &x);
        for isa in paths() {
            let got = run(isa, &pool, &w, &x);
            for t in 0..tokens {
                for r in 0..rows {
                    let (_, mag) = exact(&deq, &xq, cols, t, r);
                    let (g, e) = (got[t * rows + r] as f64, reference[t * rows + r] as f64);
                    assert!((g - e).abs() <= 1e-5 * mag, "{ty} {} t{t} r{r}: {g} vs {e}", isa.name());
                }
            }
        }
    }
}
