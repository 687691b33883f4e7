//! Dispatch: `ternary::matmul`, `dense::matmul` and `dense::dot_f32` follow `isa::set_override` and
//! `TERN_ISA`, clamped to what the CPU runs. (Its own test binary: the override is process-global.)

use tern_kernels::act::quantize_i8;
use tern_kernels::dense::{self, DenseMatrix};
use tern_kernels::isa::{self, Isa};
use tern_kernels::simd;
use tern_kernels::ternary::{self, QuantizedActs, TernaryMatrix};
use tern_kernels::ThreadPool;

#[test]
fn set_override_selects_the_path() {
    let pool = ThreadPool::new(2);
    let (rows, cols) = (19usize, 333usize);
    let vals: Vec<i8> = (0..rows * cols).map(|i| (i * 7 % 3) as i8 - 1).collect();
    let w = TernaryMatrix::from_values(rows, cols, &vals).unwrap();
    let xf: Vec<f32> = (0..2 * cols).map(|i| ((i * 13 % 41) as f32 - 20.0) / 7.0).collect();
    let k = w.padded_cols();
    let mut codes = vec![0i8; 2 * k];
    let scales = vec![quantize_i8(&xf[..cols], &mut codes[..k]), quantize_i8(&xf[cols..], &mut codes[k..])];
    let dw: Vec<f32> = (0..rows * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 9.0).collect();
    let dm = DenseMatrix::from_f32(rows, cols, &dw).unwrap();

    let mut tern_ref = None;
    for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni] {
        isa::set_override(Some(isa));
        let expect = isa.min(simd::best());
        assert_eq!(simd::level(), expect, "override {}", isa.name());
        if simd::best() < isa {
            eprintln!("skipped: this CPU lacks the {} path (runs {})", isa.name(), expect.name());
        }
        let mut out = vec![0f32; 2 * rows];
        ternary::matmul(&pool, &w, &QuantizedActs { codes: &codes, scales: &scales }, &[0.5, 2.0], &mut out);
        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(tern_ref.get_or_insert_with(|| bits.clone()), &bits, "{}", isa.name());

        let mut dout = vec![0f32; 2 * rows];
        dense::matmul(&pool, &dm, &xf, &mut dout);
        let mut expect_out = vec![0f32; 2 * rows];
        simd::dense_matmul(
            expect,
            &pool,
            simd::DenseView { rows, cols, dtype: dm.dtype(), bytes: &dw_bytes(&dw) },
            &xf,
            &mut expect_out,
        );
        assert_eq!(dout, expect_out, "dense::matmul on {}", isa.name());
        assert_eq!(dense::dot_f32(&dw, &xf), simd::dot_f32(expect, &dw, &xf));
    }
    isa::set_override(None);
    assert_eq!(simd::level(), isa::active().min(simd::best()));
}

/// Marks the child process of `tern_isa_env_is_honoured`.
const CHILD: &str = "TERN_SIMD_DISPATCH_CHILD";

fn dw_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Child half of `tern_isa_env_is_honoured` (a no-op unless started by it): the level follows `TERN_ISA`.
#[test]
fn env_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let v = std::env::var("TERN_ISA").expect("child started with TERN_ISA");
    let want = Isa::parse(&v).expect("child started with a valid TERN_ISA");
    assert_eq!(simd::level(), want.min(simd::best()));
    println!("TERN_ISA={v} -> {}", simd::level().name());
}

#[test]
fn tern_isa_env_is_honoured() {
    let exe = std::env::current_exe().unwrap();
    for v in ["scalar", "avx2", "avx512"] {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "env_child", "--nocapture", "--test-threads=1"])
            .env("TERN_ISA", v)
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "TERN_ISA={v}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(&format!("TERN_ISA={v} -> ")), "child did not run: {text}");
    }
}
