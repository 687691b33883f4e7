//! Throughput of `quant::matmul` per path, single-threaded (ignored; run with
//! `cargo test --release -p tern-kernels --test quant_bench -- --ignored --nocapture`).
//!
//! GEMV (1 token, decode) on a 2048 × 8192 matrix reports GB/s of packed weights for the scalar,
//! AVX2 and AVX-512 VNNI paths, next to the f32 path this crate used before (widen 256-element
//! chunks with tern-quants' dequantizer, then an f32 dot product); a 64-token product (prefill)
//! reports GOP/s (2 · rows · cols · tokens / s). Times are the fastest call in about 0.5 s (robust on
//! a loaded machine). `QUANT_BENCH_TYPES=Q4_0,Q6_K` limits
//! the types.

use std::time::{Duration, Instant};

use tern_kernels::buf::ByteBuf;
use tern_kernels::isa::Isa;
use tern_kernels::quant::{self, QuantMatrix, QuantScratch};
use tern_kernels::ThreadPool;
use tern_quants::GgmlType;

const PATHS: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni];
const ALL_TYPES: [GgmlType; 8] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q5_0,
    GgmlType::TQ2_0,
];

/// Seconds per call of `f`: the fastest of the calls made in about 0.5 s (after warming up). The
/// minimum, not the median, so that time slices taken by other processes on a busy machine do not
/// count.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    let (start, mut n) = (Instant::now(), 0);
    while start.elapsed() < Duration::from_millis(500) || n < 5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    best
}

/// A `rows × cols` matrix of type `ty`: random bytes with sane f16 scales (the kernels' speed does
/// not depend on the values).
fn matrix(ty: GgmlType, rows: usize, cols: usize) -> QuantMatrix {
    let mut s = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u8
    };
    let bytes = tern_quants::storage_size(ty, rows * cols).unwrap();
    let mut data: Vec<u8> = (0..bytes).map(|_| next()).collect();
    let (block_bytes, fields): (usize, &[usize]) = match ty {
        GgmlType::Q4_0 => (18, &[0]),
        GgmlType::Q4_1 => (20, &[0, 2]),
        GgmlType::Q5_0 => (22, &[0]),
        GgmlType::Q8_0 => (34, &[0]),
        GgmlType::Q4_K => (144, &[0, 2]),
        GgmlType::Q5_K => (176, &[0, 2]),
        GgmlType::Q6_K => (210, &[208]),
        GgmlType::TQ2_0 => (66, &[64]),
        _ => unreachable!(),
    };
    for blk in data.chunks_exact_mut(block_bytes) {
        for &o in fields {
            blk[o..o + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(data)).unwrap()
}

/// The previous portable product: widen 256 elements at a time, f32 dot product.
fn widen_f32(w: &QuantMatrix, x: &[f32], out: &mut [f32]) {
    let mut buf = [0f32; 256];
    let cols = w.cols();
    let chunk_bytes = w.byte_len() / w.rows() / (cols / 256);
    for (r, o) in out.iter_mut().enumerate() {
        let row = w.row_bytes(r);
        let mut acc = 0.0;
        for (c, src) in row.chunks_exact(chunk_bytes).enumerate() {
            tern_quants::dequantize_into(w.ty(), src, &mut buf).unwrap();
            acc += tern_kernels::dense::dot_f32(&buf, &x[256 * c..256 * c + 256]);
        }
        *o = acc;
    }
}

#[test]
#[ignore]
fn throughput() {
    let pool = ThreadPool::new(1);
    let mut scratch = QuantScratch::new();
    println!("best quant path on this CPU: {}", quant::usable(Isa::Avx512Vnni).name());
    let (rows, cols) = (2048usize, 8192usize);
    let x: Vec<f32> = (0..cols * 64).map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0).collect();
    // QUANT_BENCH_TYPES=Q4_0,Q6_K limits the run to those types.
    let only = std::env::var("QUANT_BENCH_TYPES").ok();
    let types =
        ALL_TYPES.into_iter().filter(|t| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == t.to_string())));
    for ty in types {
        let w = matrix(ty, rows, cols);
        let gb = w.byte_len() as f64 / 1e9;
        let mut out = vec![0f32; rows * 64];
        let s = time(|| widen_f32(&w, &x[..cols], &mut out[..rows]));
        println!("{ty:>6} GEMV {rows}x{cols} {:>12}: {:9.1} us {:7.2} GB/s", "widen-f32", s * 1e6, gb / s);
        for isa in PATHS.into_iter().filter(|&i| quant::usable(i) == i) {
            let s = time(|| quant::matmul_on(isa, &pool, &w, &x[..cols], &mut out[..rows], &mut scratch));
            println!("{ty:>6} GEMV {rows}x{cols} {:>12}: {:9.1} us {:7.2} GB/s", isa.name(), s * 1e6, gb / s);
        }
        for isa in PATHS.into_iter().skip(1).filter(|&i| quant::usable(i) == i) {
            let s = time(|| quant::matmul_on(isa, &pool, &w, &x, &mut out, &mut scratch));
            let gops = 2.0 * (rows * cols * 64) as f64 / s / 1e9;
            println!("{ty:>6} 64 tokens        {:>12}: {:9.1} ms {gops:7.1} GOP/s", isa.name(), s * 1e3);
        }
    }
}
