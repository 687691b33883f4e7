//! Property tests: every SIMD path of the ternary × int8 kernels is bit-exact with the scalar
//! reference (`ternary::dot_codes_scalar`), which is itself checked against a naive `Σ w·x` over the
//! unpacked `{-1, 0, 1}` weights. Paths the CPU lacks are skipped with a message.

mod common;

use common::{paths, Rng};
use proptest::prelude::*;
use tern_kernels::act::ActScale;
use tern_kernels::isa::Isa;
use tern_kernels::simd;
use tern_kernels::ternary::{dot_codes_scalar, QuantizedActs, TernaryMatrix, BLOCK};
use tern_kernels::ThreadPool;

#[derive(Clone, Copy, Debug)]
enum Weights {
    Random,
    AllMinus,
    AllPlus,
    AllZero,
}

#[derive(Clone, Copy, Debug)]
enum Acts {
    Random,
    AllMin,
    AllMax,
    /// Only -128 and 127.
    Extremes,
}

fn weights(mode: Weights, n: usize, rng: &mut Rng) -> Vec<i8> {
    (0..n)
        .map(|_| match mode {
            Weights::Random => (rng.next() % 3) as i8 - 1,
            Weights::AllMinus => -1,
            Weights::AllPlus => 1,
            Weights::AllZero => 0,
        })
        .collect()
}

/// `tokens` rows of `cols` codes, zero-padded to `k`, and their per-token scale/sum.
fn activations(mode: Acts, tokens: usize, cols: usize, k: usize, rng: &mut Rng) -> (Vec<i8>, Vec<ActScale>) {
    let mut codes = vec![0i8; tokens * k];
    let mut scales = Vec::new();
    for t in 0..tokens {
        let row = &mut codes[t * k..t * k + cols];
        for v in row.iter_mut() {
            *v = match mode {
                Acts::Random => rng.next() as u8 as i8,
                Acts::AllMin => -128,
                Acts::AllMax => 127,
                Acts::Extremes => {
                    if rng.next() & 1 == 0 {
                        -128
                    } else {
                        127
                    }
                }
            };
        }
        let sum = row.iter().map(|&v| v as i32).sum();
        scales.push(ActScale { scale: 1.0 + t as f32, sum });
    }
    (codes, scales)
}

fn weight_mode() -> impl Strategy<Value = Weights> {
    prop_oneof![
        4 => Just(Weights::Random),
        1 => Just(Weights::AllMinus),
        1 => Just(Weights::AllPlus),
        1 => Just(Weights::AllZero),
    ]
}

fn act_mode() -> impl Strategy<Value = Acts> {
    prop_oneof![
        4 => Just(Acts::Random),
        1 => Just(Acts::AllMin),
        1 => Just(Acts::AllMax),
        1 => Just(Acts::Extremes),
    ]
}

/// Runs `simd::ternary_matmul` on `isa`.
fn run(isa: Isa, pool: &ThreadPool, w: &TernaryMatrix, codes: &[i8], scales: &[ActScale], factor: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; scales.len() * w.rows()];
    simd::ternary_matmul(isa, pool, w, &QuantizedActs { codes, scales }, factor, &mut out);
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Random shapes (K not a multiple of 128, rows not a multiple of any tile, 1..7 tokens), with
    /// extreme activations and constant weights mixed in.
    #[test]
    fn matmul_bit_exact(
        rows in 1usize..=21,
        cols in 1usize..=700,
        tokens in 1usize..=7,
        wmode in weight_mode(),
        amode in act_mode(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let vals = weights(wmode, rows * cols, &mut rng);
        let w = TernaryMatrix::from_values(rows, cols, &vals).unwrap();
        let k = w.padded_cols();
        let (codes, scales) = activations(amode, tokens, cols, k, &mut rng);
        let factor: Vec<f32> = (0..tokens).map(|_| (rng.next() % 20001) as f32 / 1e4 - 1.0).collect();
        let pool = ThreadPool::new(threads);

        let reference = run(Isa::Scalar, &pool, &w, &codes, &scales, &factor);
        // The reference against the naive product of the unpacked values.
        for t in 0..tokens {
            for r in 0..rows {
                let naive: i32 = (0..cols).map(|c| vals[r * cols + c] as i32 * codes[t * k + c] as i32).sum();
                prop_assert_eq!(reference[t * rows + r].to_bits(), (naive as f32 * factor[t]).to_bits());
            }
        }
        for isa in paths() {
            let got = run(isa, &pool, &w, &codes, &scales, &factor);
            prop_assert_eq!(bits(&got), bits(&reference), "{} rows {} cols {} tokens {}", isa.name(), rows, cols, tokens);
        }
    }

    /// `dot_codes` on arbitrary bytes (2-bit code 3 included) and arbitrary activations.
    #[test]
    fn dot_codes_bit_exact(blocks in 0usize..=40, amode in act_mode(), seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let row: Vec<u8> = (0..blocks * 32).map(|_| rng.next() as u8).collect();
        let (x, _) = activations(amode, 1, blocks * BLOCK, blocks * BLOCK, &mut rng);
        let reference = dot_codes_scalar(&row, &x);
        for isa in paths() {
            prop_assert_eq!(simd::dot_codes(isa, &row, &x), reference, "{}", isa.name());
        }
    }
}

/// The i16 accumulation bound of the AVX2 path at its worst: every 2-bit code 3 (byte 0xFF) against
/// -128 or 127 everywhere, over many more blocks than one i16 group; and the all-(±1) extremes.
#[test]
fn saturation_worst_cases() {
    // 22000 blocks: without the AVX-512 path's i32 → i64 flush every 16384 blocks its lanes would wrap.
    for blocks in [1usize, 7, 8, 9, 16, 17, 54, 200, 22000] {
        for &byte in &[0xFFu8, 0xAA, 0x00, 0x55] {
            for &xv in &[-128i8, 127] {
                let row = vec![byte; blocks * 32];
                let x = vec![xv; blocks * BLOCK];
                let code = (byte & 3) as i32;
                let expect = code * xv as i32 * (blocks * BLOCK) as i32;
                assert_eq!(dot_codes_scalar(&row, &x), expect);
                for isa in paths() {
                    assert_eq!(simd::dot_codes(isa, &row, &x), expect, "{} blocks {blocks} byte {byte:#x}", isa.name());
                }
            }
        }
    }
}

/// Many tokens (several token blocks, remainder tiles) and a K of several blocks, on a 3-thread pool.
#[test]
fn prefill_many_tokens_bit_exact() {
    let (rows, cols, tokens) = (37usize, 2560usize + 77, 203usize);
    let mut rng = Rng(42);
    let vals = weights(Weights::Random, rows * cols, &mut rng);
    let w = TernaryMatrix::from_values(rows, cols, &vals).unwrap();
    let (codes, scales) = activations(Acts::Random, tokens, cols, w.padded_cols(), &mut rng);
    let factor: Vec<f32> = (0..tokens).map(|t| 0.001 * (t as f32 + 1.0)).collect();
    let pool = ThreadPool::new(3);
    let reference = run(Isa::Scalar, &pool, &w, &codes, &scales, &factor);
    for isa in paths() {
        assert_eq!(bits(&run(isa, &pool, &w, &codes, &scales, &factor)), bits(&reference), "{}", isa.name());
    }
}

/// Degenerate shapes: no rows, no tokens.
#[test]
fn empty_shapes() {
    let pool = ThreadPool::new(2);
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni] {
        let w = TernaryMatrix::zeros(0, 100);
        let (codes, scales) = activations(Acts::Random, 2, 100, w.padded_cols(), &mut Rng(1));
        assert!(run(isa, &pool, &w, &codes, &scales, &[1.0, 1.0]).is_empty());
        let w = TernaryMatrix::zeros(5, 100);
        assert!(run(isa, &pool, &w, &[], &[], &[]).is_empty());
        assert_eq!(simd::dot_codes(isa, &[], &[]), 0);
    }
}
