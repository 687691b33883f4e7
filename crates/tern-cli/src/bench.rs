//! `tern bench`: llama-bench-style throughput of prompt processing (pp) and token generation (tg).
//!
//! Method (as `llama-bench` in llama.cpp `tools/llama-bench/llama-bench.cpp`): each test runs once to
//! warm up, then `-r` times; a pp test clears the KV cache and processes `-p` random tokens in one
//! batch (logits of the last token only); a tg test clears the cache and decodes `-n` random tokens
//! one at a time. Speeds are `tokens / seconds` per repetition, reported as mean ± sample standard
//! deviation; `--json` prints one object per test with llama-bench's field names (`n_prompt`,
//! `n_gen`, `n_threads`, `avg_ts`, `stddev_ts`, `avg_ns`, `samples_ts`, …) plus tern's own
//! (`bytes_per_token`, `achieved_gbs`, `layer_format`, `head_format`, `load_s`, `rss_bytes`, …).
//!
//! Also: `--synthetic NAME` (random weights of a real shape, see `tern_model::synthetic`),
//! `--write-gguf` (that model to GGUF), `--bandwidth` (the multi-threaded memory-read ceiling),
//! `--layout` / `--head-quant` (re-store weights at load), and `--head-eval` (quality of quantized
//! LM heads: KL divergence and top-1 agreement against the f32 head).

use crate::common;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use tern_kernels::dense::DenseDType;
use tern_kernels::ternary::TernaryLayout;
use tern_kernels::ThreadPool;
use tern_model::linear::{self, HeadQuant, Linear, LinearWeight};
use tern_model::synthetic::GgmlType;
use tern_model::synthetic::{self, EmbedFormat, LayerFormat};
use tern_model::{KvCache, Logits, Model, Workspace};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model: a GGUF file, an HF model directory, or a Hub repo (`org/name[@rev]`, `org/name:file.gguf`).
    #[arg(short, long, conflicts_with = "synthetic")]
    model: Option<String>,
    #[command(flatten)]
    hub: crate::hub_cmds::HubArgs,
    /// Build a random-weight model of a real shape in memory: bitnet-2b4t, llama-1b, qwen3-0.6b.
    #[arg(long, value_name = "NAME")]
    synthetic: Option<String>,
    /// Seed of the synthetic weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Prompt lengths to test (comma-separated; 0 = none).
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "512")]
    n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated; 0 = none).
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128")]
    n_gen: Vec<usize>,
    /// Threads (comma-separated list to sweep; 0 = all cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',', default_value = "0")]
    threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    reps: usize,
    /// Print a JSON array (one object per test) instead of the table.
    #[arg(long)]
    json: bool,
    /// Measure the memory-read bandwidth ceiling (GB/s) with the thread pool, then exit unless a
    /// model is given.
    #[arg(long)]
    bandwidth: bool,
    /// Size of the bandwidth probe buffer in MiB.
    #[arg(long, default_value_t = 2048)]
    bandwidth_mib: usize,
    /// Re-store ternary layers at load: t2 (2 bits), t1 (1.6 bits), tq2 (ggml TQ2_0 blocks in place).
    /// Synthetic models: also bf16, f16, f32 or a ggml type (q8_0, q4_0, q4_k, q6_k, tq1_0, tq2_0).
    #[arg(long, value_name = "FORMAT")]
    layout: Option<String>,
    /// LM head storage: keep, f32, f16, q8 (Q8_0), i8 (tern int8, 64-blocks), q6 (Q6_K), q4 (Q4_0),
    /// q4k (Q4_K). Default: keep a head the file already stores quantized, i8 for a float head.
    #[arg(long, value_name = "TYPE")]
    head_quant: Option<String>,
    /// Synthetic models: embedding (= tied head) storage: bf16, f16, f32, q8_0, q6_k, q4_k, q4_0.
    #[arg(long, value_name = "TYPE")]
    embed: Option<String>,
    /// Synthetic models: write the model to this GGUF file and exit.
    #[arg(long, value_name = "OUT.gguf", requires = "synthetic")]
    write_gguf: Option<PathBuf>,
    /// With --write-gguf: the layer type (tq2_0, tq1_0 for BitNet shapes; f16, bf16, q8_0, q4_0, q4_k,
    /// q6_k for dense ones).
    #[arg(long = "type", value_name = "TYPE")]
    gguf_type: Option<String>,
    /// With --write-gguf: the token-embedding type (default: llama-quantize's choice, Q4_K for TQ types).
    #[arg(long, value_name = "TYPE")]
    embed_type: Option<String>,
    /// Quality of quantized LM heads on this text file (or `random` for random tokens): KL divergence
    /// and top-1 agreement of each head type against the f32 head.
    #[arg(long, value_name = "FILE")]
    head_eval: Option<String>,
    /// Positions per window for --head-eval.
    #[arg(long, default_value_t = 128)]
    ctx: usize,
    /// Windows for --head-eval (0 = the whole text).
    #[arg(long, default_value_t = 8)]
    chunks: usize,
}

/// One finished test.
struct TestResult {
    n_prompt: usize,
    n_gen: usize,
    threads: usize,
    samples_ns: Vec<u64>,
}

impl TestResult {
    fn tokens(&self) -> usize {
        self.n_prompt + self.n_gen
    }
    fn samples_ts(&self) -> Vec<f64> {
        self.samples_ns.iter().map(|&ns| self.tokens() as f64 * 1e9 / ns.max(1) as f64).collect()
    }
    fn name(&self) -> String {
        if self.n_prompt > 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        }
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64 } else { 0.0 };
    (m, var.sqrt())
}

/// SplitMix64 for the random token ids.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn token(&mut self, vocab: usize) -> u32 {
        (self.next() % vocab.max(1) as u64) as u32
    }
}

/// Resident set size and its peak, from /proc/self/status (Linux), in bytes.
fn rss() -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return (None, None) };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn cpu_info() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn parse_ggml(s: &str) -> Result<GgmlType> {
    let t = s.to_ascii_uppercase();
    let all = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
    ];
    all.into_iter().find(|g| g.to_string() == t).with_context(|| format!("unknown tensor type '{s}'"))
}

fn parse_layout(s: &str) -> Option<TernaryLayout> {
    match s.to_ascii_lowercase().as_str() {
        "t2" => Some(TernaryLayout::T2),
        "t1" => Some(TernaryLayout::T1),
        "tq2" => Some(TernaryLayout::Tq2),
        _ => None,
    }
}

fn dense_of(t: GgmlType) -> Option<DenseDType> {
    match t {
        GgmlType::F32 => Some(DenseDType::F32),
        GgmlType::F16 => Some(DenseDType::F16),
        GgmlType::BF16 => Some(DenseDType::BF16),
        _ => None,
    }
}

fn threads_or_all(t: usize) -> usize {
    if t == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        t
    }
}

/// Re-stores every ternary layer of `m` in `layout`.
fn relayout(m: &mut Model, layout: TernaryLayout, threads: usize) -> Result<usize> {
    let mut n = 0;
    for l in &mut m.layers {
        for lin in [&mut l.q, &mut l.k, &mut l.v, &mut l.o, &mut l.gate, &mut l.up, &mut l.down] {
            if let LinearWeight::Ternary { w, .. } = &mut lin.weight {
                if w.layout() != layout {
                    *w = w
                        .to_layout(layout, threads)
                        .map_err(|e| anyhow::anyhow!("re-storing as {}: {e}", layout.name()))?;
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Bytes of every weight the model holds (layers, embedding, separate head, norms).
fn model_bytes(m: &Model) -> u64 {
    let lin: usize = m
        .layers
        .iter()
        .map(|l| {
            [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].iter().map(|x| x.weight_bytes()).sum::<usize>()
                + 4 * (l.attn_norm.len() + l.ffn_norm.len())
                + 4 * [&l.q_norm, &l.k_norm, &l.attn_sub_norm, &l.ffn_sub_norm, &l.post_attn_norm, &l.post_ffn_norm]
                    .iter()
                    .map(|n| n.as_ref().map_or(0, |v| v.len()))
                    .sum::<usize>()
        })
        .sum();
    (lin + m.embed.weight_bytes() + m.lm_head.as_ref().map_or(0, |h| h.weight_bytes()) + 4 * m.norm.len()) as u64
}

fn n_params(m: &Model) -> u64 {
    let lin: usize = m
        .layers
        .iter()
        .map(|l| {
            [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                .iter()
                .map(|x| x.in_features() * x.out_features())
                .sum::<usize>()
        })
        .sum();
    let emb = m.embed.in_features() * m.embed.out_features();
    let head = m.lm_head.as_ref().map_or(0, |h| h.in_features() * h.out_features());
    (lin + emb + head) as u64
}

fn head(m: &Model) -> &Linear {
    m.lm_head.as_ref().unwrap_or(&m.embed)
}

/// Average KV-cache bytes read per generated token over a tg test of `n` tokens (f32 K and V).
fn kv_read_per_token(m: &Model, n: usize) -> u64 {
    let c = &m.config;
    let per_pos = 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4;
    (per_pos * (n + 1) / 2) as u64
}

fn human(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

pub fn main(a: Args) -> Result<()> {
    if a.bandwidth {
        bandwidth(&a)?;
        if a.model.is_none() && a.synthetic.is_none() {
            return Ok(());
        }
    }
    if let Some(out) = &a.write_gguf {
        let name = a.synthetic.as_deref().unwrap_or_default();
        let shape = synthetic::shape(name)
            .with_context(|| format!("unknown synthetic model '{name}' (known: {})", synthetic::NAMES.join(", ")))?;
        let ty = match &a.gguf_type {
            Some(t) => parse_ggml(t)?,
            None if shape.ternary => GgmlType::TQ2_0,
            None => GgmlType::BF16,
        };
        let embed = a.embed_type.as_deref().map(parse_ggml).transpose()?;
        return write_synthetic(name, a.seed, ty, embed, out);
    }
    let t_load = Instant::now();
    let (mut model, label) = load(&a)?;
    let threads0 = threads_or_all(*a.threads.first().unwrap_or(&0));
    if let Some(l) = a.layout.as_deref().and_then(parse_layout) {
        if a.model.is_some() {
            relayout(&mut model, l, threads0)?;
        }
    }
    let hq = match a.head_quant.as_deref() {
        Some(s) => HeadQuant::parse(s)
            .with_context(|| format!("--head-quant: unknown type '{s}' (keep, f32, f16, q8, q6, q4, q4k)"))?,
        None => HeadQuant::default_for(head(&model)),
    };
    if let Some(src) = &a.head_eval {
        return head_eval(&a, &mut model, src, threads0);
    }
    linear::quantize_head(&mut model, hq, threads0)?;
    let pool0 = ThreadPool::new(threads0);
    // Load-to-first-token: the first forward pass of one token (pages in every weight).
    {
        let mut cache = KvCache::new(&model.config, 1);
        let mut ws = Workspace::default();
        model.forward(&pool0, &[0], &mut cache, &mut ws, Logits::Last)?;
    }
    let load_s = t_load.elapsed().as_secs_f64();
    drop(pool0);
    let (rss_loaded, _) = rss();

    let wbytes = model.weight_bytes_per_token() as u64;
    let mbytes = model_bytes(&model);
    let params = n_params(&model);
    let layer_fmt = model.layers.first().map_or("-".into(), |l| l.gate.format_name());
    let head_fmt = head(&model).format_name();
    let vocab = model.vocab();
    let mut results = Vec::new();
    let mut rng = Rng(a.seed ^ 0x5EED);
    for &t in &a.threads {
        let threads = threads_or_all(t);
        let pool = ThreadPool::new(threads);
        let mut ws = Workspace::default();
        for &np in a.n_prompt.iter().filter(|&&n| n > 0) {
            let mut cache = KvCache::new(&model.config, np);
            let mut run = |rng: &mut Rng| -> Result<u64> {
                let toks: Vec<u32> = (0..np).map(|_| rng.token(vocab)).collect();
                cache.truncate(0);
                let t0 = Instant::now();
                model.forward(&pool, &toks, &mut cache, &mut ws, Logits::Last)?;
                Ok(t0.elapsed().as_nanos() as u64)
            };
            run(&mut rng)?;
            let samples = (0..a.reps).map(|_| run(&mut rng)).collect::<Result<Vec<_>>>()?;
            let r = TestResult { n_prompt: np, n_gen: 0, threads, samples_ns: samples };
            if !a.json {
                eprintln!("  {} t={threads}: {:.2} t/s", r.name(), mean_sd(&r.samples_ts()).0);
            }
            results.push(r);
        }
        for &ng in a.n_gen.iter().filter(|&&n| n > 0) {
            let mut cache = KvCache::new(&model.config, ng);
            let mut run = |rng: &mut Rng, n: usize| -> Result<u64> {
                cache.truncate(0);
                let mut tok = rng.token(vocab);
                let t0 = Instant::now();
                for _ in 0..n {
                    model.forward(&pool, &[tok], &mut cache, &mut ws, Logits::Last)?;
                    tok = rng.token(vocab);
                }
                Ok(t0.elapsed().as_nanos() as u64)
            };
            run(&mut rng, 1)?;
            let samples = (0..a.reps).map(|_| run(&mut rng, ng)).collect::<Result<Vec<_>>>()?;
            let r = TestResult { n_prompt: 0, n_gen: ng, threads, samples_ns: samples };
            if !a.json {
                eprintln!("  {} t={threads}: {:.2} t/s", r.name(), mean_sd(&r.samples_ts()).0);
            }
            results.push(r);
        }
    }
    let (rss_now, rss_peak) = rss();
    let isa = tern_kernels::simd::level().name();
    if a.json {
        let arr: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let ts = r.samples_ts();
                let (avg_ts, sd_ts) = mean_sd(&ts);
                let ns: Vec<f64> = r.samples_ns.iter().map(|&x| x as f64).collect();
                let (avg_ns, sd_ns) = mean_sd(&ns);
                let bpt = if r.n_gen > 0 { wbytes + kv_read_per_token(&model, r.n_gen) } else { 0 };
                serde_json::json!({
                    "build_commit": format!("tern-{}", env!("CARGO_PKG_VERSION")),
                    "cpu_info": cpu_info(),
                    "backends": "CPU",
                    "model_filename": label,
                    "model_type": format!("{} {}", model.config.model_type, layer_fmt),
                    "model_size": mbytes,
                    "model_n_params": params,
                    "n_batch": r.n_prompt.max(1),
                    "n_ubatch": r.n_prompt.max(1),
                    "n_threads": r.threads,
                    "type_k": "f32",
                    "type_v": "f32",
                    "n_prompt": r.n_prompt,
                    "n_gen": r.n_gen,
                    "n_depth": 0,
                    "test_time": format!("{:?}", std::time::SystemTime::now()),
                    "avg_ns": avg_ns as u64,
                    "stddev_ns": sd_ns as u64,
                    "avg_ts": avg_ts,
                    "stddev_ts": sd_ts,
                    "samples_ns": r.samples_ns,
                    "samples_ts": ts,
                    "isa": isa,
                    "layer_format": layer_fmt,
                    "head_format": head_fmt,
                    "weight_bytes_per_token": wbytes,
                    "bytes_per_token": bpt,
                    "achieved_gbs": bpt as f64 * avg_ts / 1e9,
                    "load_to_first_token_s": load_s,
                    "rss_after_load_bytes": rss_loaded,
                    "rss_bytes": rss_now,
                    "rss_peak_bytes": rss_peak,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
        return Ok(());
    }
    println!("| model | size | params | layers | head | isa | threads | test | t/s | bytes/tok | GB/s |");
    println!("| --- | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &results {
        let (m, sd) = mean_sd(&r.samples_ts());
        let (bpt, gbs) = if r.n_gen > 0 {
            let b = wbytes + kv_read_per_token(&model, r.n_gen);
            (human(b), format!("{:.1}", b as f64 * m / 1e9))
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "| {label} | {} | {:.2} B | {layer_fmt} | {head_fmt} | {isa} | {} | {} | {m:.2} ± {sd:.2} | {bpt} | {gbs} |",
            human(mbytes),
            params as f64 / 1e9,
            r.threads,
            r.name(),
        );
    }
    let ratio = rss_now.map(|r| r as f64 / mbytes as f64);
    eprintln!(
        "load to first token {load_s:.2} s; RSS {} (peak {}), {} of weights ({})",
        rss_now.map_or("?".into(), human),
        rss_peak.map_or("?".into(), human),
        human(mbytes),
        ratio.map_or("?".into(), |r| format!("{r:.2}×"))
    );
    Ok(())
}

/// The model to benchmark and its label.
fn load(a: &Args) -> Result<(Model, String)> {
    if let Some(name) = &a.synthetic {
        let shape = synthetic::shape(name)
            .with_context(|| format!("unknown synthetic model '{name}' (known: {})", synthetic::NAMES.join(", ")))?;
        let layers = match a.layout.as_deref() {
            None => None,
            Some(s) => Some(match parse_layout(s) {
                Some(l) => LayerFormat::Ternary(l),
                None => {
                    let t = parse_ggml(s)?;
                    match dense_of(t) {
                        Some(d) => LayerFormat::Dense(d),
                        None => LayerFormat::Quant(t),
                    }
                }
            }),
        };
        let embed = a
            .embed
            .as_deref()
            .map(|s| -> Result<EmbedFormat> {
                let t = parse_ggml(s)?;
                Ok(dense_of(t).map_or(EmbedFormat::Quant(t), EmbedFormat::Dense))
            })
            .transpose()?;
        let opts = synthetic::Options { seed: a.seed, layers, embed, threads: 0, n_layers: None, vocab: None };
        let t0 = Instant::now();
        let m = synthetic::build(name, &opts)?;
        eprintln!(
            "built synthetic {} ({}) in {:.2} s",
            shape.name,
            m.layers[0].gate.format_name(),
            t0.elapsed().as_secs_f64()
        );
        return Ok((m, format!("synthetic:{name}")));
    }
    let Some(spec) = &a.model else { bail!("give a model (-m) or --synthetic NAME") };
    let path = crate::hub_cmds::resolve_model(spec, &a.hub)?;
    let m = common::load_model(&path)?;
    let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| spec.clone());
    Ok((m, label))
}

/// Writes the synthetic model `name` to `out` as `ty` (also `tern convert synthetic:NAME`).
pub(crate) fn write_synthetic(
    name: &str,
    seed: u64,
    ty: GgmlType,
    embed: Option<GgmlType>,
    out: &std::path::Path,
) -> Result<()> {
    let t0 = Instant::now();
    let opts = synthetic::Options { seed, ..Default::default() };
    let s = synthetic::write_gguf(name, &opts, ty, embed, out)?;
    eprintln!(
        "wrote {} ({} tensors, {} of tensor data, layers {}, token_embd {}) in {:.1} s",
        out.display(),
        s.tensors,
        human(s.data_bytes),
        s.layer_type,
        s.embed_type,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--bandwidth`: best-of-N read throughput of a large buffer with 1 thread and with each `-t`.
fn bandwidth(a: &Args) -> Result<()> {
    let bytes = a.bandwidth_mib.max(1) * 1024 * 1024;
    let data: Vec<u8> = (0..bytes).map(|i| (i as u64).wrapping_mul(0x9E37_79B9) as u8).collect();
    let mut rows = Vec::new();
    let mut ts: Vec<usize> = vec![1];
    for &t in &a.threads {
        let t = threads_or_all(t);
        if !ts.contains(&t) {
            ts.push(t);
        }
    }
    for t in ts {
        let pool = ThreadPool::new(t);
        let mut best = 0f64;
        let mut samples = Vec::new();
        let mut sink = 0u64;
        for _ in 0..a.reps.max(3) + 1 {
            let t0 = Instant::now();
            sink ^= tern_kernels::membw::read_all(&pool, &data);
            let gbs = bytes as f64 / t0.elapsed().as_secs_f64() / 1e9;
            samples.push(gbs);
            best = best.max(gbs);
        }
        samples.remove(0);
        let (m, sd) = mean_sd(&samples);
        if a.json {
            rows.push(serde_json::json!({"test": "bandwidth", "n_threads": t, "buffer_bytes": bytes, "best_gbs": best, "avg_gbs": m, "stddev_gbs": sd, "checksum": sink}));
        } else {
            println!(
                "memory read ceiling, {t} thread(s), {} buffer: best {best:.1} GB/s, mean {m:.1} ± {sd:.1} GB/s",
                human(bytes as u64)
            );
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// `--head-eval`: for each head type, KL(p_f32 ‖ p_q) and top-1 agreement over the positions of the
/// text (or random tokens), plus the head's bytes and single-token GEMV time.
fn head_eval(a: &Args, model: &mut Model, src: &str, threads: usize) -> Result<()> {
    let pool = ThreadPool::new(threads);
    let vocab = model.vocab();
    let tokens: Vec<u32> = if src == "random" {
        let mut rng = Rng(a.seed ^ 0xEEAD);
        (0..a.ctx * a.chunks.max(1)).map(|_| rng.token(vocab)).collect()
    } else {
        let Some(spec) = &a.model else {
            bail!("--head-eval FILE needs -m MODEL (its tokenizer); use `random` with --synthetic")
        };
        let path = crate::hub_cmds::resolve_model(spec, &a.hub)?;
        let text = std::fs::read_to_string(src).with_context(|| format!("reading {src}"))?;
        let tok = tern_text::source::load_tokenizer(&path)?;
        tok.encode(&text, true, false)?
    };
    let mut windows: Vec<&[u32]> = tokens.chunks_exact(a.ctx.max(2)).collect();
    if a.chunks > 0 {
        windows.truncate(a.chunks);
    }
    if windows.is_empty() {
        bail!("--head-eval: fewer than {} tokens", a.ctx);
    }
    let original = model.lm_head.take();
    let base = original.as_ref().unwrap_or(&model.embed).clone();
    let reference = base.requantize(GgmlType::F32, threads, "LM head")?;
    let kinds = [HeadQuant::F16, HeadQuant::Q8, HeadQuant::I8, HeadQuant::Q6, HeadQuant::Q4K, HeadQuant::Q4];
    // Reference logits per window.
    model.lm_head = Some(reference.clone());
    let mut ws = Workspace::default();
    let mut refs: Vec<Vec<f32>> = Vec::new();
    for w in &windows {
        let mut cache = KvCache::new(&model.config, w.len());
        model.forward(&pool, w, &mut cache, &mut ws, Logits::All)?;
        refs.push(ws.logits.clone());
    }
    let log_softmax = |l: &[f32]| -> Vec<f64> {
        let m = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let s: f64 = l.iter().map(|&v| (v as f64 - m).exp()).sum();
        let ls = s.ln() + m;
        l.iter().map(|&v| v as f64 - ls).collect()
    };
    let argmax = |l: &[f32]| {
        l.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
    };
    let mut rows = Vec::new();
    let time_head = |h: &Linear| -> f64 {
        let x = vec![0.01f32; h.in_features()];
        let mut out = vec![0f32; h.out_features()];
        let mut sc = tern_model::linear::LinearScratch::default();
        h.forward(&pool, &x, &mut out, &mut sc);
        let t0 = Instant::now();
        let n = 10;
        for _ in 0..n {
            h.forward(&pool, &x, &mut out, &mut sc);
        }
        t0.elapsed().as_secs_f64() / n as f64
    };
    let ref_time = time_head(&reference);
    rows.push(serde_json::json!({"head": "f32", "type": "F32", "bytes": reference.weight_bytes(), "ms_per_token": ref_time * 1e3, "kld": 0.0, "top1": 1.0}));
    for hq in kinds {
        let t0 = Instant::now();
        let (q, ty) = if hq == HeadQuant::I8 {
            (base.to_int8(threads), "I8B".to_string())
        } else {
            let ty = hq.ggml_for(base.in_features()).unwrap_or(GgmlType::F32);
            (base.requantize(ty, threads, "LM head")?, ty.to_string())
        };
        let quant_s = t0.elapsed().as_secs_f64();
        let ht = time_head(&q);
        model.lm_head = Some(q);
        let (mut kld, mut agree, mut n) = (0f64, 0usize, 0usize);
        for (w, r) in windows.iter().zip(&refs) {
            let mut cache = KvCache::new(&model.config, w.len());
            model.forward(&pool, w, &mut cache, &mut ws, Logits::All)?;
            for (lr, lq) in r.chunks_exact(vocab).zip(ws.logits.chunks_exact(vocab)) {
                let (pr, pq) = (log_softmax(lr), log_softmax(lq));
                kld += pr.iter().zip(&pq).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
                agree += usize::from(argmax(lr) == argmax(lq));
                n += 1;
            }
        }
        let h = model.lm_head.as_ref().map_or(0, |h| h.weight_bytes());
        rows.push(serde_json::json!({
            "head": hq.name(),
            "type": ty,
            "bytes": h,
            "ms_per_token": ht * 1e3,
            "quantize_s": quant_s,
            "kld": kld / n.max(1) as f64,
            "top1": agree as f64 / n.max(1) as f64,
            "positions": n,
        }));
    }
    model.lm_head = original;
    let label = a.model.clone().or_else(|| a.synthetic.as_ref().map(|s| format!("synthetic:{s}"))).unwrap_or_default();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"model": label, "source": src, "threads": threads, "heads": rows})
            )?
        );
    } else {
        println!("head quality on {label} ({src}, {} windows of {}):", windows.len(), a.ctx);
        println!("| head | type | bytes | ms/token | KLD vs f32 | top-1 agreement |");
        println!("| --- | --- | ---: | ---: | ---: | ---: |");
        for r in &rows {
            println!(
                "| {} | {} | {} | {:.2} | {:.6} | {:.2}% |",
                r["head"].as_str().unwrap_or("?"),
                r["type"].as_str().unwrap_or("?"),
                human(r["bytes"].as_u64().unwrap_or(0)),
                r["ms_per_token"].as_f64().unwrap_or(0.0),
                r["kld"].as_f64().unwrap_or(0.0),
                100.0 * r["top1"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
