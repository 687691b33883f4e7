//! End-to-end CUDA benchmark of a whole model (feature `cuda`): a random-weight model of a real
//! shape from [`tern_model::synthetic`] (default `bitnet-2b4t`, microsoft/bitnet-b1.58-2B-4T's
//! shape), run through the public API (`Workspace::cuda`, `Model::forward`, `Model::forward_batch`),
//! so every number includes the per-call host work and the logits download.
//!
//! Measures, in one process on one GPU:
//! * the device copy ceiling (cuMemcpyDtoD and a 16-byte copy kernel over 2 × 1 GiB, bytes read +
//!   written, CUDA events, median of 10);
//! * a CPU-vs-CUDA sanity check on the real shape (16-token prefill, then 4 decode steps, which go
//!   through the eager, capture and replay paths of the decode graphs): relative L2 and top-1;
//! * decode at batch 1 from context 128 to 512 (wall clock per `forward` call of one token, median
//!   and mean) and the weight bytes read per token / step time (GB/s);
//! * prefill pp512 (one 512-token `forward`, last-row logits), median of 5;
//! * 64 concurrent sequences: one batched prefill of 64 × 128 tokens, then 128 decode steps of
//!   `forward_batch` with 64 × 1 tokens (aggregate generated tokens / s);
//! * decode at batch 1 again with the LM head stored as Q6_K and Q4_0 (`--heads`), since the bf16
//!   head (657 MB) is more than the 30 ternary layers (521 MB).
//!
//! Usage: `cuda_model_bench [--model NAME] [--heads keep,q6,q4] [--only decode|all] [--seqs 64]`.
//! Prints a markdown table last.

#[cfg(not(feature = "cuda"))]
fn main() {
    eprintln!(
        "cuda_model_bench needs the `cuda` feature: cargo run -p tern-model --features cuda --example cuda_model_bench"
    );
}

#[cfg(feature = "cuda")]
fn main() {
    if let Err(e) = bench::run() {
        eprintln!("cuda_model_bench: {e}");
        std::process::exit(1);
    }
}

#[cfg(feature = "cuda")]
mod bench {
    use std::time::Instant;
    use tern_kernels::ThreadPool;
    use tern_model::linear::{quantize_head, HeadQuant};
    use tern_model::synthetic::{self, Options};
    use tern_model::{KvCache, Logits, Model, SeqInput, Workspace};

    type Res<T> = Result<T, Box<dyn std::error::Error>>;

    struct Args {
        model: String,
        heads: Vec<HeadQuant>,
        only_decode: bool,
        seqs: usize,
        profile: bool,
    }

    fn args() -> Res<Args> {
        let mut a = Args {
            model: "bitnet-2b4t".into(),
            heads: vec![HeadQuant::Q6, HeadQuant::Q4],
            only_decode: false,
            seqs: 64,
            profile: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(k) = it.next() {
            let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
            match k.as_str() {
                "--model" => a.model = v()?,
                "--heads" => {
                    a.heads = v()?
                        .split(',')
                        .filter(|s| !s.is_empty() && *s != "keep")
                        .map(|s| HeadQuant::parse(s).ok_or_else(|| format!("unknown head format {s}")))
                        .collect::<Result<_, _>>()?
                }
                "--only" => a.only_decode = v()? == "decode",
                "--seqs" => a.seqs = v()?.parse()?,
                "--profile" => a.profile = true,
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        Ok(a)
    }

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        v[v.len() / 2]
    }

    fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (num / den.max(1e-30)).sqrt()
    }

    fn argmax(v: &[f32]) -> usize {
        v.iter().enumerate().fold(0, |b, (i, x)| if *x > v[b] { i } else { b })
    }

    /// Deterministic pseudo-random token ids below `vocab`.
    fn ids(n: usize, seed: u64, vocab: usize) -> Vec<u32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % (vocab as u64 - 1000) + 500) as u32
            })
            .collect()
    }

    /// Bytes of weights a decode step reads (every projection and the head; one embedding row).
    fn weight_bytes(m: &Model) -> usize {
        let layers: usize = m
            .layers
            .iter()
            .map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].iter().map(|x| x.weight_bytes()).sum::<usize>())
            .sum();
        layers + m.lm_head.as_ref().unwrap_or(&m.embed).weight_bytes()
    }

    struct Row {
        what: String,
        value: String,
        note: String,
    }

    fn row(rows: &mut Vec<Row>, what: impl Into<String>, value: impl Into<String>, note: impl Into<String>) {
        let r = Row { what: what.into(), value: value.into(), note: note.into() };
        println!("{} = {} ({})", r.what, r.value, r.note);
        rows.push(r);
    }

    /// Copy ceilings on GPU 0: (cuMemcpyDtoD GB/s, copy kernel GB/s), read + write.
    fn copy_ceiling() -> Res<(f64, f64)> {
        let dev = tern_cuda::CudaDevice::new(0)?;
        let n = 1usize << 28; // 1 GiB of f32
        let src = dev.alloc::<f32>(n)?;
        let mut dst = dev.alloc::<f32>(n)?;
        let (e0, e1) = (dev.event()?, dev.event()?);
        let time = |f: &mut dyn FnMut() -> tern_cuda::Result<()>| -> Res<f64> {
            f()?;
            let mut t = Vec::new();
            for _ in 0..10 {
                dev.record(&e0)?;
                f()?;
                dev.record(&e1)?;
                dev.synchronize()?;
                t.push(e0.elapsed_ms(&e1)? as f64 / 1e3);
            }
            Ok(2.0 * (n * 4) as f64 / median(&mut t) / 1e9)
        };
        let memcpy = time(&mut || dev.copy(&src, &mut dst))?;
        let kernel = time(&mut || dev.copy_probe(&src, &mut dst))?;
        Ok((memcpy, kernel))
    }

    /// Decode at batch 1 from context `from` to `to`: (median s per token, mean s per token).
    fn decode_b1(m: &Model, ws: &mut Workspace, pool: &ThreadPool, from: usize, to: usize) -> Res<(f64, f64)> {
        let v = m.vocab();
        let prompt = ids(from, 7, v);
        let mut cache = KvCache::new(&m.config, to + 8);
        m.forward(pool, &prompt, &mut cache, ws, Logits::Last)?;
        let toks = ids(to - from, 11, v);
        let mut t = Vec::with_capacity(toks.len());
        let t_all = Instant::now();
        for tok in &toks {
            let t0 = Instant::now();
            m.forward(pool, std::slice::from_ref(tok), &mut cache, ws, Logits::Last)?;
            t.push(t0.elapsed().as_secs_f64());
        }
        let mean = t_all.elapsed().as_secs_f64() / toks.len() as f64;
        Ok((median(&mut t), mean))
    }

    /// `--profile`: a short run for `ncu` (tools/cuda/ncu_summary.py): phases separated by one
    /// `copy_probe` kernel each: 4 decode steps at batch 1 (eager, eager, capture + replay,
    /// replay), 3 steps of 64 sequences, one 512-token prefill.
    fn profile(a: &Args, pool: &ThreadPool) -> Res<()> {
        let m = synthetic::build(&a.model, &Options { seed: 1, ..Options::default() })?;
        let mut ws = Workspace::cuda(&m, 0)?;
        let v = m.vocab();
        let dev = tern_cuda::CudaDevice::new(0)?;
        let src = dev.alloc::<f32>(1024)?;
        let mut dst = dev.alloc::<f32>(1024)?;
        let mut marker = || -> Res<()> {
            dev.copy_probe(&src, &mut dst)?;
            dev.synchronize()?;
            Ok(())
        };
        marker()?;
        let toks = ids(4, 9, v);
        let mut cache = KvCache::new(&m.config, 64);
        for t in &toks {
            m.forward(pool, std::slice::from_ref(t), &mut cache, &mut ws, Logits::Last)?;
        }
        marker()?;
        let n = a.seqs;
        let mut caches: Vec<KvCache> = (0..n).map(|_| KvCache::new(&m.config, 16)).collect();
        for s in 0..3 {
            let toks = ids(n, 50 + s, v);
            let mut seqs: Vec<SeqInput<'_>> = caches
                .iter_mut()
                .zip(&toks)
                .map(|(c, t)| SeqInput { tokens: std::slice::from_ref(t), cache: c })
                .collect();
            m.forward_batch(pool, &mut seqs, &mut ws, Logits::Last)?;
        }
        marker()?;
        let prompt = ids(512, 5, v);
        let mut cache = KvCache::new(&m.config, 512);
        m.forward(pool, &prompt, &mut cache, &mut ws, Logits::Last)?;
        marker()?;
        Ok(())
    }

    pub fn run() -> Res<()> {
        let a = args()?;
        let pool = ThreadPool::new(std::thread::available_parallelism().map_or(4, |n| n.get()));
        if a.profile {
            return profile(&a, &pool);
        }
        let mut rows = Vec::new();
        let (memcpy, kernel) = copy_ceiling()?;
        row(&mut rows, "device copy, cuMemcpyDtoD", format!("{memcpy:.0} GB/s"), "2 x 1 GiB, read + write");
        row(&mut rows, "device copy, 16-byte kernel", format!("{kernel:.0} GB/s"), "same buffers");
        let ceiling = memcpy.max(kernel);

        let t0 = Instant::now();
        let mut m = synthetic::build(&a.model, &Options { seed: 1, ..Options::default() })?;
        eprintln!("built synthetic {} in {:.1} s", a.model, t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let mut ws = Workspace::cuda(&m, 0)?;
        eprintln!("uploaded to {} in {:.1} s", ws.device_name().unwrap_or("?"), t0.elapsed().as_secs_f64());
        let v = m.vocab();

        // CPU vs CUDA on the real shape: prefill 16, then 4 decode steps (eager, capture, replays).
        {
            let prompt = ids(20, 3, v);
            let mut cpu_ws = Workspace::default();
            let mut cc = KvCache::new(&m.config, 64);
            let mut gc = KvCache::new(&m.config, 64);
            let (mut worst, mut agree) = (0f64, 0);
            for (i, chunk) in [&prompt[..16], &prompt[16..17], &prompt[17..18], &prompt[18..19], &prompt[19..20]]
                .into_iter()
                .enumerate()
            {
                m.forward(&pool, chunk, &mut cc, &mut cpu_ws, Logits::Last)?;
                m.forward(&pool, chunk, &mut gc, &mut ws, Logits::Last)?;
                let e = rel_l2(&ws.logits, &cpu_ws.logits);
                let same = argmax(&ws.logits) == argmax(&cpu_ws.logits);
                eprintln!("check step {i}: rel L2 {e:.2e}, top-1 equal {same}");
                worst = worst.max(e);
                agree += usize::from(same);
            }
            row(
                &mut rows,
                "CPU vs CUDA (16-token prefill + 4 decode steps)",
                format!("{worst:.1e}"),
                format!("worst rel L2; top-1 equal {agree}/5"),
            );
        }

        let bytes = weight_bytes(&m);
        let (med, mean) = decode_b1(&m, &mut ws, &pool, 128, 512)?;
        row(
            &mut rows,
            "decode b1, ctx 128->512, bf16 head",
            format!("{:.0} tok/s", 1.0 / med),
            format!(
                "median {:.0} us/token (mean {:.0} tok/s); {:.0} MB weights/token = {:.0} GB/s = {:.0}% of copy",
                med * 1e6,
                1.0 / mean,
                bytes as f64 / 1e6,
                bytes as f64 / med / 1e9,
                100.0 * bytes as f64 / med / 1e9 / ceiling
            ),
        );

        if !a.only_decode {
            // pp512.
            let prompt = ids(512, 5, v);
            let mut cache = KvCache::new(&m.config, 1024);
            let mut t = Vec::new();
            for i in 0..6 {
                cache.truncate(0);
                let t0 = Instant::now();
                m.forward(&pool, &prompt, &mut cache, &mut ws, Logits::Last)?;
                if i > 0 {
                    t.push(t0.elapsed().as_secs_f64());
                }
            }
            let med = median(&mut t);
            row(
                &mut rows,
                "prefill pp512",
                format!("{:.0} tok/s", 512.0 / med),
                format!("median {:.2} ms per 512-token call", med * 1e3),
            );
            drop(cache);

            // 64 concurrent sequences.
            let n = a.seqs;
            let ctx = 128;
            let steps = 128;
            let mut caches: Vec<KvCache> = (0..n).map(|_| KvCache::new(&m.config, ctx + steps + 8)).collect();
            let prompts: Vec<Vec<u32>> = (0..n).map(|i| ids(ctx, 100 + i as u64, v)).collect();
            let t0 = Instant::now();
            {
                let mut seqs: Vec<SeqInput<'_>> =
                    caches.iter_mut().zip(&prompts).map(|(c, p)| SeqInput { tokens: p, cache: c }).collect();
                m.forward_batch(&pool, &mut seqs, &mut ws, Logits::Last)?;
            }
            let pf = t0.elapsed().as_secs_f64();
            row(
                &mut rows,
                format!("batched prefill {n} x {ctx}"),
                format!("{:.0} tok/s", (n * ctx) as f64 / pf),
                format!("one forward_batch call, {:.1} ms (first call: includes allocation)", pf * 1e3),
            );
            let next: Vec<Vec<u32>> = (0..steps).map(|s| ids(n, 1000 + s as u64, v)).collect();
            let mut t = Vec::with_capacity(steps);
            let t_all = Instant::now();
            for toks in &next {
                let t0 = Instant::now();
                let mut seqs: Vec<SeqInput<'_>> = caches
                    .iter_mut()
                    .zip(toks)
                    .map(|(c, tok)| SeqInput { tokens: std::slice::from_ref(tok), cache: c })
                    .collect();
                m.forward_batch(&pool, &mut seqs, &mut ws, Logits::Last)?;
                t.push(t0.elapsed().as_secs_f64());
            }
            let mean = t_all.elapsed().as_secs_f64() / steps as f64;
            let med = median(&mut t);
            row(
                &mut rows,
                format!("decode {n} sequences, ctx {ctx}->{}", ctx + steps),
                format!("{:.0} tok/s", n as f64 / med),
                format!("aggregate; median {:.2} ms per step (mean {:.0} tok/s)", med * 1e3, n as f64 / mean),
            );
            drop(caches);
        }

        for hq in &a.heads {
            drop(ws);
            let t0 = Instant::now();
            quantize_head(&mut m, *hq, pool.threads())?;
            eprintln!("head -> {} in {:.1} s", hq.name(), t0.elapsed().as_secs_f64());
            ws = Workspace::cuda(&m, 0)?;
            let bytes = weight_bytes(&m);
            let (med, mean) = decode_b1(&m, &mut ws, &pool, 128, 512)?;
            row(
                &mut rows,
                format!("decode b1, ctx 128->512, {} head", hq.name()),
                format!("{:.0} tok/s", 1.0 / med),
                format!(
                    "median {:.0} us/token (mean {:.0} tok/s); {:.0} MB/token = {:.0} GB/s",
                    med * 1e6,
                    1.0 / mean,
                    bytes as f64 / 1e6,
                    bytes as f64 / med / 1e9
                ),
            );
        }

        println!();
        println!("| {} on {} | value | notes |", a.model, ws.device_name().unwrap_or("?"));
        println!("|---|---|---|");
        for r in &rows {
            println!("| {} | {} | {} |", r.what, r.value, r.note);
        }
        Ok(())
    }
}
