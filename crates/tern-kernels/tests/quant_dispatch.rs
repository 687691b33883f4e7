//! Dispatch: `quant::matmul` and `quant::matmul_with` follow `isa::set_override` (clamped to what
//! the CPU runs, see `quant::usable`) and give exactly what `quant::matmul_on` gives on that path;
//! a warm thread-local scratch is reused across shapes and types. (Its own test binary: the override
//! is process-global.)

use tern_kernels::buf::ByteBuf;
use tern_kernels::isa::{self, Isa};
use tern_kernels::quant::{self, QuantMatrix, QuantScratch};
use tern_kernels::ThreadPool;
use tern_quants::GgmlType;

fn matrix(ty: GgmlType, rows: usize, cols: usize) -> QuantMatrix {
    let vals: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 201) as f32 - 100.0) / 97.0).collect();
    let q = tern_quants::quantize(ty, &vals).unwrap();
    QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(q)).unwrap()
}

#[test]
fn set_override_selects_the_path() {
    let pool = ThreadPool::new(2);
    for (ty, rows, cols, tokens) in [
        (GgmlType::Q4_0, 19, 96, 1),
        (GgmlType::Q4_K, 13, 512, 5),
        (GgmlType::Q8_0, 7, 64, 3),
        (GgmlType::Q6_K, 5, 256, 1),
    ] {
        let w = matrix(ty, rows, cols);
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 13 % 41) as f32 - 20.0) / 7.0).collect();
        for want in [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni] {
            isa::set_override(Some(want));
            let expect = quant::usable(want);
            assert_eq!(quant::level(), expect, "override {}", want.name());
            if expect != want {
                eprintln!("skipped: this CPU lacks the {} path (runs {})", want.name(), expect.name());
            }
            let mut out = vec![f32::NAN; tokens * rows];
            quant::matmul(&pool, &w, &x, &mut out);
            let mut with = vec![f32::NAN; tokens * rows];
            quant::matmul_with(&pool, &w, &x, &mut with, &mut QuantScratch::new());
            let mut pinned = vec![f32::NAN; tokens * rows];
            quant::matmul_on(expect, &pool, &w, &x, &mut pinned, &mut QuantScratch::new());
            assert_eq!(out, pinned, "{ty} matmul on {}", expect.name());
            assert_eq!(with, pinned, "{ty} matmul_with on {}", expect.name());
        }
    }
    isa::set_override(None);
}

#[test]
fn float_types_use_the_f32_path() {
    let pool = ThreadPool::new(1);
    assert!(!quant::has_integer_path(GgmlType::F16) && quant::act_format(GgmlType::F16).is_none());
    let (rows, cols) = (3usize, 64usize);
    let vals: Vec<f32> = (0..rows * cols).map(|i| i as f32 / 64.0 - 1.0).collect();
    let w = QuantMatrix::new(
        rows,
        cols,
        GgmlType::F32,
        ByteBuf::from_vec(tern_quants::quantize(GgmlType::F32, &vals).unwrap()),
    )
    .unwrap();
    let x: Vec<f32> = (0..cols).map(|i| (i % 5) as f32 - 2.0).collect();
    let mut out = vec![0f32; rows];
    quant::matmul(&pool, &w, &x, &mut out);
    for (r, o) in out.iter().enumerate() {
        let want: f64 = (0..cols).map(|k| vals[r * cols + k] as f64 * x[k] as f64).sum();
        assert!((*o as f64 - want).abs() < 1e-4, "row {r}: {o} vs {want}");
    }
}
