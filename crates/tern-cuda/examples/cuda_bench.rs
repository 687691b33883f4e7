//! Micro-benchmarks of tern-cuda's kernels on one GPU, timed with CUDA events around replays of
//! captured CUDA graphs (launch gaps excluded), medians of repeated runs, with weights rotated
//! over enough copies to exceed the L2 cache. Prints achieved bandwidth against a device-to-device
//! copy measured in the same run, and a table last.
//!
//! `cuda_bench precompile [MAJOR MINOR]` fills the kernel cache without a GPU (NVRTC only).
//! `cuda_bench` runs the benchmarks (see tools/cuda/device_test.sh).

use std::time::Instant;

use tern_cuda::{
    AttnDims, AttnScratch, CudaDense, CudaDevice, CudaQuant, CudaTernary, DenseScratch, Epilogue, I8Acts, Q8Acts,
    ScaleMode, TernaryPart,
};
use tern_kernels::dense::DenseDType;
use tern_kernels::ternary::TernaryMatrix;
use tern_quants::GgmlType;

type R<T> = Result<T, Box<dyn std::error::Error>>;

struct Row {
    op: String,
    shape: String,
    tokens: usize,
    us: f64,
    gbs: f64,
    note: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Median milliseconds of one replay of the graph `f` captures, over `reps` replays (after warm-up).
fn time_graph(dev: &CudaDevice, reps: usize, f: impl FnOnce() -> tern_cuda::Result<()>) -> R<f64> {
    let g = dev.capture(f)?;
    for _ in 0..3 {
        g.replay()?;
    }
    dev.synchronize()?;
    let (a, b) = (dev.event()?, dev.event()?);
    let mut ms = Vec::new();
    for _ in 0..reps {
        dev.record(&a)?;
        g.replay()?;
        dev.record(&b)?;
        b.synchronize()?;
        ms.push(a.elapsed_ms(&b)? as f64);
    }
    Ok(median(ms))
}

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

fn random_ternary(rows: usize, cols: usize, seed: &mut u64) -> R<TernaryMatrix> {
    let vals: Vec<i8> = (0..rows * cols).map(|_| (lcg(seed) % 3) as i8 - 1).collect();
    Ok(TernaryMatrix::from_values(rows, cols, &vals)?)
}

/// Random ggml blocks of `ty` with small finite scales (values do not matter for bandwidth, and
/// tern-quants' k-quant quantizers would take minutes on a matrix this size).
fn random_quant_bytes(ty: GgmlType, rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
    let (bs, bb, scales): (usize, usize, &[usize]) = match ty {
        GgmlType::Q8_0 => (32, 34, &[0]),
        GgmlType::Q4_0 => (32, 18, &[0]),
        GgmlType::Q4_K => (256, 144, &[0, 2]),
        _ => (256, 210, &[208]), // Q6_K
    };
    let nblk = rows * cols / bs;
    let mut b: Vec<u8> = (0..nblk * bb).map(|_| lcg(seed) as u8).collect();
    let d = half::f16::from_f32(0.01).to_le_bytes();
    for blk in b.chunks_exact_mut(bb) {
        for &o in scales {
            blk[o..o + 2].copy_from_slice(&d);
        }
    }
    b
}

fn main() -> R<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("precompile") {
        let major = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(9);
        let minor = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
        let t = Instant::now();
        for (name, cached, path) in tern_cuda::compile::precompile_all((major, minor))? {
            println!(
                "{name}: {} {}",
                if cached { "cached" } else { "compiled" },
                path.map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
        println!("cache {:?} ({:.1} s)", tern_cuda::compile::cache_dir(), t.elapsed().as_secs_f64());
        return Ok(());
    }
    let dev = CudaDevice::new(0)?;
    println!("{}", dev.info());
    let arch = dev.info().arch;
    let fresh = tern_cuda::compile::time_fresh_compile("norm", arch)?;
    let t = Instant::now();
    dev.warm_up()?;
    println!(
        "NVRTC: fresh compile of module `norm` {fresh:.2} s; all modules ready (cache) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let l2 = dev.info().l2_bytes.max(1) as usize;
    let mut rows_out: Vec<Row> = Vec::new();
    let mut seed = 42u64;

    // Device-to-device copy: the bandwidth ceiling (bytes read + written).
    let n = 256 << 20; // 1 GiB of f32
    let src = dev.upload(&vec![1.0f32; n])?;
    let mut dst = dev.alloc::<f32>(n)?;
    let ms = time_graph(&dev, 10, || dev.copy(&src, &mut dst))?;
    let memcpy_gbs = 2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9;
    rows_out.push(Row {
        op: "memcpy d2d".into(),
        shape: "1 GiB".into(),
        tokens: 0,
        us: ms * 1e3,
        gbs: memcpy_gbs,
        note: "cuMemcpyDtoD, read+write".into(),
    });
    let ms = time_graph(&dev, 10, || dev.copy_probe(&src, &mut dst))?;
    let probe_gbs = 2.0 * (n * 4) as f64 / (ms * 1e-3) / 1e9;
    rows_out.push(Row {
        op: "copy kernel".into(),
        shape: "1 GiB".into(),
        tokens: 0,
        us: ms * 1e3,
        gbs: probe_gbs,
        note: "16-byte loads/stores, read+write".into(),
    });
    // "% of copy" below is against the faster of the two copies.
    let copy_gbs = memcpy_gbs.max(probe_gbs);
    drop((src, dst));

    // Ternary GEMV (decode) on the two shapes of the brief, weights rotated past L2.
    for &(rows, cols) in &[(2560usize, 6912usize), (128256, 2560)] {
        let w = random_ternary(rows, cols, &mut seed)?;
        let bytes = w.data().len();
        let copies = (3 * l2 / bytes + 1).clamp(2, 32);
        let ws: Vec<CudaTernary> =
            (0..copies).map(|_| CudaTernary::upload(&dev, &w, ScaleMode::Multiply(0.5))).collect::<Result<_, _>>()?;
        let kp = w.padded_cols();
        for &tokens in &[1usize, 4, 8] {
            let x: Vec<f32> = (0..tokens * cols).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
            let xb = dev.upload(&x)?;
            let mut acts = I8Acts::new(&dev, tokens, kp)?;
            dev.quantize_i8(&xb, tokens, cols, None, None, &mut acts)?;
            let mut out = dev.alloc::<f32>(tokens * rows)?;
            for r in [1usize, 2, 4] {
                let launches = copies * (64 / copies).max(1);
                let ms = time_graph(&dev, 15, || {
                    for i in 0..launches {
                        dev.ternary_gemv_variant(&ws[i % copies], &acts, &mut out, Epilogue::default(), r)?;
                    }
                    Ok(())
                })? / launches as f64;
                let gbs = bytes as f64 / (ms * 1e-3) / 1e9;
                rows_out.push(Row {
                    op: format!("ternary GEMV R{r}"),
                    shape: format!("{rows}x{cols}"),
                    tokens,
                    us: ms * 1e3,
                    gbs,
                    note: format!("{:.0}% of copy, {copies} copies", 100.0 * gbs / copy_gbs),
                });
            }
        }
        // Prefill on the int8 tensor cores.
        if rows == 2560 {
            for &tokens in &[64usize, 512] {
                let x: Vec<f32> = (0..tokens * cols).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
                let xb = dev.upload(&x)?;
                let mut acts = I8Acts::new(&dev, tokens, kp)?;
                dev.quantize_i8(&xb, tokens, cols, None, None, &mut acts)?;
                let mut out = dev.alloc::<f32>(tokens * rows)?;
                let ms = time_graph(&dev, 15, || {
                    for i in 0..16 {
                        dev.ternary_gemm(&ws[i % copies], &acts, &mut out, Epilogue::default())?;
                    }
                    Ok(())
                })? / 16.0;
                let tops = 2.0 * (rows * kp * tokens) as f64 / (ms * 1e-3) / 1e12;
                rows_out.push(Row {
                    op: "ternary IMMA GEMM".into(),
                    shape: format!("{rows}x{cols}"),
                    tokens,
                    us: ms * 1e3,
                    gbs: bytes as f64 / (ms * 1e-3) / 1e9,
                    note: format!("{tops:.1} int8 TOPS"),
                });
            }
        }
    }

    // The other weight formats on the LM-head shape (decode, 1 token).
    let (rows, cols) = (128256usize, 2560usize);
    let x: Vec<f32> = (0..cols).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
    let xb = dev.upload(&x)?;
    let mut out = dev.alloc::<f32>(rows)?;
    {
        let vals: Vec<f32> = (0..rows * cols).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
        let w = CudaDense::from_f32(&dev, rows, cols, DenseDType::BF16, &vals)?;
        let mut sc = DenseScratch::default();
        let ms = time_graph(&dev, 15, || {
            for _ in 0..8 {
                dev.dense_matmul(&w, &xb, 1, &mut out, &mut sc, Epilogue::default())?;
            }
            Ok(())
        })? / 8.0;
        let gbs = w.byte_len() as f64 / (ms * 1e-3) / 1e9;
        rows_out.push(Row {
            op: "bf16 GEMV".into(),
            shape: format!("{rows}x{cols}"),
            tokens: 1,
            us: ms * 1e3,
            gbs,
            note: format!("{:.0}% of copy", 100.0 * gbs / copy_gbs),
        });
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::Q4_0] {
            let q = random_quant_bytes(ty, rows, cols, &mut seed);
            let w = CudaQuant::from_bytes(&dev, rows, cols, ty, &q)?;
            let mut q8 = Q8Acts::default();
            dev.quant_matmul(&w, &xb, 1, &mut out, &mut q8, Epilogue::default())?;
            let ms = time_graph(&dev, 15, || {
                for _ in 0..8 {
                    dev.quant_matmul(&w, &xb, 1, &mut out, &mut q8, Epilogue::default())?;
                }
                Ok(())
            })? / 8.0;
            let gbs = w.byte_len() as f64 / (ms * 1e-3) / 1e9;
            rows_out.push(Row {
                op: format!("{ty} GEMV (+quant)"),
                shape: format!("{rows}x{cols}"),
                tokens: 1,
                us: ms * 1e3,
                gbs,
                note: format!("{:.0}% of copy", 100.0 * gbs / copy_gbs),
            });
        }
    }

    // Decode attention (BitNet-2B shape: 20 heads, 5 KV heads, head_dim 128) at 4096 positions.
    {
        let (nh, nkv, hd, cap) = (20usize, 5usize, 128usize, 4096usize);
        let q = dev.upload(&vec![0.01f32; nh * hd])?;
        let kv: Vec<f32> = (0..nkv * cap * hd).map(|_| (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0).collect();
        let (kc, vc) = (dev.upload(&kv)?, dev.upload(&kv)?);
        let mut pos = dev.alloc::<i32>(1)?;
        dev.set_pos(&mut pos, cap - 1)?;
        let mut o = dev.alloc::<f32>(nh * hd)?;
        let mut scratch = AttnScratch::default();
        let dims = AttnDims {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            capacity: cap,
            scale: 0.088,
            window: None,
            softcap: None,
        };
        dev.attention(&q, &kc, &vc, 1, &pos, cap, dims, &mut scratch, &mut o)?;
        let ms = time_graph(&dev, 15, || {
            for _ in 0..16 {
                dev.attention(&q, &kc, &vc, 1, &pos, cap, dims, &mut scratch, &mut o)?;
            }
            Ok(())
        })? / 16.0;
        let bytes = 2 * nkv * cap * hd * 4;
        rows_out.push(Row {
            op: "attention decode".into(),
            shape: format!("{nh}h/{nkv}kv x{hd} @{cap}"),
            tokens: 1,
            us: ms * 1e3,
            gbs: bytes as f64 / (ms * 1e-3) / 1e9,
            note: "f32 KV".into(),
        });
    }

    // Projected BitNet-2B4T decode step from the measured kernels (not an end-to-end run).
    let layer_shapes =
        [(2560usize, 2560usize), (640, 2560), (640, 2560), (2560, 2560), (6912, 2560), (6912, 2560), (2560, 6912)];
    let mut layer_us = 0.0;
    for &(r, c) in &layer_shapes {
        let w = random_ternary(r, c, &mut seed)?;
        let copies = (3 * l2 / w.data().len() + 1).clamp(2, 64);
        let ws: Vec<CudaTernary> =
            (0..copies).map(|_| CudaTernary::upload(&dev, &w, ScaleMode::Multiply(0.5))).collect::<Result<_, _>>()?;
        let xb = dev.upload(&vec![0.5f32; c])?;
        let mut acts = I8Acts::new(&dev, 1, w.padded_cols())?;
        dev.quantize_i8(&xb, 1, c, None, None, &mut acts)?;
        let mut out = dev.alloc::<f32>(r)?;
        let ms = time_graph(&dev, 11, || {
            for i in 0..copies * 2 {
                dev.ternary_gemv(&ws[i % copies], &acts, &mut out, Epilogue::default())?;
            }
            Ok(())
        })? / (copies * 2) as f64;
        layer_us += ms * 1e3;
    }
    // The same layer with q/k/v and gate/up each in one launch (4 launches instead of 7).
    let fused_us = {
        let groups: [&[(usize, usize)]; 4] =
            [&layer_shapes[0..3], &layer_shapes[3..4], &layer_shapes[4..6], &layer_shapes[6..7]];
        let mut total = 0.0;
        for grp in groups {
            let c = grp[0].1;
            let bytes: usize = grp.iter().map(|&(r, c)| r * c / 4).sum();
            let copies = (3 * l2 / bytes + 1).clamp(2, 64);
            let mut sets = Vec::new();
            for _ in 0..copies {
                let mut ws = Vec::new();
                for &(r, c) in grp {
                    ws.push(CudaTernary::upload(&dev, &random_ternary(r, c, &mut seed)?, ScaleMode::Multiply(0.5))?);
                }
                sets.push(ws);
            }
            let xb = dev.upload(&vec![0.5f32; c])?;
            let mut acts = I8Acts::new(&dev, 1, tern_kernels::ternary::padded_k(c))?;
            dev.quantize_i8(&xb, 1, c, None, None, &mut acts)?;
            let mut outs: Vec<tern_cuda::DeviceBuf<f32>> =
                grp.iter().map(|&(r, _)| dev.alloc::<f32>(r)).collect::<Result<_, _>>()?;
            let ms = time_graph(&dev, 11, || {
                for i in 0..copies * 2 {
                    let mut parts: Vec<TernaryPart<'_>> = sets[i % copies]
                        .iter()
                        .zip(outs.iter_mut())
                        .map(|(w, out)| TernaryPart { w, out, bias: None })
                        .collect();
                    dev.ternary_gemv_many(&mut parts, &acts, false)?;
                }
                Ok(())
            })? / (copies * 2) as f64;
            total += ms * 1e3;
        }
        total
    };
    println!("layer GEMVs: {layer_us:.1} us as 7 launches, {fused_us:.1} us as 4 (q/k/v and gate/up fused)");
    let layer_us = layer_us.min(fused_us);
    let head_us = rows_out.iter().find(|r| r.op == "bf16 GEMV").map_or(0.0, |r| r.us);
    let step_us = 30.0 * layer_us + head_us;
    println!(
        "projection: 30 layers x {layer_us:.1} us of ternary GEMVs + bf16 head {head_us:.1} us = {step_us:.0} us/token -> {:.0} tok/s upper bound (norms, attention, launches not included)",
        1e6 / step_us
    );

    println!("\n| op | shape | tokens | time (us) | GB/s | note |");
    println!("|---|---|---|---|---|---|");
    for r in &rows_out {
        println!("| {} | {} | {} | {:.2} | {:.0} | {} |", r.op, r.shape, r.tokens, r.us, r.gbs, r.note);
    }
    Ok(())
}
