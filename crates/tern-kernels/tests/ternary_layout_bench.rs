//! Throughput of the ternary layouts (ignored; run with
//! `cargo test --release -p tern-kernels --test ternary_layout_bench -- --ignored --nocapture`).
//!
//! GEMV (1 token) on the BitNet-2B4T FFN shapes for T2, ggml TQ2_0 in place and T1, on every path
//! this CPU runs, 1 and 2 threads: µs per call and GB/s of packed weights; and a 128-token product
//! in GOP/s.

use std::time::{Duration, Instant};
use tern_kernels::act::ActScale;
use tern_kernels::isa::Isa;
use tern_kernels::simd;
use tern_kernels::ternary::{QuantizedActs, TernaryLayout, TernaryMatrix};
use tern_kernels::ThreadPool;

/// Median seconds per call over about 0.5 s.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) || samples.len() < 5 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[test]
#[ignore]
fn layouts() {
    let mut s = 1u64;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        s >> 33
    };
    for (rows, cols) in [(6912usize, 2560usize), (2560, 6912)] {
        let vals: Vec<i8> = (0..rows * cols).map(|_| (next() % 3) as i8 - 1).collect();
        let only = std::env::var("LAYOUT").ok();
        for lay in [TernaryLayout::T2, TernaryLayout::Tq2, TernaryLayout::T1] {
            if only.as_deref().is_some_and(|o| o != lay.name()) {
                continue;
            }
            let w = TernaryMatrix::from_values_as(lay, rows, cols, &vals).unwrap();
            let k = w.padded_cols();
            for tokens in [1usize, 128] {
                if tokens > 1 && std::env::var("GEMV_ONLY").is_ok() {
                    continue;
                }
                let codes: Vec<i8> =
                    (0..tokens * k).map(|i| if i % k < cols { next() as u8 as i8 } else { 0 }).collect();
                let scales: Vec<ActScale> = (0..tokens).map(|_| ActScale { scale: 1.0, sum: 0 }).collect();
                let factor = vec![1.0f32; tokens];
                let mut out = vec![0f32; tokens * rows];
                for isa in [Isa::Avx2, Isa::Avx512Vnni].into_iter().filter(|&i| simd::best() >= i) {
                    for threads in [1usize, 2] {
                        let pool = ThreadPool::new(threads);
                        let acts = QuantizedActs { codes: &codes, scales: &scales };
                        let t = time(|| simd::ternary_matmul(isa, &pool, &w, &acts, &factor, &mut out));
                        if tokens == 1 {
                            println!(
                                "{rows}x{cols} {:>6} {:>10} t{threads} gemv: {:8.1} us {:6.1} GB/s packed ({:.1} Gw/s)",
                                lay.name(),
                                isa.name(),
                                t * 1e6,
                                w.data().len() as f64 / t / 1e9,
                                (rows * cols) as f64 / t / 1e9
                            );
                        } else {
                            println!(
                                "{rows}x{cols} {:>6} {:>10} t{threads} {tokens} tokens: {:8.1} us {:6.1} GOP/s",
                                lay.name(),
                                isa.name(),
                                t * 1e6,
                                2.0 * (rows * cols * tokens) as f64 / t / 1e9
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Decode from DRAM: the 210 ternary matrices of the BitNet-2B4T shape (30 layers × q, k, v, o,
/// gate, up, down; 521 MB in T2) multiplied with one token in sequence, like a decode step, on 1 and
/// 2 threads; GB/s of packed weights, next to the pool's plain read ceiling of the same bytes.
#[test]
#[ignore]
fn decode_stream() {
    let shapes =
        [(2560usize, 2560usize), (640, 2560), (640, 2560), (2560, 2560), (6912, 2560), (6912, 2560), (2560, 6912)];
    let layers: usize = std::env::var("LAYERS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let only = std::env::var("LAYOUT").ok();
    for lay in [TernaryLayout::T2, TernaryLayout::Tq2, TernaryLayout::T1] {
        if only.as_deref().is_some_and(|o| o != lay.name()) {
            continue;
        }
        let mut ms = Vec::new();
        for l in 0..layers {
            for (i, &(rows, cols)) in shapes.iter().enumerate() {
                let seed = (l * 7 + i) as u64;
                ms.push(TernaryMatrix::from_code_rows(
                    lay,
                    rows,
                    cols,
                    &|r, out| {
                        for (c, o) in out[..cols].iter_mut().enumerate() {
                            *o = ((r as u64 * 31 + c as u64 * 7 + seed) % 3) as u8;
                        }
                    },
                    2,
                ));
            }
        }
        let bytes: usize = ms.iter().map(|m| m.data().len()).sum();
        let kmax = ms.iter().map(|m| m.padded_cols()).max().unwrap();
        let codes: Vec<i8> = (0..kmax).map(|i| (i * 13 % 255) as i8).collect();
        let scales = [ActScale { scale: 1.0, sum: 0 }];
        let mut out = vec![0f32; 6912];
        for threads in [1usize, 2] {
            let pool = ThreadPool::new(threads);
            let t = time(|| {
                for m in &ms {
                    let acts = QuantizedActs { codes: &codes[..m.padded_cols()], scales: &scales };
                    simd::ternary_matmul(simd::best(), &pool, m, &acts, &[1.0], &mut out[..m.rows()]);
                }
            });
            let all: Vec<u8> = ms.iter().take(40).flat_map(|m| m.data().to_vec()).collect();
            let tr = time(|| {
                std::hint::black_box(tern_kernels::membw::read_all(&pool, &all));
            });
            println!(
                "{:>6} t{threads}: {} MB in {:7.2} ms = {:5.1} GB/s (plain read of the first 40 matrices: {:5.1} GB/s)",
                lay.name(),
                bytes / 1_000_000,
                t * 1e3,
                bytes as f64 / t / 1e9,
                all.len() as f64 / tr / 1e9
            );
        }
    }
}

/// The tied LM head of the 2B4T shape (128256 × 2560) as ggml blocks, one token, from DRAM: GB/s of
/// each type's bytes on 1 and 2 threads (the head is a quarter of the bytes a decode step reads).
#[test]
#[ignore]
fn head_stream() {
    use tern_kernels::buf::ByteBuf;
    use tern_kernels::quant::{self, QuantMatrix};
    use tern_quants::GgmlType;
    let (rows, cols) = (128256usize, 2560usize);
    let x: Vec<f32> = (0..cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q4_0] {
        let rb = tern_quants::storage_size(ty, cols).unwrap();
        // Valid blocks of one row, repeated (the kernels' speed does not depend on the values).
        let row = tern_quants::quantize(ty, &x).unwrap();
        let mut data = Vec::with_capacity(rows * rb);
        for _ in 0..rows {
            data.extend_from_slice(&row);
        }
        let m = QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(data)).unwrap();
        let mut out = vec![0f32; rows];
        for threads in [1usize, 2] {
            let pool = ThreadPool::new(threads);
            let t = time(|| quant::matmul(&pool, &m, &x, &mut out));
            println!("{ty:>5} head t{threads}: {:7.2} ms = {:5.1} GB/s", t * 1e3, m.byte_len() as f64 / t / 1e9);
        }
    }
    let m = tern_kernels::int8::Int8Matrix::quantize_rows(rows, cols, 2, &|_, out| out.copy_from_slice(&x));
    let mut out = vec![0f32; rows];
    for threads in [1usize, 2] {
        let pool = ThreadPool::new(threads);
        let t = time(|| tern_kernels::int8::matmul(&pool, &m, &x, &mut out));
        println!("  I8B head t{threads}: {:7.2} ms = {:5.1} GB/s", t * 1e3, m.byte_len() as f64 / t / 1e9);
    }
}
