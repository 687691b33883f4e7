//! Helpers shared by the kernel test files: which SIMD paths this CPU runs, and a small seeded RNG.
#![allow(dead_code)] // each test file uses a subset

use tern_kernels::isa::Isa;
use tern_kernels::simd;

/// The SIMD paths this CPU runs (AVX2, AVX-512 VNNI); prints the ones it skips.
pub fn paths() -> Vec<Isa> {
    [Isa::Avx2, Isa::Avx512Vnni]
        .into_iter()
        .filter(|&isa| {
            let ok = simd::best() >= isa;
            if !ok {
                eprintln!("skipped: this CPU lacks the {} path", isa.name());
            }
            ok
        })
        .collect()
}

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [-scale, scale).
    pub fn f32(&mut self, scale: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}
