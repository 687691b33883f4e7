//! Logits of every HF fixture (tests/fixtures/hf, made by tools/fixtures/make_hf_fixtures.py with
//! transformers 5.17 in float32) against our forward pass: for every position,
//! ‖ours − ref‖₂ / ‖ref‖₂ ≤ 1e-3 and our argmax inside the reference top-3. Also checks that
//! prefill + token-by-token decode through the KV cache gives the same logits as one full pass.

mod common;

use common::{argmax, fixtures_root, reference, rel_l2, top3};
use tern_kernels::ThreadPool;
use tern_model::load::load_hf_dir;
use tern_model::{KvCache, Logits, SeqInput, Workspace};

/// Runs one fixture; returns the worst per-position relative L2 error.
fn check(name: &str) -> f64 {
    let dir = fixtures_root().join(name);
    let model = load_hf_dir(&dir, None).unwrap_or_else(|e| panic!("{name}: load failed: {e}"));
    let r = reference(&dir);
    assert_eq!(model.vocab(), r.vocab, "{name}: vocab");
    let pool = ThreadPool::new(2);
    let mut cache = KvCache::new(&model.config, r.ids.len());
    let mut ws = Workspace::default();
    model.forward(&pool, &r.ids, &mut cache, &mut ws, Logits::All).unwrap();
    let v = r.vocab;
    let mut worst = 0f64;
    for t in 0..r.ids.len() {
        let ours = &ws.logits[t * v..(t + 1) * v];
        let want = &r.logits[t * v..(t + 1) * v];
        let e = rel_l2(ours, want);
        worst = worst.max(e);
        assert!(e <= 1e-3, "{name}: position {t}: relative L2 error {e:.3e} > 1e-3");
        let am = argmax(ours);
        assert!(
            top3(want).contains(&am),
            "{name}: position {t}: our argmax {am} not in reference top-3 {:?}",
            top3(want)
        );
    }
    eprintln!("{name}: worst relative L2 error over {} positions = {worst:.3e}", r.ids.len());
    worst
}

/// Prefill the first half, then decode one token at a time: same logits as the full pass.
fn check_incremental(name: &str) {
    let dir = fixtures_root().join(name);
    let model = load_hf_dir(&dir, None).unwrap();
    let r = reference(&dir);
    let pool = ThreadPool::new(2);
    let mut ws = Workspace::default();
    let mut full_cache = KvCache::new(&model.config, r.ids.len());
    model.forward(&pool, &r.ids, &mut full_cache, &mut ws, Logits::All).unwrap();
    let full = ws.logits.clone();
    let v = r.vocab;
    let mut cache = KvCache::new(&model.config, r.ids.len());
    let half = r.ids.len() / 2;
    model.forward(&pool, &r.ids[..half], &mut cache, &mut ws, Logits::Last).unwrap();
    assert!(rel_l2(&ws.logits, &full[(half - 1) * v..half * v]) < 1e-5, "{name}: prefill last row");
    for t in half..r.ids.len() {
        model.forward(&pool, &r.ids[t..t + 1], &mut cache, &mut ws, Logits::Last).unwrap();
        let e = rel_l2(&ws.logits, &full[t * v..(t + 1) * v]);
        assert!(e < 1e-5, "{name}: decode position {t}: {e:.3e}");
    }
}

macro_rules! fixture_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            check(stringify!($name));
        }
    )*};
}

fixture_tests!(
    bitnet_autobitlinear_packed,
    bitnet_autobitlinear_packed_sharded,
    llama_bitlinear_bf16,
    bitnet_online_latent,
    llama_llama3_rope_bf16,
    qwen2_bias,
    qwen3_tied,
    llama_rope_linear,
    llama_rope_dynamic,
    llama_rope_yarn,
    mistral_gelu,
    gemma3_text_swa,
);

#[test]
fn incremental_decode_matches_full_pass() {
    // (Dynamic RoPE is excluded: like transformers, it rescales with the sequence length seen so far.)
    for name in [
        "bitnet_autobitlinear_packed",
        "llama_bitlinear_bf16",
        "qwen2_bias",
        "qwen3_tied",
        "llama_llama3_rope_bf16",
        "mistral_gelu",
        "llama_rope_yarn",
        "gemma3_text_swa",
    ] {
        check_incremental(name);
    }
}

/// Continuous batching: three sequences at different positions (one mid-prefill chunk, one decoding,
/// one starting) advanced in one `forward_batch` call give the same logits as running each alone.
fn check_batched(name: &str) {
    let dir = fixtures_root().join(name);
    let model = load_hf_dir(&dir, None).unwrap();
    let r = reference(&dir);
    let (pool, v, n) = (ThreadPool::new(2), r.vocab, r.ids.len());
    let mut ws = Workspace::default();
    let mut full_cache = KvCache::new(&model.config, n);
    model.forward(&pool, &r.ids, &mut full_cache, &mut ws, Logits::All).unwrap();
    let full = ws.logits.clone();
    // Sequence a has consumed 5 tokens and now takes 3; b has consumed n-2 and takes 1; c starts with 4.
    let mut ca = KvCache::new(&model.config, n);
    let mut cb = KvCache::new(&model.config, n);
    let mut cc = KvCache::new(&model.config, n);
    let mut empty = KvCache::new(&model.config, n);
    model.forward(&pool, &r.ids[..5], &mut ca, &mut ws, Logits::Last).unwrap();
    model.forward(&pool, &r.ids[..n - 2], &mut cb, &mut ws, Logits::Last).unwrap();
    for which in [Logits::All, Logits::Last] {
        let mut seqs = [
            SeqInput { tokens: &r.ids[5..8], cache: &mut ca },
            SeqInput { tokens: &[], cache: &mut empty },
            SeqInput { tokens: &r.ids[n - 2..n - 1], cache: &mut cb },
            SeqInput { tokens: &r.ids[..4], cache: &mut cc },
        ];
        model.forward_batch(&pool, &mut seqs, &mut ws, which).unwrap();
        let want: Vec<usize> = match which {
            Logits::All => vec![5, 6, 7, n - 2, 0, 1, 2, 3],
            Logits::Last => vec![7, n - 2, 3],
        };
        assert_eq!(ws.logits.len(), want.len() * v, "{name}: rows");
        for (row, &t) in want.iter().enumerate() {
            let e = rel_l2(&ws.logits[row * v..(row + 1) * v], &full[t * v..(t + 1) * v]);
            assert!(e < 1e-5, "{name} {which:?}: row {row} (position {t}): {e:.3e}");
        }
        assert_eq!((ca.len(), cb.len(), cc.len(), empty.len()), (8, n - 1, 4, 0));
        // Roll back for the second round.
        ca.truncate(5);
        cb.truncate(n - 2);
        cc.truncate(0);
    }
    // A sequence that does not fit rejects the whole batch before touching any cache.
    let mut small = KvCache::new(&model.config, 2);
    let before = ca.len();
    let err = model
        .forward_batch(
            &pool,
            &mut [
                SeqInput { tokens: &r.ids[..1], cache: &mut ca },
                SeqInput { tokens: &r.ids[..3], cache: &mut small },
            ],
            &mut ws,
            Logits::Last,
        )
        .unwrap_err();
    assert!(err.to_string().contains("context full"), "{err}");
    assert_eq!((ca.len(), small.len()), (before, 0));
}

#[test]
fn batched_forward_matches_single_sequences() {
    for name in ["bitnet_autobitlinear_packed", "qwen2_bias", "llama_llama3_rope_bf16", "gemma3_text_swa"] {
        check_batched(name);
    }
}

#[test]
fn every_fixture_dir_is_tested() {
    let listed = [
        "bitnet_autobitlinear_packed",
        "bitnet_autobitlinear_packed_sharded",
        "llama_bitlinear_bf16",
        "bitnet_online_latent",
        "llama_llama3_rope_bf16",
        "qwen2_bias",
        "qwen3_tied",
        "llama_rope_linear",
        "llama_rope_dynamic",
        "llama_rope_yarn",
        "mistral_gelu",
        "gemma3_text_swa",
    ];
    for e in std::fs::read_dir(fixtures_root()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let n = e.file_name().to_string_lossy().to_string();
            assert!(listed.contains(&n.as_str()), "fixture {n} has no test");
        }
    }
}
