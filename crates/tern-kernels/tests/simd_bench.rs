//! Throughput of each path, single-threaded (ignored; run with
//! `cargo test --release -p tern-kernels --test simd_bench -- --ignored --nocapture`).
//!
//! Ternary GEMV on a 2560 × 6912 matrix (and its transpose shape) reports GB/s of packed weights;
//! a 64-token ternary product reports int8 GOP/s; dense bf16 / f32 GEMV reports GB/s of weights.

use std::time::{Duration, Instant};

use tern_kernels::act::ActScale;
use tern_kernels::dense::DenseDType;
use tern_kernels::isa::Isa;
use tern_kernels::simd::{self, DenseView};
use tern_kernels::ternary::{QuantizedActs, TernaryMatrix};
use tern_kernels::ThreadPool;

const PATHS: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni];

/// Median seconds per call of `f` over about 0.4 s (after warming up).
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(400) || samples.len() < 5 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn ternary(rows: usize, cols: usize, tokens: usize) -> (TernaryMatrix, Vec<i8>, Vec<ActScale>) {
    let mut s = 1u64;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        s >> 33
    };
    let vals: Vec<i8> = (0..rows * cols).map(|_| (next() % 3) as i8 - 1).collect();
    let w = TernaryMatrix::from_values(rows, cols, &vals).unwrap();
    let k = w.padded_cols();
    let codes: Vec<i8> = (0..tokens * k).map(|i| if i % k < cols { next() as u8 as i8 } else { 0 }).collect();
    let scales = (0..tokens)
        .map(|t| ActScale { scale: 1.0, sum: codes[t * k..(t + 1) * k].iter().map(|&v| v as i32).sum() })
        .collect();
    (w, codes, scales)
}

#[test]
#[ignore]
fn throughput() {
    let pool = ThreadPool::new(1);
    println!("best path on this CPU: {}", simd::best().name());
    for (rows, cols) in [(2560usize, 6912usize), (6912, 2560)] {
        let (w, codes, scales) = ternary(rows, cols, 1);
        let mut out = vec![0f32; rows];
        for isa in PATHS.into_iter().filter(|&i| simd::best() >= i) {
            let acts = QuantizedActs { codes: &codes, scales: &scales };
            let s = time(|| simd::ternary_matmul(isa, &pool, &w, &acts, &[1.0], &mut out));
            let gbs = w.data().len() as f64 / s / 1e9;
            println!("ternary GEMV {rows}x{cols} {:>10}: {:8.1} us  {gbs:6.2} GB/s packed", isa.name(), s * 1e6);
        }
    }
    let (rows, cols, tokens) = (2560usize, 6912usize, 64usize);
    let (w, codes, scales) = ternary(rows, cols, tokens);
    let mut out = vec![0f32; rows * tokens];
    let factor = vec![1.0f32; tokens];
    for isa in PATHS.into_iter().filter(|&i| simd::best() >= i) {
        let acts = QuantizedActs { codes: &codes, scales: &scales };
        let s = time(|| simd::ternary_matmul(isa, &pool, &w, &acts, &factor, &mut out));
        let gops = 2.0 * (rows * w.padded_cols() * tokens) as f64 / s / 1e9;
        println!("ternary {tokens} tokens {rows}x{cols} {:>10}: {:8.1} ms  {gops:6.1} GOP/s", isa.name(), s * 1e3);
    }
    for dt in [DenseDType::BF16, DenseDType::F32] {
        let (rows, cols) = (2560usize, 2560usize);
        let bytes: Vec<u8> =
            (0..rows * cols * dt.size()).map(|i| if i % 2 == 1 { 0x3C } else { (i * 7) as u8 }).collect();
        let view = DenseView { rows, cols, dtype: dt, bytes: &bytes };
        for tokens in [1usize, 16] {
            let x: Vec<f32> = (0..cols * tokens).map(|i| (i % 13) as f32 * 0.1).collect();
            let mut out = vec![0f32; rows * tokens];
            for isa in PATHS.into_iter().filter(|&i| simd::best() >= i) {
                let s = time(|| simd::dense_matmul(isa, &pool, view, &x, &mut out));
                let gflops = 2.0 * (rows * cols * tokens) as f64 / s / 1e9;
                println!(
                    "dense {} {rows}x{cols} x{tokens} {:>10}: {:8.1} us  {:6.2} GB/s weights  {gflops:6.1} GFLOP/s",
                    dt.name(),
                    isa.name(),
                    s * 1e6,
                    bytes.len() as f64 / s / 1e9
                );
            }
        }
    }
}
