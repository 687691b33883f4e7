//! The CUDA executor against the same references as the CPU (feature `cuda`; skipped with a notice
//! when no GPU is present, as on CI): every HF fixture's logits vs transformers float32 (relative L2
//! ≤ 1e-2 per position, argmax inside the reference top-3), CUDA vs CPU top-1 at every position,
//! incremental decode vs the full pass, and batched sequences vs single ones.
#![cfg(feature = "cuda")]

mod common;

use common::{argmax, fixtures_root, reference, rel_l2, top3};
use std::path::Path;
use tern_kernels::ThreadPool;
use tern_model::load::load_hf_dir;
use tern_model::{KvCache, Logits, Model, SeqInput, Workspace};

fn gpu() -> bool {
    let ok = tern_cuda::driver_present() && tern_cuda::device_count().unwrap_or(0) > 0;
    if !ok {
        eprintln!("NOTICE: no CUDA driver or GPU; CUDA fixture tests skipped");
    }
    ok
}

fn load(name: &str) -> (Model, Vec<u32>, Vec<f32>, usize) {
    let dir = fixtures_root().join(name);
    let model = load_hf_dir(&dir, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    let r = reference(&dir);
    (model, r.ids, r.logits, r.vocab)
}

/// Tolerance between two CUDA runs of the same positions that took different kernel paths: up to 8
/// rows use GEMV kernels with f32 activations, more rows go through tensor-core GEMM with bf16/f16
/// activations for dense weights (ternary and ggml-block paths are exact integer math).
const PATH_TOL: f64 = 1e-2;

/// Returns the worst relative L2 error vs transformers.
fn check(name: &str) -> f64 {
    let (model, ids, want, v) = load(name);
    let n = ids.len();
    let mut ws = Workspace::cuda(&model, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut cache = KvCache::new(&model.config, n);
    model.forward(&ThreadPool::new(1), &ids, &mut cache, &mut ws, Logits::All).unwrap();
    let full = ws.logits.clone();
    // CPU for top-1 agreement.
    let mut cpu_ws = Workspace::default();
    let mut cpu_cache = KvCache::new(&model.config, n);
    model.forward(&ThreadPool::new(2), &ids, &mut cpu_cache, &mut cpu_ws, Logits::All).unwrap();
    let mut worst = 0f64;
    for t in 0..n {
        let (ours, r) = (&full[t * v..(t + 1) * v], &want[t * v..(t + 1) * v]);
        let e = rel_l2(ours, r);
        worst = worst.max(e);
        assert!(e <= 1e-2, "{name}: position {t}: rel L2 {e:.3e}");
        assert!(top3(r).contains(&argmax(ours)), "{name}: position {t}: argmax outside reference top-3");
        let cpu = &cpu_ws.logits[t * v..(t + 1) * v];
        let (a, b) = (argmax(ours), argmax(cpu));
        // Equal top-1, or a tie within float noise of the CPU's own logits.
        assert!(
            a == b || (cpu[a] - cpu[b]).abs() <= 1e-4 * cpu[b].abs().max(1.0),
            "{name}: position {t}: CUDA top-1 {a} vs CPU {b}"
        );
    }
    // Incremental decode through the device cache equals the full pass (dynamic RoPE rescales with
    // the length seen so far, as in transformers, so it is excluded).
    if name != "llama_rope_dynamic" {
        let mut c2 = KvCache::new(&model.config, n);
        let half = n / 2;
        model.forward(&ThreadPool::new(1), &ids[..half], &mut c2, &mut ws, Logits::Last).unwrap();
        let e = rel_l2(&ws.logits, &full[(half - 1) * v..half * v]);
        assert!(e < PATH_TOL, "{name}: prefill last row: {e:.3e}");
        for t in half..n {
            model.forward(&ThreadPool::new(1), &ids[t..t + 1], &mut c2, &mut ws, Logits::Last).unwrap();
            let e = rel_l2(&ws.logits, &full[t * v..(t + 1) * v]);
            assert!(e < PATH_TOL, "{name}: decode position {t}: {e:.3e}");
        }
        // Batched: two sequences at different positions in one call.
        let mut ca = KvCache::new(&model.config, n);
        let mut cb = KvCache::new(&model.config, n);
        model.forward(&ThreadPool::new(1), &ids[..3], &mut ca, &mut ws, Logits::Last).unwrap();
        let mut seqs =
            [SeqInput { tokens: &ids[3..6], cache: &mut ca }, SeqInput { tokens: &ids[..2], cache: &mut cb }];
        model.forward_batch(&ThreadPool::new(1), &mut seqs, &mut ws, Logits::All).unwrap();
        for (row, t) in [3, 4, 5, 0, 1].into_iter().enumerate() {
            let e = rel_l2(&ws.logits[row * v..(row + 1) * v], &full[t * v..(t + 1) * v]);
            assert!(e < PATH_TOL, "{name}: batched row {row} (position {t}): {e:.3e}");
        }
        // Batched decode in lock-step, one token per sequence per call: the first step runs
        // eagerly, the second is captured as a graph, the rest replay it at new positions.
        for s in 0..n.saturating_sub(6).min(5) {
            let (ta, tb) = (6 + s, 2 + s);
            let mut seqs = [
                SeqInput { tokens: &ids[ta..ta + 1], cache: &mut ca },
                SeqInput { tokens: &ids[tb..tb + 1], cache: &mut cb },
            ];
            model.forward_batch(&ThreadPool::new(1), &mut seqs, &mut ws, Logits::Last).unwrap();
            for (row, t) in [ta, tb].into_iter().enumerate() {
                let e = rel_l2(&ws.logits[row * v..(row + 1) * v], &full[t * v..(t + 1) * v]);
                assert!(e < PATH_TOL, "{name}: batched decode step {s} row {row} (position {t}): {e:.3e}");
            }
        }
    }
    worst
}

#[test]
fn every_fixture_on_cuda() {
    if !gpu() {
        return;
    }
    let mut names: Vec<String> = std::fs::read_dir(fixtures_root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("reference.safetensors").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");
    for name in &names {
        let worst = check(name);
        println!("cuda fixture {name}: worst rel L2 {worst:.2e}");
    }
}

/// Tolerances of the real-model check. Models with 8-bit activations (every ggml-block GEMV, on
/// both executors) amplify last-bit float differences into activation rounding flips, layer after
/// layer, so two correct executors differ far more than on the float fixtures. Measured on an
/// H100 with SmolLM2-135M Q4_1 (48 positions): CUDA vs CPU rel L2 ≤ 2.5e-2, CUDA decode vs its own
/// full pass ≤ 1.6e-2, 5 top-1 flips, all at CPU top-2 margins (≤ 0.12) below that position's
/// max |CUDA − CPU| (≥ 0.37); against llama.cpp's own logits (tools/llamacpp/dump_logits.cpp, 46
/// positions) CUDA, CPU and llama.cpp agree on top-1 everywhere and CUDA's largest deviation over
/// llama.cpp's top-20 (0.75) is within the CPU's (0.86).
const REAL_REL_L2: f64 = 5e-2;
const REAL_REF_MAX_DIFF: f32 = 1.0;

/// A real model given as TERN_CUDA_MODEL (a GGUF file): CUDA vs CPU on a fixed prompt (token ids
/// from the model's own embedding range): relative L2 per position, top-1 equal except where the
/// CPU's own top-2 margin is inside the measured CUDA−CPU difference; incremental decode on the
/// device vs the full pass; with TERN_CUDA_REF (llama.cpp logits JSON, e.g.
/// crates/tern-cli/tests/data/llamacpp_logits_smollm2.json) top-1 equal to llama.cpp's at every
/// position. See [`REAL_REL_L2`] for the measured numbers.
#[test]
fn real_model_cpu_vs_cuda() {
    let Some(path) = std::env::var_os("TERN_CUDA_MODEL") else {
        eprintln!("NOTICE: TERN_CUDA_MODEL not set; real-model CUDA check skipped");
        return;
    };
    if !gpu() {
        return;
    }
    let model = tern_model::load::load_path(Path::new(&path), None).unwrap();
    let ids: Vec<u32> = std::env::var("TERN_CUDA_IDS")
        .map(|s| s.split(',').map(|x| x.trim().parse().unwrap()).collect())
        .unwrap_or_else(|_| (0..48u32).map(|i| 100 + i * 37 % 1000).collect());
    let n = ids.len();
    let v = model.vocab();
    let mut ws = Workspace::cuda(&model, 0).unwrap();
    let mut cache = KvCache::new(&model.config, n);
    model.forward(&ThreadPool::new(1), &ids, &mut cache, &mut ws, Logits::All).unwrap();
    let mut cpu_ws = Workspace::default();
    let mut cpu_cache = KvCache::new(&model.config, n);
    model.forward(&ThreadPool::new(8), &ids, &mut cpu_cache, &mut cpu_ws, Logits::All).unwrap();
    let mut worst = 0f64;
    let mut agree = 0;
    let mut flips = Vec::new();
    for t in 0..n {
        let (g, c) = (&ws.logits[t * v..(t + 1) * v], &cpu_ws.logits[t * v..(t + 1) * v]);
        let e = rel_l2(g, c);
        worst = worst.max(e);
        let max_diff = g.iter().zip(c).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let (a, b) = (argmax(g), argmax(c));
        let mut sorted = c.to_vec();
        sorted.sort_by(|x, y| y.total_cmp(x));
        let margin = sorted[0] - sorted[1];
        println!("pos {t}: cuda {a} cpu {b} cpu top-2 margin {margin:.4} rel L2 {e:.2e} max |diff| {max_diff:.4}");
        if a == b {
            agree += 1;
        } else {
            flips.push((t, a, b, margin, max_diff));
        }
    }
    println!("real model: top-1 agreement {agree}/{n}, worst rel L2 CUDA vs CPU {worst:.3e}");
    // Incremental decode on the device (decode graphs: eager, capture, replays) vs the full pass.
    let full = ws.logits.clone();
    let mut c2 = KvCache::new(&model.config, n);
    let start = n.saturating_sub(8).max(1);
    let mut decode_worst = 0f64;
    model.forward(&ThreadPool::new(1), &ids[..start], &mut c2, &mut ws, Logits::Last).unwrap();
    for t in start..n {
        model.forward(&ThreadPool::new(1), &ids[t..t + 1], &mut c2, &mut ws, Logits::Last).unwrap();
        let e = rel_l2(&ws.logits, &full[t * v..(t + 1) * v]);
        println!("decode pos {t}: rel L2 vs full pass {e:.2e}");
        decode_worst = decode_worst.max(e);
    }
    // Optional third reference: llama.cpp's top-20 logits for fixed prompts (TERN_CUDA_REF, the JSON
    // of tools/llamacpp/dump_logits.cpp), compared with both executors.
    let mut ref_bad = Vec::new();
    if let Some(refp) = std::env::var_os("TERN_CUDA_REF").filter(|p| Path::new(p).is_file()) {
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(refp).unwrap()).unwrap();
        for p in j["prompts"].as_array().unwrap() {
            let pids: Vec<u32> = p["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            let m = pids.len();
            let mut wsg = Workspace::cuda(&model, 0).unwrap();
            let mut cg = KvCache::new(&model.config, m);
            model.forward(&ThreadPool::new(1), &pids, &mut cg, &mut wsg, Logits::All).unwrap();
            let mut wsc = Workspace::default();
            let mut cc = KvCache::new(&model.config, m);
            model.forward(&ThreadPool::new(8), &pids, &mut cc, &mut wsc, Logits::All).unwrap();
            for (t, pos) in p["positions"].as_array().unwrap().iter().enumerate().take(m) {
                let ids: Vec<usize> =
                    pos["top_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
                let lg: Vec<f32> =
                    pos["top_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
                let row = |l: &[f32]| l[t * v..(t + 1) * v].to_vec();
                let (g, c) = (row(&wsg.logits), row(&wsc.logits));
                let dev = |x: &[f32]| ids.iter().zip(&lg).map(|(&i, &r)| (x[i] - r).abs()).fold(0f32, f32::max);
                println!(
                    "llama.cpp ref pos {t}: top-1 llama {} cuda {} cpu {}; max |diff| over its top-20: cuda {:.4} cpu {:.4}",
                    ids[0],
                    argmax(&g),
                    argmax(&c),
                    dev(&g),
                    dev(&c)
                );
                if argmax(&g) != ids[0] || dev(&g) > REAL_REF_MAX_DIFF {
                    ref_bad.push((t, argmax(&g), ids[0], dev(&g)));
                }
            }
        }
    }
    assert!(ref_bad.is_empty(), "CUDA vs llama.cpp (position, cuda top-1, llama top-1, max |diff|): {ref_bad:?}");
    assert!(decode_worst < REAL_REL_L2, "real model: incremental decode vs full pass {decode_worst:.3e}");
    assert!(worst <= REAL_REL_L2, "worst rel L2 CUDA vs CPU {worst:.3e}");
    for &(t, a, b, margin, max_diff) in &flips {
        assert!(
            margin <= max_diff,
            "position {t}: CUDA top-1 {a} vs CPU {b}: CPU margin {margin} exceeds max |CUDA - CPU| {max_diff}"
        );
    }
}
