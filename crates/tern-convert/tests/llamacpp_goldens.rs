//! tern-convert against llama.cpp's own converter (`convert_hf_to_gguf.py`, llama.cpp vendored by
//! llama-cpp-python 0.3.36), from `tests/data/llamacpp_goldens.json` made by
//! `tools/convert/make_llamacpp_goldens.py` (run on the device machine, which has torch):
//!
//! * models: fixtures + a small tokenizer converted to f16 / bf16 / q8_0 — every tensor llama.cpp
//!   writes must be in our file with the same type, dims and bytes (SHA-256); every metadata key it
//!   writes must have the same type and value (arrays by digest), except `general.name` (llama.cpp
//!   title-cases the directory name) and the scores of a Llama-2 style tokenizer.json (see
//!   `tern_convert::vocab`); keys only we write must be in a known list.
//! * vocabularies: real Llama 3, Qwen3 and Llama 2 tokenizers (`tools/testdata/fetch.sh tokenizers`):
//!   every `tokenizer.*` key identical.

mod common;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tern_convert::vocab::{self, VocabOptions};
use tern_convert::{ConvertOptions, TargetType};
use tern_gguf::{Array, GgufFile, Value};

fn goldens() -> Json {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llamacpp_goldens.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn testdata() -> PathBuf {
    std::env::var_os("TERN_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdata"))
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::U8(_) => "UINT8",
        Value::I8(_) => "INT8",
        Value::U16(_) => "UINT16",
        Value::I16(_) => "INT16",
        Value::U32(_) => "UINT32",
        Value::I32(_) => "INT32",
        Value::F32(_) => "FLOAT32",
        Value::Bool(_) => "BOOL",
        Value::String(_) => "STRING",
        Value::Array(_) => "ARRAY",
        Value::U64(_) => "UINT64",
        Value::I64(_) => "INT64",
        Value::F64(_) => "FLOAT64",
    }
}

/// The digest of `make_llamacpp_goldens.py`: strings as u32 length + bytes, ints as i64, floats as f32
/// bits, bools as one byte, little-endian.
fn digest(a: &Array) -> (&'static str, usize, String) {
    let mut h = Sha256::new();
    let ints = |h: &mut Sha256, it: &mut dyn Iterator<Item = i64>| it.for_each(|x| h.update(x.to_le_bytes()));
    let (name, n) = match a {
        Array::String(v) => {
            for s in v {
                h.update((s.as_bytes().len() as u32).to_le_bytes());
                h.update(s.as_bytes());
            }
            ("STRING", v.len())
        }
        Array::I32(v) => {
            ints(&mut h, &mut v.iter().map(|&x| i64::from(x)));
            ("INT32", v.len())
        }
        Array::U32(v) => {
            ints(&mut h, &mut v.iter().map(|&x| i64::from(x)));
            ("UINT32", v.len())
        }
        Array::F32(v) => {
            v.iter().for_each(|x| h.update(x.to_le_bytes()));
            ("FLOAT32", v.len())
        }
        Array::Bool(v) => {
            v.iter().for_each(|&x| h.update([u8::from(x)]));
            ("BOOL", v.len())
        }
        other => panic!("unexpected array type {}", other.describe()),
    };
    (name, n, h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares one of our values with a golden entry; returns a description of the difference.
fn diff(ours: &Value, want: &Json) -> Option<String> {
    if let Some(arr) = want.get("array") {
        let Value::Array(a) = ours else { return Some(format!("ours is {}, want an array", ours.describe())) };
        let want_len = want["len"].as_u64().unwrap_or(0) as usize;
        // Documented deviation: llama.cpp's LlamaHfVocab does not pad a vocabulary shorter than the
        // model's (its file would then not load); we pad with [PAD{i}] / UNUSED / -1000.
        let a = &match a {
            Array::String(v) if v.len() > want_len => {
                assert!(v[want_len..]
                    .iter()
                    .enumerate()
                    .all(|(i, t)| t.to_str() == Some(&format!("[PAD{}]", want_len + i))));
                Array::String(v[..want_len].to_vec())
            }
            Array::I32(v) if v.len() > want_len => {
                assert!(v[want_len..].iter().all(|&t| t == 5), "padding tokens are UNUSED");
                Array::I32(v[..want_len].to_vec())
            }
            Array::F32(v) if v.len() > want_len => {
                assert!(v[want_len..].iter().all(|&t| t == -1000.0));
                Array::F32(v[..want_len].to_vec())
            }
            other => other.clone(),
        };
        let (ty, n, d) = digest(a);
        let ok = Some(ty) == arr.as_str()
            && Some(n as u64) == want["len"].as_u64()
            && Some(d.as_str()) == want["sha256"].as_str();
        return (!ok).then(|| {
            format!(
                "ours arr[{ty}; {n}] {d}, want arr[{arr}; {}] {} (head {})",
                want["len"], want["sha256"], want["head"]
            )
        });
    }
    let ty = want["type"].as_str().unwrap_or("");
    if py_type(ours) != ty {
        return Some(format!("ours is {}, want {ty}", py_type(ours)));
    }
    let v = &want["value"];
    let same = match ours {
        Value::String(s) => s.to_str() == v.as_str(),
        Value::Bool(b) => Some(*b) == v.as_bool(),
        Value::F32(x) => v.as_f64().map(|f| f as f32) == Some(*x),
        Value::F64(x) => v.as_f64() == Some(*x),
        other => other.as_int() == v.as_i64(),
    };
    (!same).then(|| format!("ours {ours:?}, want {v}"))
}

/// Keys we write that llama.cpp's converter does not (for these fixtures).
fn extra_key_allowed(k: &str) -> bool {
    let suffixes = [
        ".vocab_size",
        ".rope.dimension_count",
        ".attention.key_length",
        ".attention.value_length",
        ".rope.scaling.yarn_beta_fast",
        ".rope.scaling.yarn_beta_slow",
    ];
    k.starts_with("general.sampling.") || suffixes.iter().any(|s| k.ends_with(s))
}

#[test]
fn models_match_llama_cpp_converter() {
    let g = goldens();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut checked = 0;
    for case in g["models"].as_array().unwrap() {
        let fixture = case["fixture"].as_str().unwrap();
        let tok = case["tokenizer"].as_str().unwrap();
        let ty = TargetType::parse(case["outtype"].as_str().unwrap()).unwrap();
        let label = format!("{fixture}+{tok} {ty}");
        let src = match common::fixture(fixture) {
            p if p.is_dir() => p,
            _ => data.join(fixture),
        };
        let mut opts = ConvertOptions::new(src, ty);
        opts.vocab_dir = Some(data.join(tok));
        let (_tmp, out, _plan) = common::convert_with(opts);
        let f = GgufFile::open(&out).unwrap();
        // Tensors.
        let want: &serde_json::Map<String, Json> = case["tensors"].as_object().unwrap();
        let ours: BTreeMap<&str, &tern_gguf::TensorInfo> = f.tensors().iter().map(|t| (t.name.as_str(), t)).collect();
        assert_eq!(
            ours.keys().copied().collect::<Vec<_>>(),
            want.keys().map(String::as_str).collect::<Vec<_>>(),
            "{label}: tensor names"
        );
        for (name, w) in want {
            let t = ours[name.as_str()];
            assert_eq!(t.ggml_type.name(), w["type"].as_str().unwrap(), "{label}: {name} type");
            let dims: Vec<u64> = w["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            assert_eq!(t.dims, dims, "{label}: {name} dims");
            if let Some(vals) = w.get("values") {
                // rope_freqs: llama.cpp computes them with torch; allow 2 ulp.
                let ours = f.dequantize_tensor(t).unwrap();
                for (i, (a, b)) in ours.iter().zip(vals.as_array().unwrap()).enumerate() {
                    let b = b.as_f64().unwrap() as f32;
                    assert!((a - b).abs() <= 2.0 * f32::EPSILON * b.abs(), "{label}: {name}[{i}] {a} vs {b}");
                }
                continue;
            }
            let bytes = f.tensor_data(t).unwrap();
            let h: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                h,
                w["sha256"].as_str().unwrap(),
                "{label}: {name} ({}) bytes differ from llama.cpp's",
                t.ggml_type
            );
        }
        // Metadata.
        let md = f.metadata();
        let want_md = case["metadata"].as_object().unwrap();
        for (k, w) in want_md {
            // general.name: llama.cpp title-cases the directory name. Scores of a Llama-2 style
            // tokenizer.json: llama.cpp writes the placeholder -1000, tern the merge ranks (see
            // tern_convert::vocab), checked by tests/llamacpp_peer.rs through llama.cpp's tokenizer.
            if k == "general.name" || (k == "tokenizer.ggml.scores" && tok == "tok_llamahf") {
                continue;
            }
            let ours = md.get(k).unwrap_or_else(|| panic!("{label}: we do not write {k} = {w}"));
            if let Some(d) = diff(ours, w) {
                panic!("{label}: {k}: {d}");
            }
        }
        for (k, _) in md.iter() {
            assert!(want_md.contains_key(k) || extra_key_allowed(k), "{label}: we write {k}, llama.cpp does not");
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} golden model cases");
}

#[test]
fn vocabularies_match_llama_cpp_converter() {
    let g = goldens();
    let root = testdata();
    for case in g["vocabs"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let src = root.join(case["source"].as_str().unwrap());
        let tmp = tempfile::tempdir().unwrap();
        for f in case["files"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let from = src.join(f);
            assert!(
                from.is_file(),
                "{} is missing: run tools/testdata/fetch.sh tokenizers (TERN_TESTDATA = {})",
                from.display(),
                root.display()
            );
            let to = if f.ends_with(".model") { "tokenizer.model" } else { f };
            std::fs::copy(&from, tmp.path().join(to)).unwrap();
        }
        let config = &case["config"];
        std::fs::write(tmp.path().join("config.json"), serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let n_vocab = config["vocab_size"].as_u64().unwrap() as usize;
        let arch = match config["model_type"].as_str().unwrap() {
            "qwen3" => "qwen3",
            _ => "llama",
        };
        let v = vocab::from_dir(tmp.path(), n_vocab, &VocabOptions { arch: arch.into(), ..Default::default() })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours: BTreeMap<&str, &Value> = v.kv.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let want = case["metadata"].as_object().unwrap();
        assert_eq!(
            ours.keys().copied().collect::<Vec<_>>(),
            want.keys().map(String::as_str).collect::<Vec<_>>(),
            "{name}: keys"
        );
        for (k, w) in want {
            if let Some(d) = diff(ours[k.as_str()], w) {
                panic!("{name}: {k}: {d}");
            }
        }
        eprintln!("{name}: {} keys identical to llama.cpp's ({})", want.len(), v.summary);
    }
}
