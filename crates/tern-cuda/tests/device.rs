//! Device tests: every kernel against tern's CPU kernels (tern-kernels, tern-quants) on random
//! shapes, including sizes that are not multiples of the kernels' tiles.
//!
//! Without a GPU (CI) each test prints a NOTICE and passes; `no_gpu_is_an_error_not_a_panic`
//! checks the missing-driver path itself. On the device machine `tools/cuda/device_test.sh` runs
//! this binary (also under compute-sanitizer). Outputs are poisoned with NaN before each kernel
//! so that an unwritten element fails the comparison.
//!
//! Exactness: quantization without a norm, the ternary GEMV (all modes, bias, accumulate), RoPE,
//! embedding gathers, argmax, add and scale are compared bit for bit. The others use the
//! tolerances stated at each test (f32 summation order differs from the CPU's).

use std::sync::OnceLock;

use tern_cuda::{
    AttnDims, AttnScratch, CudaDense, CudaDevice, CudaLinear, CudaQuant, CudaTernary, CudaWeight, DenseScratch,
    Epilogue, I8Acts, LinearScratch, Norm, Q8Acts, Rope, ScaleMode, TernaryPart,
};
use tern_kernels::act::quantize_i8;
use tern_kernels::buf::ByteBuf;
use tern_kernels::dense::{DenseDType, DenseMatrix};
use tern_kernels::isa::Isa;
use tern_kernels::ops::{self, Activation, AttnShape};
use tern_kernels::quant::{self as qk, QuantMatrix, QuantScratch};
use tern_kernels::ternary::{self, QuantizedActs, TernaryLayout, TernaryMatrix};
use tern_kernels::ThreadPool;
use tern_quants::GgmlType;

fn device() -> Option<&'static CudaDevice> {
    static DEV: OnceLock<Option<CudaDevice>> = OnceLock::new();
    DEV.get_or_init(|| match CudaDevice::new(0) {
        Ok(d) => {
            eprintln!("device: {}", d.info());
            Some(d)
        }
        Err(e) => {
            eprintln!("NOTICE: no usable CUDA device ({e}); GPU tests skipped");
            None
        }
    })
    .as_ref()
}

macro_rules! dev_or_skip {
    () => {
        match device() {
            Some(d) => d,
            None => {
                eprintln!("NOTICE: skipping {} (no GPU)", module_path!());
                return;
            }
        }
    };
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
}

/// `TERN_CUDA_QUICK`: skip the largest shapes (used under compute-sanitizer, which slows kernels).
fn quick() -> bool {
    std::env::var_os("TERN_CUDA_QUICK").is_some()
}

fn pool() -> &'static ThreadPool {
    static P: OnceLock<ThreadPool> = OnceLock::new();
    P.get_or_init(|| ThreadPool::new(4))
}

fn nan_buf(dev: &CudaDevice, n: usize) -> tern_cuda::DeviceBuf<f32> {
    dev.upload(&vec![f32::NAN; n]).unwrap()
}

fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: element {i}: gpu {g} ({:#x}) vs cpu {w} ({:#x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// |g − w| ≤ rel·scale_i + abs for every element.
fn assert_close(what: &str, got: &[f32], want: &[f32], scale: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (*g as f64 - *w as f64).abs();
        let lim = rel * scale[i] + abs;
        assert!(d <= lim && g.is_finite(), "{what}: element {i}: gpu {g} vs cpu {w} (|Δ| {d:e} > {lim:e})");
        worst = worst.max(d / (scale[i] + 1e-30));
    }
    eprintln!("{what}: worst |Δ|/scale {worst:.2e}");
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(g, w)| (*g as f64 - *w as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|w| (*w as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

#[test]
fn no_gpu_is_an_error_not_a_panic() {
    match CudaDevice::new(0) {
        Ok(d) => eprintln!("GPU present: {}", d.info()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            eprintln!("NOTICE: CudaDevice::new(0) -> {msg}");
        }
    }
    // An absurd ordinal is always an error.
    assert!(CudaDevice::new(usize::MAX / 2).is_err());
}

#[test]
fn quantize_i8_is_bit_exact() {
    let dev = dev_or_skip!();
    let mut rng = Rng(11);
    for &d in &[1usize, 31, 127, 128, 300, 2560, 2561, 6912] {
        let tokens = 1 + rng.below(5) as usize;
        let kp = ternary::padded_k(d);
        let mut x = rng.vec(tokens * d, 3.0);
        if tokens > 1 {
            x[d..2 * d].fill(0.0); // an all-zero token uses the 1e-5 floor
        }
        if d > 4 {
            x[2] = f32::NAN; // NaN is skipped by the max and becomes code 0
        }
        let xb = dev.upload(&x).unwrap();
        let mut acts = I8Acts::new(dev, tokens, kp).unwrap();
        dev.quantize_i8(&xb, tokens, d, None, None, &mut acts).unwrap();
        let codes = dev.download(acts.codes()).unwrap();
        let scales = dev.download(acts.scales()).unwrap();
        let sums = dev.download(acts.sums()).unwrap();
        for t in 0..tokens {
            let mut want = vec![0i8; kp];
            let s = quantize_i8(&x[t * d..(t + 1) * d], &mut want);
            assert_eq!(&codes[t * kp..(t + 1) * kp], &want[..], "d {d} token {t}: codes");
            assert_eq!(scales[t].to_bits(), s.scale.to_bits(), "d {d} token {t}: scale");
            assert_eq!(sums[t], s.sum, "d {d} token {t}: sum");
        }
    }
}

#[test]
fn rms_norm_and_fused_quantization_match_cpu() {
    let dev = dev_or_skip!();
    let mut rng = Rng(12);
    for &(d, offset) in &[(64usize, 0.0f32), (300, 1.0), (2560, 0.0), (5000, 0.0)] {
        let tokens = 3;
        let x = rng.vec(tokens * d, 2.0);
        let w = rng.vec(d, 1.0);
        let eps = 1e-6;
        let mut want = vec![0f32; tokens * d];
        ops::rms_norm(&x, &w, eps, offset, &mut want);
        let xb = dev.upload(&x).unwrap();
        let wb = dev.upload(&w).unwrap();
        let norm = Norm { weight: Some(&wb), eps, offset };
        let mut out = nan_buf(dev, tokens * d);
        dev.rms_norm(&xb, norm, d, tokens, &mut out).unwrap();
        let got = dev.download(&out).unwrap();
        let mag: Vec<f64> = want.iter().map(|v| v.abs() as f64).collect();
        // Only the order of the sum of squares differs: a few ulps of the inverse RMS.
        assert_close(&format!("rms_norm d {d}"), &got, &want, &mag, 2e-6, 1e-7);
        let mut inplace = dev.upload(&x).unwrap();
        dev.rms_norm_inplace(&mut inplace, norm, d, tokens).unwrap();
        assert_bits_eq("rms_norm in place == out of place", &dev.download(&inplace).unwrap(), &got);

        // Fused norm + quantization: codes may differ by one where the normalised value sits on a
        // rounding boundary (the norm itself differs by ulps).
        let kp = ternary::padded_k(d);
        let mut acts = I8Acts::new(dev, tokens, kp).unwrap();
        let mut normed = nan_buf(dev, tokens * d);
        dev.quantize_i8(&xb, tokens, d, Some(norm), Some(&mut normed), &mut acts).unwrap();
        assert_bits_eq("fused norm output == rms_norm", &dev.download(&normed).unwrap(), &got);
        let codes = dev.download(acts.codes()).unwrap();
        let scales = dev.download(acts.scales()).unwrap();
        let mut off = 0;
        for t in 0..tokens {
            let mut c = vec![0i8; kp];
            let s = quantize_i8(&want[t * d..(t + 1) * d], &mut c);
            assert!(((scales[t] - s.scale) / s.scale).abs() < 1e-5, "scale {} vs {}", scales[t], s.scale);
            for k in 0..kp {
                let diff = (codes[t * kp + k] as i32 - c[k] as i32).abs();
                assert!(diff <= 1, "d {d} t {t} k {k}: code {} vs {}", codes[t * kp + k], c[k]);
                off += diff as usize;
            }
        }
        assert!(off * 100 <= tokens * d, "d {d}: {off} codes off by one");
    }
}

fn random_ternary(rng: &mut Rng, rows: usize, cols: usize) -> (TernaryMatrix, Vec<i8>) {
    let vals: Vec<i8> = (0..rows * cols).map(|_| rng.below(3) as i8 - 1).collect();
    (TernaryMatrix::from_values(rows, cols, &vals).unwrap(), vals)
}

fn cpu_acts(
    rng: &mut Rng,
    tokens: usize,
    cols: usize,
    kp: usize,
) -> (Vec<f32>, Vec<i8>, Vec<tern_kernels::act::ActScale>) {
    let x = rng.vec(tokens * cols, 4.0);
    let mut codes = vec![0i8; tokens * kp];
    let scales =
        (0..tokens).map(|t| quantize_i8(&x[t * cols..(t + 1) * cols], &mut codes[t * kp..(t + 1) * kp])).collect();
    (x, codes, scales)
}

#[test]
fn ternary_gemv_is_bit_exact() {
    let dev = dev_or_skip!();
    let mut rng = Rng(13);
    let shapes = [(1usize, 1usize), (3, 127), (33, 129), (100, 300), (257, 2597), (2560, 6912), (4099, 2560)];
    for &(rows, cols) in &shapes {
        let (w, _) = random_ternary(&mut rng, rows, cols);
        let kp = w.padded_cols();
        let gw = CudaTernary::upload(dev, &w, ScaleMode::Factor).unwrap();
        for &tokens in &[1usize, 2, 3, 5, 8, 11, 17, 64, 130] {
            if rows * cols > 1 << 22 && (quick() || !(tokens <= 3 || tokens == 130)) {
                continue;
            }
            let (_, codes, scales) = cpu_acts(&mut rng, tokens, cols, kp);
            let factor: Vec<f32> = (0..tokens).map(|_| rng.f() * 0.01 + 0.02).collect();
            let mut want = vec![0f32; tokens * rows];
            ternary::matmul(pool(), &w, &QuantizedActs { codes: &codes, scales: &scales }, &factor, &mut want);
            let sums: Vec<i32> = scales.iter().map(|s| s.sum).collect();
            let acts = I8Acts::from_host(dev, kp, &codes, &factor, &sums).unwrap();
            for r in [1usize, 2, 4] {
                let mut out = nan_buf(dev, tokens * rows);
                dev.ternary_gemv_variant(&gw, &acts, &mut out, Epilogue::default(), r).unwrap();
                assert_bits_eq(&format!("ternary {rows}x{cols} T{tokens} R{r}"), &dev.download(&out).unwrap(), &want);
            }
            // The int8 tensor-core GEMM (prefill path) gives the same bits.
            let mut out = nan_buf(dev, tokens * rows);
            dev.ternary_gemm(&gw, &acts, &mut out, Epilogue::default()).unwrap();
            assert_bits_eq(&format!("ternary IMMA {rows}x{cols} T{tokens}"), &dev.download(&out).unwrap(), &want);
            // Bias, then accumulate into an existing output (the residual add), as the CPU does it.
            let bias = rng.vec(rows, 1.0);
            let base = rng.vec(tokens * rows, 1.0);
            let want2: Vec<f32> = want.iter().enumerate().map(|(i, &y)| base[i] + (y + bias[i % rows])).collect();
            let bb = dev.upload(&bias).unwrap();
            let mut out = dev.upload(&base).unwrap();
            dev.ternary_gemv(&gw, &acts, &mut out, Epilogue { bias: Some(&bb), accumulate: true }).unwrap();
            assert_bits_eq(&format!("ternary {rows}x{cols} T{tokens} bias+acc"), &dev.download(&out).unwrap(), &want2);
        }
    }
}

#[test]
fn ternary_gemv_many_equals_separate_products() {
    let dev = dev_or_skip!();
    let mut rng = Rng(23);
    let cols = 300;
    let shapes = [100usize, 33, 257, 5, 70];
    let mats: Vec<TernaryMatrix> = shapes.iter().map(|&r| random_ternary(&mut rng, r, cols).0).collect();
    let scales = [
        ScaleMode::Multiply(0.3),
        ScaleMode::Divide(1.7),
        ScaleMode::Multiply(2.0),
        ScaleMode::Divide(0.4),
        ScaleMode::Multiply(1.0),
    ];
    let gws: Vec<CudaTernary> = mats.iter().zip(scales).map(|(m, s)| CudaTernary::upload(dev, m, s).unwrap()).collect();
    let kp = mats[0].padded_cols();
    for &tokens in &[1usize, 3, 8, 11] {
        let x = rng.vec(tokens * cols, 2.0);
        let xb = dev.upload(&x).unwrap();
        let mut acts = I8Acts::new(dev, tokens, kp).unwrap();
        dev.quantize_i8(&xb, tokens, cols, None, None, &mut acts).unwrap();
        let biases: Vec<_> = shapes.iter().map(|&r| dev.upload(&rng.vec(r, 1.0)).unwrap()).collect();
        let mut want = Vec::new();
        for (i, g) in gws.iter().enumerate() {
            let mut o = nan_buf(dev, tokens * shapes[i]);
            dev.ternary_gemv(g, &acts, &mut o, Epilogue { bias: Some(&biases[i]), accumulate: false }).unwrap();
            want.push(dev.download(&o).unwrap());
        }
        let mut outs: Vec<_> = shapes.iter().map(|&r| nan_buf(dev, tokens * r)).collect();
        let mut parts: Vec<TernaryPart<'_>> = gws
            .iter()
            .zip(outs.iter_mut())
            .zip(&biases)
            .map(|((w, out), b)| TernaryPart { w, out, bias: Some(b) })
            .collect();
        dev.ternary_gemv_many(&mut parts, &acts, false).unwrap();
        for (i, o) in outs.iter().enumerate() {
            assert_bits_eq(&format!("ternary_gemv_many part {i} T{tokens}"), &dev.download(o).unwrap(), &want[i]);
        }
    }
}

#[test]
fn ternary_linear_end_to_end_is_bit_exact() {
    let dev = dev_or_skip!();
    let mut rng = Rng(14);
    for &(rows, cols, mode) in &[(300usize, 2560usize, 0), (77, 700, 1)] {
        let (w, _) = random_ternary(&mut rng, rows, cols);
        let kp = w.padded_cols();
        let ws = 0.37f32;
        let scale = if mode == 0 { ScaleMode::Multiply(ws) } else { ScaleMode::Divide(ws) };
        let gw = CudaTernary::upload(dev, &w, scale).unwrap();
        let tokens = 4;
        let (x, codes, scales) = cpu_acts(&mut rng, tokens, cols, kp);
        // tern-model's factors.
        let factor: Vec<f32> =
            scales.iter().map(|s| if mode == 0 { ws / s.scale } else { 1.0 / (s.scale * ws) }).collect();
        let mut want = vec![0f32; tokens * rows];
        ternary::matmul(pool(), &w, &QuantizedActs { codes: &codes, scales: &scales }, &factor, &mut want);
        let lin = CudaLinear { weight: CudaWeight::Ternary(gw), bias: None, input_norm: None };
        let xb = dev.upload(&x).unwrap();
        let mut out = nan_buf(dev, tokens * rows);
        let mut scratch = LinearScratch::default();
        dev.linear(&lin, &xb, tokens, &mut out, &mut scratch, false).unwrap();
        assert_bits_eq(&format!("ternary linear mode {mode}"), &dev.download(&out).unwrap(), &want);
        // tern's other packings are repacked to T2 at upload: same bits.
        for layout in [TernaryLayout::T1, TernaryLayout::Tq2] {
            let Ok(other) = w.to_layout(layout, 2) else { continue };
            let gw = CudaTernary::upload(dev, &other, scale).unwrap();
            let lin = CudaLinear { weight: CudaWeight::Ternary(gw), bias: None, input_norm: None };
            let mut out = nan_buf(dev, tokens * rows);
            dev.linear(&lin, &xb, tokens, &mut out, &mut scratch, false).unwrap();
            assert_bits_eq(&format!("ternary linear from {}", layout.name()), &dev.download(&out).unwrap(), &want);
        }
    }
}

/// Random ggml blocks of `ty`: quantized from random values where tern-quants has a quantizer,
/// else random codes with finite scales.
fn random_blocks(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    if ty == GgmlType::Q4_1 {
        let mut b = Vec::with_capacity(rows * cols / 32 * 20);
        for _ in 0..rows * cols / 32 {
            b.extend_from_slice(&half::f16::from_f32(rng.f() * 0.05).to_le_bytes());
            b.extend_from_slice(&half::f16::from_f32(rng.f() * 0.3).to_le_bytes());
            b.extend((0..16).map(|_| rng.next() as u8));
        }
        return b;
    }
    tern_quants::quantize(ty, &rng.vec(rows * cols, 1.0)).unwrap()
}

#[test]
fn quant_gemv_matches_cpu_integer_kernels() {
    let dev = dev_or_skip!();
    let mut rng = Rng(15);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K] {
        let bs = if matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K) { 256 } else { 32 };
        for &(rows, nblk) in &[(1usize, 1usize), (7, 3), (130, 10), (2049, 11)] {
            let cols = nblk * bs;
            let bytes = random_blocks(&mut rng, ty, rows, cols);
            let deq = tern_quants::dequantize(ty, &bytes, rows * cols).unwrap();
            let m = QuantMatrix::new(rows, cols, ty, ByteBuf::from_vec(bytes.clone())).unwrap();
            let gw = CudaQuant::upload(dev, &m).unwrap();
            for &tokens in &[1usize, 3, 8, 13] {
                let x = rng.vec(tokens * cols, 2.0);
                let mut want = vec![0f32; tokens * rows];
                let mut cs = QuantScratch::new();
                qk::matmul_on(Isa::Scalar, pool(), &m, &x, &mut want, &mut cs);
                let xb = dev.upload(&x).unwrap();
                let mut out = nan_buf(dev, tokens * rows);
                let mut q8 = Q8Acts::default();
                dev.quant_matmul(&gw, &xb, tokens, &mut out, &mut q8, Epilogue::default()).unwrap();
                let got = dev.download(&out).unwrap();
                // The activation codes are bit-identical to the CPU's: code · d per element.
                let (gc, gd) =
                    (dev.download(q8.codes().unwrap()).unwrap(), dev.download(q8.scales().unwrap()).unwrap());
                let mut xq = vec![0f32; cols];
                let mut mag = vec![0f64; tokens * rows];
                for t in 0..tokens {
                    cs.dequantize_token(t, &mut xq);
                    for k in 0..cols {
                        let g = gc[t * cols + k] as f32 * gd[(t * cols + k) / bs];
                        assert_eq!(g.to_bits(), xq[k].to_bits(), "{ty} activation t{t} k{k}");
                    }
                    for r in 0..rows {
                        mag[t * rows + r] = (0..cols).map(|k| (deq[r * cols + k] as f64 * xq[k] as f64).abs()).sum();
                    }
                }
                // Same integer block sums and per-block f32 terms; only the order of adding block
                // terms differs: bound 1e-6 · Σ|w·x| (≈ 8 ulps of the magnitude sum).
                assert_close(&format!("{ty} {rows}x{cols} T{tokens}"), &got, &want, &mag, 1e-6, 1e-30);
            }
        }
    }
}

#[test]
fn dense_gemv_and_gemm_match_cpu() {
    let dev = dev_or_skip!();
    let mut rng = Rng(16);
    for dt in [DenseDType::F32, DenseDType::F16, DenseDType::BF16] {
        for &(rows, cols) in &[(1usize, 1usize), (5, 100), (67, 2560), (300, 2563), (1030, 64)] {
            let vals = rng.vec(rows * cols, 1.0);
            let gw = CudaDense::from_f32(dev, rows, cols, dt, &vals).unwrap();
            let bytes: Vec<u8> = match dt {
                DenseDType::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
                DenseDType::F16 => vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
                DenseDType::BF16 => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            };
            let m = DenseMatrix::new(rows, cols, dt, ByteBuf::from_vec(bytes)).unwrap();
            let wf = m.to_f32_vec();
            // Upload through the DenseMatrix path too: must hold the same bytes.
            let gw2 = CudaDense::upload(dev, &m).unwrap();
            for &tokens in &[1usize, 2, 8, 9, 40] {
                let x = rng.vec(tokens * cols, 1.0);
                let mut want = vec![0f32; tokens * rows];
                tern_kernels::dense::matmul(pool(), &m, &x, &mut want);
                let xb = dev.upload(&x).unwrap();
                let mut sc = DenseScratch::default();
                for (which, g) in [("from_f32", &gw), ("upload", &gw2)] {
                    let mut out = nan_buf(dev, tokens * rows);
                    dev.dense_matmul(g, &xb, tokens, &mut out, &mut sc, Epilogue::default()).unwrap();
                    let got = dev.download(&out).unwrap();
                    let what = format!("dense {} {rows}x{cols} T{tokens} {which}", dt.name());
                    if tokens <= 8 {
                        let mag: Vec<f64> = (0..tokens * rows)
                            .map(|i| {
                                (0..cols)
                                    .map(|k| (wf[(i % rows) * cols + k] as f64 * x[(i / rows) * cols + k] as f64).abs())
                                    .sum()
                            })
                            .collect();
                        assert_close(&what, &got, &want, &mag, 1e-6, 1e-30);
                    } else {
                        // cuBLAS: f32 exact products; f16 / bf16 round the activations to the weight type.
                        let e = rel_l2(&got, &want);
                        let lim = match dt {
                            DenseDType::F32 => 1e-5,
                            DenseDType::F16 => 2e-3,
                            DenseDType::BF16 => 1e-2,
                        };
                        eprintln!("{what}: rel L2 {e:.2e}");
                        assert!(e <= lim, "{what}: rel L2 {e:e} > {lim:e}");
                    }
                }
            }
        }
    }
}

#[test]
fn rope_kv_is_bit_exact() {
    let dev = dev_or_skip!();
    let mut rng = Rng(17);
    for &(nh, nkv, hd, half) in &[(4usize, 2usize, 64usize, 32usize), (3, 1, 80, 16), (2, 2, 256, 128)] {
        let (tokens, cap, pos0) = (5usize, 40usize, 7usize);
        let q = rng.vec(tokens * nh * hd, 2.0);
        let k = rng.vec(tokens * nkv * hd, 2.0);
        let v = rng.vec(tokens * nkv * hd, 2.0);
        let cos = rng.vec(cap * half, 1.0);
        let sin = rng.vec(cap * half, 1.0);
        let (mut wq, mut wk) = (q.clone(), k.clone());
        for t in 0..tokens {
            let p = pos0 + t;
            let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
            ops::rope_rotate_half(&mut wq[t * nh * hd..(t + 1) * nh * hd], hd, c, s);
            ops::rope_rotate_half(&mut wk[t * nkv * hd..(t + 1) * nkv * hd], hd, c, s);
        }
        let mut qb = dev.upload(&q).unwrap();
        let (kb, vb) = (dev.upload(&k).unwrap(), dev.upload(&v).unwrap());
        let (cb, sb) = (dev.upload(&cos).unwrap(), dev.upload(&sin).unwrap());
        let mut pos = dev.alloc::<i32>(1).unwrap();
        dev.set_pos(&mut pos, pos0).unwrap();
        let mut kc = nan_buf(dev, nkv * cap * hd);
        let mut vc = nan_buf(dev, nkv * cap * hd);
        let dims = AttnDims {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            capacity: cap,
            scale: 0.1,
            window: None,
            softcap: None,
        };
        let rope = Rope { cos: &cb, sin: &sb, half };
        dev.rope_kv(&mut qb, &kb, &vb, tokens, rope, &pos, pos0 + tokens, &mut kc, &mut vc, dims).unwrap();
        assert_bits_eq("rope q", &dev.download(&qb).unwrap(), &wq);
        let (gk, gv) = (dev.download(&kc).unwrap(), dev.download(&vc).unwrap());
        for t in 0..tokens {
            for g in 0..nkv {
                let dst = (g * cap + pos0 + t) * hd;
                let src = (t * nkv + g) * hd;
                assert_bits_eq("k cache", &gk[dst..dst + hd], &wk[src..src + hd]);
                assert_bits_eq("v cache", &gv[dst..dst + hd], &v[src..src + hd]);
            }
        }
        // Untouched cache rows stay as they were.
        assert!(gk[0].is_nan() && gv[(pos0 + tokens) * hd].is_nan());
    }
}

/// Naive attention in f64 with window and soft-cap.
#[allow(clippy::too_many_arguments)]
fn naive_attention(q: &[f32], k: &[f32], v: &[f32], tokens: usize, pos0: usize, d: AttnDims) -> Vec<f32> {
    let (nh, hd, cap) = (d.n_heads, d.head_dim, d.capacity);
    let group = nh / d.n_kv_heads;
    let mut out = vec![0f32; tokens * nh * hd];
    for t in 0..tokens {
        for h in 0..nh {
            let kvh = h / group;
            let n = pos0 + t + 1;
            let first = d.window.map_or(0, |w| n.saturating_sub(w));
            let qv = &q[(t * nh + h) * hd..][..hd];
            let sc: Vec<f64> = (first..n)
                .map(|j| {
                    let mut s = (0..hd).map(|e| qv[e] as f64 * k[(kvh * cap + j) * hd + e] as f64).sum::<f64>()
                        * d.scale as f64;
                    if let Some(c) = d.softcap {
                        s = c as f64 * (s / c as f64).tanh();
                    }
                    s
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let l: f64 = sc.iter().map(|s| (s - m).exp()).sum();
            for e in 0..hd {
                let a: f64 = sc
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s - m).exp() * v[(kvh * cap + first + i) * hd + e] as f64)
                    .sum();
                out[(t * nh + h) * hd + e] = (a / l) as f32;
            }
        }
    }
    out
}

#[test]
fn attention_matches_cpu() {
    let dev = dev_or_skip!();
    let mut rng = Rng(18);
    let cases = [
        // (nh, nkv, hd, cap, pos0, tokens, window, softcap)
        (8usize, 2usize, 64usize, 300usize, 0usize, 1usize, None, None),
        (8, 2, 128, 300, 17, 1, None, None),
        (8, 8, 80, 300, 250, 1, None, None),
        (4, 1, 256, 1100, 1000, 3, None, None),
        (6, 2, 64, 300, 30, 37, None, None),
        (8, 2, 128, 600, 500, 5, Some(64usize), None),
        (4, 2, 64, 100, 0, 40, Some(16), None),
        (4, 2, 128, 200, 50, 4, None, Some(50.0f32)),
        (2, 1, 32, 5000, 4000, 1, None, None),
        (16, 2, 128, 300, 100, 2, None, None),
        (8, 1, 256, 300, 200, 1, Some(50), None),
        (12, 2, 64, 300, 7, 3, None, None),
    ];
    for &(nh, nkv, hd, cap, pos0, tokens, window, softcap) in &cases {
        if quick() && cap > 2000 {
            continue;
        }
        let q = rng.vec(tokens * nh * hd, 1.5);
        let k = rng.vec(nkv * cap * hd, 1.5);
        let v = rng.vec(nkv * cap * hd, 1.0);
        let scale = 1.0 / (hd as f32).sqrt();
        let dims = AttnDims { n_heads: nh, n_kv_heads: nkv, head_dim: hd, capacity: cap, scale, window, softcap };
        let want = if softcap.is_none() {
            let mut o = vec![0f32; q.len()];
            let shape = AttnShape { n_heads: nh, n_kv_heads: nkv, head_dim: hd, capacity: cap, pos0, scale, window };
            ops::attention(pool(), shape, &q, &k, &v, &mut o);
            o
        } else {
            naive_attention(&q, &k, &v, tokens, pos0, dims)
        };
        let (qb, kb, vb) = (dev.upload(&q).unwrap(), dev.upload(&k).unwrap(), dev.upload(&v).unwrap());
        let mut pos = dev.alloc::<i32>(1).unwrap();
        dev.set_pos(&mut pos, pos0).unwrap();
        let mut out = nan_buf(dev, q.len());
        let mut scratch = AttnScratch::default();
        // A larger key bound than needed (as a captured graph would use) must give the same result.
        for max_keys in [pos0 + tokens, cap] {
            dev.attention(&qb, &kb, &vb, tokens, &pos, max_keys, dims, &mut scratch, &mut out).unwrap();
            let got = dev.download(&out).unwrap();
            let one = vec![1.0f64; got.len()];
            assert_close(
                &format!(
                    "attention nh{nh} nkv{nkv} hd{hd} pos{pos0} T{tokens} w{window:?} cap{softcap:?} mk{max_keys}"
                ),
                &got,
                &want,
                &one,
                0.0,
                2e-5,
            );
        }
    }
}

#[test]
fn elementwise_ops_match_cpu() {
    let dev = dev_or_skip!();
    let mut rng = Rng(19);
    let n = 70_001;
    for act in [Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::Relu2, Activation::Relu] {
        let g = rng.vec(n, 6.0);
        let u = rng.vec(n, 2.0);
        let mut want = g.clone();
        ops::glu(act, &mut want, &u);
        let mut gb = dev.upload(&g).unwrap();
        dev.glu(act, &mut gb, &dev.upload(&u).unwrap(), n).unwrap();
        let got = dev.download(&gb).unwrap();
        // CUDA's expf / erff / tanhf are within 2 ulp of the libm results the CPU uses; GELU's
        // 1 + erf(x/√2) cancels for negative x, so the error is relative to |x·up|, not the result.
        let mag: Vec<f64> = g.iter().zip(&u).map(|(a, b)| (a * b).abs() as f64).collect();
        assert_close(&format!("glu {act:?}"), &got, &want, &mag, 1e-6, 1e-7);
    }
    let a = rng.vec(n, 3.0);
    let b = rng.vec(n, 3.0);
    let mut ab = dev.upload(&a).unwrap();
    dev.add(&mut ab, &dev.upload(&b).unwrap(), n).unwrap();
    let mut want = a.clone();
    ops::add_inplace(&mut want, &b);
    assert_bits_eq("add", &dev.download(&ab).unwrap(), &want);
    dev.scale(&mut ab, 0.3, n).unwrap();
    let want2: Vec<f32> = want.iter().map(|v| v * 0.3).collect();
    assert_bits_eq("scale", &dev.download(&ab).unwrap(), &want2);
    let logits = rng.vec(n, 80.0);
    let mut lb = dev.upload(&logits).unwrap();
    dev.softcap(&mut lb, 30.0, n).unwrap();
    let want3: Vec<f32> = logits.iter().map(|l| 30.0 * (l / 30.0).tanh()).collect();
    let mag: Vec<f64> = want3.iter().map(|v| v.abs() as f64).collect();
    assert_close("softcap", &dev.download(&lb).unwrap(), &want3, &mag, 1e-6, 1e-7);
}

#[test]
fn embedding_gather_is_bit_exact() {
    let dev = dev_or_skip!();
    let mut rng = Rng(20);
    let (rows, cols) = (50usize, 512usize);
    let ids = [3i32, 0, 49, 17, 3];
    let idb = dev.upload(&ids).unwrap();
    let vals = rng.vec(rows * cols, 1.0);
    let mut tables: Vec<(String, CudaWeight, Vec<f32>)> = Vec::new();
    for dt in [DenseDType::F32, DenseDType::F16, DenseDType::BF16] {
        let g = CudaDense::from_f32(dev, rows, cols, dt, &vals).unwrap();
        let deq: Vec<f32> = match dt {
            DenseDType::F32 => vals.clone(),
            DenseDType::F16 => vals.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect(),
            DenseDType::BF16 => vals.iter().map(|v| half::bf16::from_f32(*v).to_f32()).collect(),
        };
        tables.push((dt.name().to_string(), CudaWeight::Dense(g), deq));
    }
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K] {
        let bytes = random_blocks(&mut rng, ty, rows, cols);
        let deq = tern_quants::dequantize(ty, &bytes, rows * cols).unwrap();
        tables.push((
            ty.to_string(),
            CudaWeight::Quant(CudaQuant::from_bytes(dev, rows, cols, ty, &bytes).unwrap()),
            deq,
        ));
    }
    for (name, table, deq) in &tables {
        for scale in [1.0f32, 0.5] {
            let mut out = nan_buf(dev, ids.len() * cols);
            dev.embed(table, &idb, ids.len(), scale, &mut out, None).unwrap();
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&i| {
                    deq[i as usize * cols..(i as usize + 1) * cols].iter().map(move |v| {
                        if scale == 1.0 {
                            *v
                        } else {
                            v * scale
                        }
                    })
                })
                .collect();
            assert_bits_eq(&format!("embed {name} scale {scale}"), &dev.download(&out).unwrap(), &want);
        }
    }
    // An id outside the table: zero row and the flag.
    let bad_ids = dev.upload(&[1i32, 50, -1]).unwrap();
    let mut flag = dev.alloc::<i32>(1).unwrap();
    let mut out = nan_buf(dev, 3 * cols);
    dev.embed(&tables[0].1, &bad_ids, 3, 1.0, &mut out, Some(&mut flag)).unwrap();
    let got = dev.download(&out).unwrap();
    assert!(got[cols..].iter().all(|v| *v == 0.0));
    assert_eq!(dev.download(&flag).unwrap()[0], 1);
}

fn cpu_argmax(v: &[f32]) -> u32 {
    let (mut best, mut bv) = (0usize, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best as u32
}

#[test]
fn argmax_and_sampling_match_cpu() {
    let dev = dev_or_skip!();
    let mut rng = Rng(21);
    let n = 128_256;
    let rows = 6;
    let mut logits = rng.vec(rows * n, 10.0);
    // Ties (first index wins), NaN (never wins), all -inf (index 0).
    logits[n + 500] = 50.0;
    logits[n + 90_000] = 50.0;
    logits[2 * n + 7] = f32::NAN;
    logits[2 * n + 8] = 1e9;
    logits[3 * n..4 * n].fill(f32::NEG_INFINITY);
    let lb = dev.upload(&logits).unwrap();
    let mut ids = dev.alloc::<u32>(rows).unwrap();
    dev.argmax(&lb, rows, n, &mut ids).unwrap();
    let got = dev.download(&ids).unwrap();
    for r in 0..rows {
        assert_eq!(got[r], cpu_argmax(&logits[r * n..(r + 1) * n]), "row {r}");
    }
    // Sampling: the picked index must be where the f64 CDF crosses u (up to rounding).
    let rows = 4;
    let logits = rng.vec(rows * n, 4.0);
    let u: Vec<f32> = (0..rows).map(|_| (rng.f() + 1.0) / 2.0 * 0.999).collect();
    let lb = dev.upload(&logits).unwrap();
    let ub = dev.upload(&u).unwrap();
    let mut ids = dev.alloc::<u32>(rows).unwrap();
    for temp in [1.0f32, 0.7] {
        dev.sample(&lb, rows, n, temp, &ub, &mut ids).unwrap();
        let got = dev.download(&ids).unwrap();
        for r in 0..rows {
            let row = &logits[r * n..(r + 1) * n];
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let p: Vec<f64> = row.iter().map(|&x| ((x as f64 - m) / temp as f64).exp()).collect();
            let total: f64 = p.iter().sum();
            let before: f64 = p[..got[r] as usize].iter().sum::<f64>() / total;
            let after = before + p[got[r] as usize] / total;
            let u = u[r] as f64;
            assert!(
                before <= u + 1e-5 && u <= after + 1e-5,
                "row {r} T {temp}: id {} covers [{before}, {after}], u {u}",
                got[r]
            );
        }
    }
}

#[test]
fn linear_dispatches_every_format() {
    let dev = dev_or_skip!();
    let mut rng = Rng(22);
    let (rows, cols, tokens) = (96usize, 512usize, 3usize);
    let x = rng.vec(tokens * cols, 1.0);
    let xb = dev.upload(&x).unwrap();
    let bias = rng.vec(rows, 0.5);
    let mut scratch = LinearScratch::default();
    // Ternary with its own input RMSNorm (use_rms_norm), against the CPU sequence of tern-model.
    let (w, _) = random_ternary(&mut rng, rows, cols);
    let nw = rng.vec(cols, 1.0);
    let mut normed = vec![0f32; x.len()];
    ops::rms_norm(&x, &nw, 1e-5, 0.0, &mut normed);
    let kp = w.padded_cols();
    let mut codes = vec![0i8; tokens * kp];
    let scales: Vec<_> =
        (0..tokens).map(|t| quantize_i8(&normed[t * cols..(t + 1) * cols], &mut codes[t * kp..(t + 1) * kp])).collect();
    let factor: Vec<f32> = scales.iter().map(|s| 0.5 / s.scale).collect();
    let mut want = vec![0f32; tokens * rows];
    ternary::matmul(pool(), &w, &QuantizedActs { codes: &codes, scales: &scales }, &factor, &mut want);
    let lin = CudaLinear {
        weight: CudaWeight::Ternary(CudaTernary::upload(dev, &w, ScaleMode::Multiply(0.5)).unwrap()),
        bias: None,
        input_norm: Some((dev.upload(&nw).unwrap(), 1e-5)),
    };
    let mut out = nan_buf(dev, tokens * rows);
    dev.linear(&lin, &xb, tokens, &mut out, &mut scratch, false).unwrap();
    let got = dev.download(&out).unwrap();
    let mag: Vec<f64> = want.iter().map(|v| v.abs() as f64 + 1.0).collect();
    // The fused norm may move a code by one: a small absolute difference.
    assert_close("linear ternary + input norm", &got, &want, &mag, 2e-2, 0.0);
    // Dense with bias and accumulate.
    let wv = rng.vec(rows * cols, 1.0);
    let m = DenseMatrix::from_f32(rows, cols, &wv).unwrap();
    let mut want = vec![0f32; tokens * rows];
    tern_kernels::dense::matmul(pool(), &m, &x, &mut want);
    let base = rng.vec(tokens * rows, 1.0);
    let want: Vec<f32> = want.iter().enumerate().map(|(i, y)| base[i] + (y + bias[i % rows])).collect();
    let lin = CudaLinear {
        weight: CudaWeight::Dense(CudaDense::upload(dev, &m).unwrap()),
        bias: Some(dev.upload(&bias).unwrap()),
        input_norm: None,
    };
    let mut out = dev.upload(&base).unwrap();
    dev.linear(&lin, &xb, tokens, &mut out, &mut scratch, true).unwrap();
    let mag: Vec<f64> = want.iter().map(|v| v.abs() as f64 + 1.0).collect();
    assert_close("linear dense bias+acc", &dev.download(&out).unwrap(), &want, &mag, 1e-5, 0.0);
    // Quant.
    let bytes = random_blocks(&mut rng, GgmlType::Q4_K, rows, cols);
    let qm = QuantMatrix::new(rows, cols, GgmlType::Q4_K, ByteBuf::from_vec(bytes)).unwrap();
    let mut want = vec![0f32; tokens * rows];
    qk::matmul_on(Isa::Scalar, pool(), &qm, &x, &mut want, &mut QuantScratch::new());
    let lin =
        CudaLinear { weight: CudaWeight::Quant(CudaQuant::upload(dev, &qm).unwrap()), bias: None, input_norm: None };
    let mut out = nan_buf(dev, tokens * rows);
    dev.linear(&lin, &xb, tokens, &mut out, &mut scratch, false).unwrap();
    let mag: Vec<f64> = want.iter().map(|v| v.abs() as f64 + 1.0).collect();
    assert_close("linear q4_k", &dev.download(&out).unwrap(), &want, &mag, 1e-5, 0.0);
}

#[test]
fn bad_arguments_are_errors() {
    let dev = dev_or_skip!();
    let x = dev.alloc::<f32>(10).unwrap();
    let mut out = dev.alloc::<f32>(10).unwrap();
    assert!(dev.rms_norm(&x, Norm { weight: None, eps: 1e-6, offset: 0.0 }, 4, 3, &mut out).is_err());
    let mut acts = I8Acts::new(dev, 1, 128).unwrap();
    assert!(dev.quantize_i8(&x, 2, 5, None, None, &mut acts).is_err());
    let (w, _) = random_ternary(&mut Rng(1), 4, 300);
    let gw = CudaTernary::upload(dev, &w, ScaleMode::Multiply(1.0)).unwrap();
    assert!(dev.ternary_gemv(&gw, &acts, &mut out, Epilogue::default()).is_err(), "kp mismatch");
    assert!(CudaQuant::from_bytes(dev, 2, 64, GgmlType::Q4_0, &[0u8; 10]).is_err());
    assert!(CudaQuant::from_bytes(dev, 2, 64, GgmlType::Q5_K, &[0u8; 10]).is_err());
    let dims =
        AttnDims { n_heads: 3, n_kv_heads: 2, head_dim: 64, capacity: 8, scale: 1.0, window: None, softcap: None };
    let pos = dev.alloc::<i32>(1).unwrap();
    assert!(dev.attention(&x, &x, &x, 1, &pos, 4, dims, &mut AttnScratch::default(), &mut out).is_err());
    dev.synchronize().unwrap();
}
