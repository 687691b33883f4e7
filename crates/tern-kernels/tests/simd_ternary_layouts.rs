//! The T1 (base-3, 1.6 bits per weight) and ggml TQ2_0 (in place) ternary layouts: packing
//! round-trips, agreement with tern-quants' ggml ports, and every SIMD path bit-exact with the scalar
//! reference on random shapes (K not a multiple of the block, any byte values, extreme activations).
//! Paths the CPU lacks are skipped with a message.

mod common;

use common::{paths, Rng};
use proptest::prelude::*;
use tern_kernels::act::ActScale;
use tern_kernels::buf::ByteBuf;
use tern_kernels::isa::Isa;
use tern_kernels::simd;
use tern_kernels::ternary::{
    dot_codes_scalar_as, t1_digit, t1_pack, QuantizedActs, TernaryError, TernaryLayout, TernaryMatrix, T1_BLOCK,
    TQ2_BLOCK,
};
use tern_kernels::ThreadPool;
use tern_quants::GgmlType;

fn values(n: usize, rng: &mut Rng) -> Vec<i8> {
    (0..n).map(|_| (rng.next() % 3) as i8 - 1).collect()
}

fn acts(tokens: usize, cols: usize, k: usize, extreme: bool, rng: &mut Rng) -> (Vec<i8>, Vec<ActScale>) {
    let mut codes = vec![0i8; tokens * k];
    let mut scales = Vec::new();
    for t in 0..tokens {
        for v in &mut codes[t * k..t * k + cols] {
            *v = if extreme {
                if rng.next() & 1 == 0 {
                    -128
                } else {
                    127
                }
            } else {
                rng.next() as u8 as i8
            };
        }
        let sum = codes[t * k..(t + 1) * k].iter().map(|&v| v as i32).sum();
        scales.push(ActScale { scale: 1.0, sum });
    }
    (codes, scales)
}

fn run(isa: Isa, pool: &ThreadPool, w: &TernaryMatrix, codes: &[i8], scales: &[ActScale], factor: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; scales.len() * w.rows()];
    simd::ternary_matmul(isa, pool, w, &QuantizedActs { codes, scales }, factor, &mut out);
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn t1_pack_and_digits_match_ggml_tq1() {
    // Every 5-trit combination: our packing equals ggml's TQ1_0 byte (tern-quants' port of
    // quantize_row_tq1_0_ref: base 3, first trit most significant, ⌈v·256/243⌉), and decodes back.
    for v in 0..243u16 {
        let codes = [(v / 81) as u8, (v / 27 % 3) as u8, (v / 9 % 3) as u8, (v / 3 % 3) as u8, (v % 3) as u8];
        let q = t1_pack(codes);
        assert_eq!(q as u16, (v * 256).div_ceil(243), "v {v}");
        for (n, &c) in codes.iter().enumerate() {
            assert_eq!(t1_digit(q, n), c, "v {v} digit {n}");
        }
    }
    // Cross-check with tern-quants: a TQ1_0 block whose first 32 bytes hold weights m + 32n.
    let mut rng = Rng(3);
    let vals = values(256, &mut rng);
    let f: Vec<f32> = vals.iter().map(|&v| v as f32).collect();
    let q = tern_quants::quantize(GgmlType::TQ1_0, &f).unwrap();
    for m in 0..32 {
        let codes = [0, 1, 2, 3, 4].map(|n| (vals[m + 32 * n] + 1) as u8);
        assert_eq!(q[m], t1_pack(codes));
    }
}

#[test]
fn layouts_round_trip_and_agree() {
    let mut rng = Rng(11);
    let (rows, cols) = (7usize, 3 * 256);
    let vals = values(rows * cols, &mut rng);
    let t2 = TernaryMatrix::from_values(rows, cols, &vals).unwrap();
    let t1 = TernaryMatrix::from_values_as(TernaryLayout::T1, rows, cols, &vals).unwrap();
    let tq2 = TernaryMatrix::from_values_as(TernaryLayout::Tq2, rows, cols, &vals).unwrap();
    assert_eq!(t1.padded_cols(), 3 * T1_BLOCK);
    assert_eq!(t1.row_bytes(), 3 * 64);
    assert_eq!(tq2.row_bytes(), 3 * 66);
    for r in 0..rows {
        for c in 0..cols {
            let v = vals[r * cols + c];
            assert_eq!((t2.get(r, c), t1.get(r, c), tq2.get(r, c)), (v, v, v), "r {r} c {c}");
        }
    }
    assert_eq!(t2.to_layout(TernaryLayout::T1, 2).unwrap(), t1);
    assert_eq!(t1.to_layout(TernaryLayout::T2, 3).unwrap(), t2);
    assert_eq!(t1.to_layout(TernaryLayout::Tq2, 1).unwrap(), tq2);
    // Tq2 bytes are ggml's TQ2_0 of the same values with d = 1.
    let f: Vec<f32> = vals.iter().map(|&v| v as f32).collect();
    let q = tern_quants::quantize(GgmlType::TQ2_0, &f).unwrap();
    assert_eq!(tq2.data(), &q[..]);
    let (w, d) = TernaryMatrix::from_tq2_0(rows, cols, ByteBuf::from_vec(q)).unwrap();
    assert_eq!((w, d), (tq2, 1.0));
    // Bytes round trip through the checked constructors.
    let again = TernaryMatrix::from_t1_bytes(rows, cols, ByteBuf::from_vec(t1.data().to_vec())).unwrap();
    assert_eq!(again, t1);
    let again = TernaryMatrix::from_t2_bytes(rows, cols, ByteBuf::from_vec(t2.data().to_vec())).unwrap();
    assert_eq!(again, t2);
}

#[test]
fn tq2_scales_must_agree() {
    let mut rng = Rng(5);
    let (rows, cols) = (3usize, 512usize);
    let mut f: Vec<f32> = values(rows * cols, &mut rng).iter().map(|&v| v as f32 * 0.5).collect();
    // A whole zero block (ggml writes d = 0 for it) is fine.
    f[256..512].fill(0.0);
    let q = tern_quants::quantize(GgmlType::TQ2_0, &f).unwrap();
    let (w, d) = TernaryMatrix::from_tq2_0(rows, cols, ByteBuf::from_vec(q)).unwrap();
    assert_eq!(d, 0.5);
    let deq = tern_quants::dequantize(GgmlType::TQ2_0, w.data(), rows * cols).unwrap();
    for (i, &v) in deq.iter().enumerate() {
        assert_eq!(v, w.get(i / cols, i % cols) as f32 * d);
    }
    // A block with another scale is refused, naming it.
    f[600] = 0.75;
    let q = tern_quants::quantize(GgmlType::TQ2_0, &f).unwrap();
    let e = TernaryMatrix::from_tq2_0(rows, cols, ByteBuf::from_vec(q)).unwrap_err();
    assert!(matches!(e, TernaryError::NonUniformScale { row: 1, block: 0, .. }), "{e}");
    assert!(matches!(
        TernaryMatrix::from_tq2_0(1, 300, ByteBuf::from_vec(vec![0; 66])),
        Err(TernaryError::ColsNotMultiple { cols: 300, block: 256 })
    ));
    assert!(matches!(
        TernaryMatrix::from_tq2_0(1, 256, ByteBuf::from_vec(vec![0; 65])),
        Err(TernaryError::Length { expected: 66, found: 65 })
    ));
    assert!(matches!(
        TernaryMatrix::from_t1_bytes(1, 320, ByteBuf::from_vec(vec![1; 64])),
        Err(TernaryError::BadT1Byte { .. })
    ));
}

fn layout() -> impl Strategy<Value = TernaryLayout> {
    prop_oneof![Just(TernaryLayout::T1), Just(TernaryLayout::Tq2), Just(TernaryLayout::T2)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// Random shapes (K not a multiple of the block for T1/T2), 1..7 tokens, 1..3 threads: every
    /// path equals the scalar reference bit for bit, and the reference equals the naive product.
    #[test]
    fn matmul_bit_exact(
        lay in layout(),
        rows in 1usize..=21,
        cols in 1usize..=900,
        tokens in 1usize..=7,
        extreme in any::<bool>(),
        threads in 1usize..=3,
        seed in any::<u64>(),
    ) {
        let cols = if lay == TernaryLayout::Tq2 { cols.div_ceil(TQ2_BLOCK) * TQ2_BLOCK } else { cols };
        let mut rng = Rng(seed);
        let vals = values(rows * cols, &mut rng);
        let w = TernaryMatrix::from_values_as(lay, rows, cols, &vals).unwrap();
        let k = w.padded_cols();
        let (codes, scales) = acts(tokens, cols, k, extreme, &mut rng);
        let factor: Vec<f32> = (0..tokens).map(|_| (rng.next() % 20001) as f32 / 1e4 - 1.0).collect();
        let pool = ThreadPool::new(threads);
        let reference = run(Isa::Scalar, &pool, &w, &codes, &scales, &factor);
        for t in 0..tokens {
            for r in 0..rows {
                let naive: i32 = (0..cols).map(|c| vals[r * cols + c] as i32 * codes[t * k + c] as i32).sum();
                prop_assert_eq!(reference[t * rows + r].to_bits(), (naive as f32 * factor[t]).to_bits());
            }
        }
        for isa in paths() {
            let got = run(isa, &pool, &w, &codes, &scales, &factor);
            prop_assert_eq!(bits(&got), bits(&reference), "{:?} {} rows {} cols {} tokens {}", lay, isa.name(), rows, cols, tokens);
        }
    }

    /// Arbitrary bytes (non-canonical T1 bytes, TQ2 code 3 and garbage scale bytes included).
    #[test]
    fn dot_codes_any_bytes(lay in layout(), blocks in 0usize..=30, extreme in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let row: Vec<u8> = (0..blocks * lay.block_bytes()).map(|_| rng.next() as u8).collect();
        let k = blocks * lay.block();
        let (x, _) = acts(1, k, k, extreme, &mut rng);
        let reference = dot_codes_scalar_as(lay, &row, &x);
        for isa in paths() {
            prop_assert_eq!(simd::dot_codes_as(isa, lay, &row, &x), reference, "{:?} {}", lay, isa.name());
        }
    }
}

/// Many tokens and a long K on a 3-thread pool, every layout.
#[test]
fn prefill_many_tokens_bit_exact() {
    for lay in [TernaryLayout::T1, TernaryLayout::Tq2] {
        let (rows, cols, tokens) = (37usize, 2560usize + 256, 67usize);
        let mut rng = Rng(42);
        let vals = values(rows * cols, &mut rng);
        let w = TernaryMatrix::from_values_as(lay, rows, cols, &vals).unwrap();
        let (codes, scales) = acts(tokens, cols, w.padded_cols(), false, &mut rng);
        let factor: Vec<f32> = (0..tokens).map(|t| 0.001 * (t as f32 + 1.0)).collect();
        let pool = ThreadPool::new(3);
        let reference = run(Isa::Scalar, &pool, &w, &codes, &scales, &factor);
        for isa in paths() {
            assert_eq!(
                bits(&run(isa, &pool, &w, &codes, &scales, &factor)),
                bits(&reference),
                "{lay:?} {}",
                isa.name()
            );
        }
    }
}

#[test]
fn ggml_block_writers_match_tern_quants() {
    let mut rng = Rng(9);
    let n = 4 * 256;
    let mut vals = values(n, &mut rng);
    vals[512..768].fill(0); // an all-zero block: d = 0 in ggml
    let codes: Vec<u8> = vals.iter().map(|&v| (v + 1) as u8).collect();
    let d = 0.375f32;
    let f: Vec<f32> = vals.iter().map(|&v| v as f32 * d).collect();
    for (ty, bb) in [(GgmlType::TQ1_0, 54usize), (GgmlType::TQ2_0, 66)] {
        let want = tern_quants::quantize(ty, &f).unwrap();
        let mut got = vec![0u8; n / 256 * bb];
        if ty == GgmlType::TQ1_0 {
            tern_kernels::ternary::tq1_0_from_codes(&codes, d, &mut got);
        } else {
            tern_kernels::ternary::tq2_0_from_codes(&codes, d, &mut got);
        }
        assert_eq!(got, want, "{ty}");
    }
    // TQ1_0 → T1 / T2 repack gives back the values and the scale.
    let q = tern_quants::quantize(GgmlType::TQ1_0, &f).unwrap();
    for lay in [TernaryLayout::T1, TernaryLayout::T2, TernaryLayout::Tq2] {
        let (m, s) = TernaryMatrix::from_tq1_0(lay, 2, 512, &q, 2).unwrap();
        assert_eq!(s, d);
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(m.get(i / 512, i % 512), v, "{lay:?} {i}");
        }
    }
}
