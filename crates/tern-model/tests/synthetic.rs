//! Synthetic models: the GGUF files `write_gguf` writes load (through the ordinary GGUF loader) into
//! exactly the model `build` makes in memory from the same seed: identical logits, bit for bit, for a
//! BitNet shape as TQ2_0 and TQ1_0 and for a Llama shape (whose Q/K rows the file stores permuted for
//! llama.cpp), and the ternary layouts T2 / TQ2_0-in-place / T1 give identical logits too.

use tern_kernels::dense::DenseDType;
use tern_kernels::ternary::TernaryLayout;
use tern_kernels::ThreadPool;
use tern_model::linear::LinearWeight;
use tern_model::synthetic::{self, EmbedFormat, GgmlType, LayerFormat, Options};
use tern_model::{KvCache, Logits, Model, Workspace};

fn logits(m: &Model, tokens: &[u32]) -> Vec<u32> {
    let pool = ThreadPool::new(2);
    let mut cache = KvCache::new(&m.config, tokens.len());
    let mut ws = Workspace::default();
    m.forward(&pool, tokens, &mut cache, &mut ws, Logits::All).unwrap();
    assert!(ws.logits.iter().all(|v| v.is_finite()));
    ws.logits.iter().map(|v| v.to_bits()).collect()
}

fn opts(layers: Option<LayerFormat>) -> Options {
    Options {
        seed: 3,
        layers,
        embed: Some(EmbedFormat::Dense(DenseDType::BF16)),
        threads: 2,
        n_layers: Some(2),
        vocab: Some(300),
    }
}

const TOKENS: [u32; 5] = [1, 299, 17, 42, 0];

#[test]
fn bitnet_gguf_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mem = synthetic::build("bitnet-2b4t", &opts(None)).unwrap();
    let want = logits(&mem, &TOKENS);
    for ty in [GgmlType::TQ2_0, GgmlType::TQ1_0] {
        let path = dir.path().join(format!("b-{ty}.gguf"));
        let s = synthetic::write_gguf("bitnet-2b4t", &opts(None), ty, Some(GgmlType::BF16), &path).unwrap();
        assert_eq!((s.layer_type, s.embed_type), (ty, GgmlType::BF16));
        let m = tern_model::load_gguf::load_gguf(&path, None).unwrap();
        assert_eq!(m.layers.len(), 2);
        assert!(matches!(m.layers[0].q.weight, LinearWeight::Ternary { .. }), "{ty} loads as ternary");
        assert_eq!(logits(&m, &TOKENS), want, "{ty}");
    }
}

#[test]
fn ternary_layouts_agree() {
    let want = logits(&synthetic::build("bitnet-2b4t", &opts(None)).unwrap(), &TOKENS);
    for lay in [TernaryLayout::Tq2, TernaryLayout::T1] {
        let m = synthetic::build("bitnet-2b4t", &opts(Some(LayerFormat::Ternary(lay)))).unwrap();
        assert_eq!(m.layers[1].down.format_name(), lay.name());
        assert_eq!(logits(&m, &TOKENS), want, "{lay:?}");
    }
}

#[test]
fn llama_gguf_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(Some(LayerFormat::Dense(DenseDType::F16)));
    let want = logits(&synthetic::build("llama-1b", &o).unwrap(), &TOKENS);
    let path = dir.path().join("l.gguf");
    synthetic::write_gguf("llama-1b", &o, GgmlType::F16, Some(GgmlType::BF16), &path).unwrap();
    let m = tern_model::load_gguf::load_gguf(&path, None).unwrap();
    assert_eq!(logits(&m, &TOKENS), want);
}

#[test]
fn unknown_names_and_bad_formats_are_errors() {
    assert!(synthetic::build("nope", &Options::default()).is_err());
    let e = synthetic::build("llama-1b", &opts(Some(LayerFormat::Ternary(TernaryLayout::T2)))).unwrap_err();
    assert!(e.to_string().contains("BitNet"), "{e}");
}
