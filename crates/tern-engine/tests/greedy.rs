//! Greedy generation against transformers: on every HF fixture, the first generated token equals
//! the argmax of transformers' logits at the last prompt position, and generation through the KV
//! cache reproduces the full-pass argmax chain.

use std::path::Path;
use tern_engine::{Generator, Sampler, SamplingParams, StepControl};
use tern_formats::SafetensorsSet;
use tern_kernels::ThreadPool;
use tern_model::load::load_hf_dir;
use tern_model::{KvCache, Logits, Workspace};

fn argmax(v: &[f32]) -> u32 {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b }) as u32
}

#[test]
fn greedy_matches_reference_argmax_and_full_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf");
    let pool = ThreadPool::new(2);
    for name in [
        "bitnet_autobitlinear_packed",
        "llama_bitlinear_bf16",
        "bitnet_online_latent",
        "qwen2_bias",
        "qwen3_tied",
        "mistral_gelu",
    ] {
        let dir = root.join(name);
        let model = load_hf_dir(&dir, None).unwrap();
        let r = SafetensorsSet::open_files(&[dir.join("reference.safetensors")]).unwrap();
        let ids: Vec<u32> = r.get("input_ids").unwrap().to_i64().unwrap().iter().map(|&x| x as u32).collect();
        let logits = r.get("logits").unwrap().to_f32().unwrap();
        let v = model.vocab();
        let prompt = &ids[..ids.len() / 2];
        let want_first = argmax(&logits[(prompt.len() - 1) * v..prompt.len() * v]);

        let mut gen = Generator::new(&model, &pool, 64);
        let mut sampler = Sampler::new(SamplingParams::greedy());
        let out = gen.generate(prompt, 8, &[], &mut sampler, |_| StepControl::Continue).unwrap();
        assert_eq!(out.tokens[0], want_first, "{name}: first greedy token vs transformers argmax");

        // The chain must equal repeated full passes (no cache).
        let mut seq = prompt.to_vec();
        for &t in &out.tokens {
            let mut cache = KvCache::new(&model.config, seq.len());
            let mut ws = Workspace::default();
            model.forward(&pool, &seq, &mut cache, &mut ws, Logits::Last).unwrap();
            assert_eq!(argmax(&ws.logits), t, "{name}: cached decode diverged from full pass");
            seq.push(t);
        }
    }
}

#[test]
fn stops_on_eos_and_reuses_prefix() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf/qwen2_bias");
    let model = load_hf_dir(&dir, None).unwrap();
    let pool = ThreadPool::new(2);
    let mut gen = Generator::new(&model, &pool, 64);
    let mut s = Sampler::new(SamplingParams::greedy());
    let prompt = [5u32, 17, 42, 7];
    let free = gen.generate(&prompt, 6, &[], &mut s, |_| StepControl::Continue).unwrap();
    // Declaring the 3rd generated token as EOS stops right before it.
    gen.reset();
    let eos = [free.tokens[2]];
    let stopped = gen.generate(&prompt, 6, &eos, &mut s, |_| StepControl::Continue).unwrap();
    if !free.tokens[..2].contains(&free.tokens[2]) {
        assert_eq!(stopped.tokens, free.tokens[..2].to_vec());
        assert_eq!(stopped.finish, tern_engine::FinishReason::Eos);
    }
    // A longer prompt sharing the prefix only prefills the new part.
    let mut longer = prompt.to_vec();
    longer.extend_from_slice(&stopped.tokens);
    longer.push(3);
    let kept = gen.reuse_prefix(&longer);
    assert_eq!(kept, prompt.len() + stopped.tokens.len());
    let out = gen.generate(&longer, 2, &[], &mut s, |_| StepControl::Continue).unwrap();
    assert_eq!(out.prefilled_tokens, 1);
    // And the result equals a fresh run.
    let mut fresh = Generator::new(&model, &pool, 64);
    let f2 = fresh.generate(&longer, 2, &[], &mut s, |_| StepControl::Continue).unwrap();
    assert_eq!(out.tokens, f2.tokens);
}
