//! Real GGUF files parse without error and agree with gguf-py (tests/data/real_files.json, made by
//! tools/gguf/make_goldens.py): SmolLM2-135M-Instruct Q4_1 (`tools/testdata/fetch.sh smollm2`), and
//! llama.cpp's vocabulary-only GGUFs models/ggml-vocab-*.gguf (`tools/testdata/fetch.sh llamacpp`),
//! which include a GGUF v2 file. Missing assets fail with the command that fetches them.

mod common;

use serde_json::Value as J;
use tern_gguf::{GgmlType, GgufFile};

fn check_summary(f: &GgufFile, s: &J, what: &str) {
    let m = f.metadata();
    assert_eq!(u64::from(f.version()), s["version"].as_u64().unwrap(), "{what}: version");
    assert_eq!(m.len() as u64, s["n_kv"].as_u64().unwrap(), "{what}: n_kv");
    assert_eq!(f.tensors().len() as u64, s["n_tensors"].as_u64().unwrap(), "{what}: n_tensors");
    let keys: Vec<&str> = s["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(m.keys().collect::<Vec<_>>(), keys, "{what}: key order");
    let arch = s["architecture"].as_str().unwrap();
    assert_eq!(f.architecture(), Some(arch), "{what}: architecture");
    assert_eq!(m.get_str("general.architecture").unwrap(), arch);
    if let Some(n) = s["block_count"].as_u64() {
        assert_eq!(u64::from(m.get_u32(&format!("{arch}.block_count")).unwrap()), n, "{what}: block_count");
    }
    if let Some(t) = s["tokenizer_model"].as_str() {
        assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), t, "{what}: tokenizer model");
    }
    let n_tokens = s["n_tokens"].as_u64().unwrap() as usize;
    if n_tokens > 0 {
        let toks = m.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(toks.len(), n_tokens, "{what}: token count");
        let first: Vec<&str> = s["first_tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(&toks[..first.len()], &first[..], "{what}: first tokens");
        assert_eq!(toks.last().copied(), s["last_token"].as_str(), "{what}: last token");
    }
    assert_eq!(f.alignment(), s["alignment"].as_u64().unwrap(), "{what}: alignment");
    if !f.tensors().is_empty() {
        assert_eq!(f.data_offset(), s["data_offset"].as_u64().unwrap(), "{what}: data offset");
    }
}

#[test]
fn smollm2_q4_1() {
    let path = common::require_asset("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2");
    let golden = common::read_json("real_files.json");
    let s = &golden["smollm2"];
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    check_summary(&f, s, "SmolLM2");
    let m = f.metadata();
    assert_eq!(m.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(m.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(f.tensors().len(), 272);

    for (t, jt) in f.tensors().iter().zip(s["first_tensors"].as_array().unwrap()) {
        assert_eq!(t.name, jt["name"].as_str().unwrap());
        let dims: Vec<u64> = jt["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(t.dims, dims, "{}", t.name);
        assert_eq!(t.ggml_type.name(), jt["type"].as_str().unwrap(), "{}", t.name);
        assert_eq!(t.n_bytes, jt["n_bytes"].as_u64().unwrap(), "{}", t.name);
    }
    let mut types: Vec<GgmlType> = f.tensors().iter().map(|t| t.ggml_type).collect();
    types.sort_by_key(|t| t.id());
    types.dedup();
    assert_eq!(types, vec![GgmlType::F32, GgmlType::Q4_1, GgmlType::Q8_0]);

    // Dequantized values of real tensors (Q8_0, Q4_1, F32) equal gguf-py's, bitwise, at 1024 points each.
    let samples = s["dequant_samples"].as_object().unwrap();
    assert!(samples.len() >= 4);
    for (name, sj) in samples {
        let t = f.require_tensor(name).unwrap();
        assert_eq!(t.ggml_type.name(), sj["type"].as_str().unwrap());
        let all = f.dequantize_tensor(t).unwrap();
        assert_eq!(all.len() as u64, sj["n"].as_u64().unwrap());
        let stride = sj["stride"].as_u64().unwrap() as usize;
        let want = common::hex(sj["values_hex"].as_str().unwrap());
        for (k, c) in want.chunks_exact(4).enumerate() {
            let w = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let got = all[k * stride];
            assert_eq!(got.to_bits(), w.to_bits(), "{name}[{}]: ours {got} vs gguf-py {w}", k * stride);
        }
    }
}

#[test]
fn llama_cpp_vocab_files() {
    let dir = common::require_asset("llama-cpp-python/vendor/llama.cpp/models", "llamacpp");
    let golden = common::read_json("real_files.json");
    let vocab = golden["vocab"].as_object().unwrap();
    assert!(vocab.len() >= 15, "real_files.json lists only {} vocab files", vocab.len());
    let mut versions = std::collections::BTreeSet::new();
    for (name, s) in vocab {
        let path = dir.join(name);
        assert!(path.exists(), "{} missing: re-run tools/testdata/fetch.sh llamacpp", path.display());
        let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        check_summary(&f, s, name);
        versions.insert(f.version());
    }
    assert!(versions.contains(&2) && versions.contains(&3), "expected both GGUF v2 and v3 files, got {versions:?}");
    // Spot checks read independently with gguf-py.
    let f = GgufFile::open(dir.join("ggml-vocab-llama-spm.gguf")).unwrap();
    assert_eq!(f.metadata().get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(f.metadata().get_arr_f32("tokenizer.ggml.scores").unwrap().len(), 32000);
    let f = GgufFile::open(dir.join("ggml-vocab-qwen2.gguf")).unwrap();
    assert_eq!(f.metadata().get_str_array("tokenizer.ggml.tokens").unwrap().len(), 151936);
}
