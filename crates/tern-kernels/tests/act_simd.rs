//! Per-token int8 activation quantization: every SIMD path is bit-exact with the scalar reference
//! (codes, scale and code sum), for any length (tails of every size), NaN / infinities / subnormals
//! included. Paths the CPU lacks are skipped with a message.

mod common;

use common::paths;
use proptest::prelude::*;
use tern_kernels::act::{quantize_i8_on, quantize_i8_scalar};

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -4.0f32..4.0,
        1 => Just(f32::NAN),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(1e-39f32),
        1 => -1e-6f32..1e-6,
        1 => Just(0.5f32),
        1 => any::<f32>(),
    ]
}

fn check(x: &[f32], pad: usize) -> Result<(), TestCaseError> {
    let mut want = vec![7i8; x.len() + pad];
    let s = quantize_i8_scalar(x, &mut want);
    for isa in paths() {
        let mut got = vec![7i8; x.len() + pad];
        let g = quantize_i8_on(isa, x, &mut got);
        prop_assert_eq!(&got, &want, "{}", isa.name());
        prop_assert_eq!(g.scale.to_bits(), s.scale.to_bits(), "{}", isa.name());
        prop_assert_eq!(g.sum, s.sum, "{}", isa.name());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn simd_matches_scalar(x in prop::collection::vec(value(), 0..300), pad in 0usize..40) {
        check(&x, pad)?;
    }

    /// Mostly finite inputs with ties: values that land exactly on .5 after scaling.
    #[test]
    fn ties(n in 1usize..200, seed in any::<u64>()) {
        let mut s = seed;
        let mut x: Vec<f32> = (0..n).map(|_| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1); ((s >> 40) % 255) as f32 - 127.0 + 0.5 }).collect();
        x[0] = 127.0; // scale 1: every other value is a tie
        check(&x, 3)?;
    }
}
