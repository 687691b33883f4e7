//! Int8 (per-64-block scales) matrix products: every SIMD path agrees with the scalar reference up
//! to f32 summation order (the integer block sums are exact), on random shapes with K not a
//! multiple of the block, 1..7 tokens and 1..3 threads. Paths the CPU lacks are skipped.

mod common;

use common::paths;
use proptest::prelude::*;
use tern_kernels::int8::{matmul_on, Int8Acts, Int8Matrix};
use tern_kernels::isa::Isa;
use tern_kernels::ThreadPool;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn simd_matches_scalar(rows in 1usize..=19, cols in 1usize..=400, tokens in 1usize..=7, threads in 1usize..=3, seed in any::<u64>()) {
        let mut s = seed;
        let mut next = move || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 33) % 20001) as f32 / 5000.0 - 2.0 };
        let vals: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let x: Vec<f32> = (0..tokens * cols).map(|_| next()).collect();
        let w = Int8Matrix::quantize_rows(rows, cols, 2, &|r, out| out.copy_from_slice(&vals[r * cols..(r + 1) * cols]));
        let pool = ThreadPool::new(threads);
        let mut want = vec![0f32; tokens * rows];
        matmul_on(Isa::Scalar, &pool, &w, &x, &mut want, &mut Int8Acts::new());
        // The reference against the exact product: each side is off by at most half a step
        // (max|·| / 254 of its row) per value, so the error is at most
        // Σ|w|·Δx + Σ|x|·Δw + n·Δw·Δx (plus f32 rounding).
        for t in 0..tokens {
            for r in 0..rows {
                let (w, xr) = (&vals[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]);
                let exact: f32 = w.iter().zip(xr).map(|(a, b)| a * b).sum();
                let (aw, ax) = (w.iter().fold(0f32, |m, v| m.max(v.abs())), xr.iter().fold(0f32, |m, v| m.max(v.abs())));
                let (dw, dx) = (aw / 254.0, ax / 254.0);
                let sw: f32 = w.iter().map(|v| v.abs()).sum();
                let sx: f32 = xr.iter().map(|v| v.abs()).sum();
                let bound = sw * dx + sx * dw + cols as f32 * dw * dx;
                prop_assert!((want[t * rows + r] - exact).abs() <= 1.01 * bound + 1e-5, "{} vs {exact} (bound {bound})", want[t * rows + r]);
            }
        }
        for isa in paths() {
            let mut got = vec![f32::NAN; tokens * rows];
            matmul_on(isa, &pool, &w, &x, &mut got, &mut Int8Acts::new());
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{}: {} vs {}", isa.name(), g, w);
            }
        }
    }
}
