//! Broken checkpoints must fail with an error naming the file, tensor/field and expected vs found —
//! never a panic, never a silently zero-initialised weight.

use serde_json::Value;
use std::path::{Path, PathBuf};
use tern_formats::SafetensorsSet;
use tern_model::load::load_hf_dir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf").join(name)
}

struct Raw {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Copies a single-file fixture into a temp dir, letting the caller edit tensors and config.
fn mutate(
    name: &str,
    edit_tensors: impl FnOnce(&mut Vec<Raw>),
    edit_config: impl FnOnce(&mut Value),
) -> tempfile::TempDir {
    let src = fixture(name);
    let set = SafetensorsSet::open_files(&[src.join("model.safetensors")]).unwrap();
    let mut raws: Vec<Raw> = set
        .tensors
        .values()
        .map(|t| Raw {
            name: t.name.clone(),
            dtype: t.dtype.name().to_string(),
            shape: t.shape.clone(),
            bytes: t.bytes().to_vec(),
        })
        .collect();
    edit_tensors(&mut raws);
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit_config(&mut cfg);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    write_safetensors(&d.path().join("model.safetensors"), &raws, None);
    d
}

fn write_safetensors(path: &Path, raws: &[Raw], offsets_override: Option<Vec<(usize, usize)>>) {
    let mut header = serde_json::Map::new();
    let mut off = 0;
    let mut data = Vec::new();
    for (i, r) in raws.iter().enumerate() {
        let (s, e) = offsets_override.as_ref().map(|o| o[i]).unwrap_or((off, off + r.bytes.len()));
        header.insert(r.name.clone(), serde_json::json!({"dtype": r.dtype, "shape": r.shape, "data_offsets": [s, e]}));
        off += r.bytes.len();
        data.extend_from_slice(&r.bytes);
    }
    let mut h = serde_json::to_string(&Value::Object(header)).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

fn load_err(dir: &Path) -> String {
    match load_hf_dir(dir, None) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message lacks '{p}': {msg}");
    }
}

const PACKED: &str = "bitnet_autobitlinear_packed";

#[test]
fn unchanged_copy_loads() {
    let d = mutate(PACKED, |_| {}, |_| {});
    load_hf_dir(d.path(), None).unwrap();
}

#[test]
fn unknown_model_type() {
    let d = mutate(PACKED, |_| {}, |c| c["model_type"] = "gpt-neo".into());
    has(&load_err(d.path()), &["config.json", "model_type 'gpt-neo' is not supported", "bitnet"]);
}

#[test]
fn missing_config_field() {
    let d = mutate(
        PACKED,
        |_| {},
        |c| {
            c.as_object_mut().unwrap().remove("hidden_size");
        },
    );
    has(&load_err(d.path()), &["config.json", "hidden_size", "missing"]);
    let d = mutate(PACKED, |_| {}, |c| c["num_attention_heads"] = "eight".into());
    has(&load_err(d.path()), &["config.json", "num_attention_heads", "integer"]);
}

#[test]
fn missing_tensor() {
    let gone = "model.layers.1.mlp.down_proj.weight_scale";
    let d = mutate(PACKED, |r| r.retain(|t| t.name != gone), |_| {});
    has(&load_err(d.path()), &[gone, "missing tensor", "scale"]);
}

#[test]
fn unexpected_tensor() {
    let d = mutate(
        PACKED,
        |r| {
            r.push(Raw {
                name: "model.layers.0.extra.weight".into(),
                dtype: "F32".into(),
                shape: vec![2],
                bytes: vec![0; 8],
            })
        },
        |_| {},
    );
    has(&load_err(d.path()), &["model.safetensors", "unexpected tensor 'model.layers.0.extra.weight'"]);
}

#[test]
fn misshaped_tensor() {
    let name = "model.layers.0.input_layernorm.weight";
    let d = mutate(
        PACKED,
        |r| {
            let t = r.iter_mut().find(|t| t.name == name).unwrap();
            t.shape = vec![t.shape[0] - 2];
            t.bytes.truncate(t.bytes.len() - 4);
        },
        |_| {},
    );
    has(&load_err(d.path()), &["model.safetensors", name, "shape", "expected"]);
}

#[test]
fn packed_shape_does_not_match_config() {
    // A wider FFN in config.json than the packed tensors hold.
    let d = mutate(
        PACKED,
        |_| {},
        |c| {
            let f = c["intermediate_size"].as_u64().unwrap();
            c["intermediate_size"] = (f + 4).into();
        },
    );
    has(&load_err(d.path()), &["model.safetensors", "gate_proj.weight", "4 ternary codes per byte", "expected"]);
}

#[test]
fn packed_weight_with_wrong_dtype() {
    let name = "model.layers.0.self_attn.q_proj.weight";
    let d = mutate(
        PACKED,
        |r| {
            let t = r.iter_mut().find(|t| t.name == name).unwrap();
            t.dtype = "I8".into();
        },
        |_| {},
    );
    has(&load_err(d.path()), &[name, "dtype I8", "U8"]);
}

#[test]
fn invalid_ternary_code() {
    let name = "model.layers.0.self_attn.k_proj.weight";
    let d = mutate(PACKED, |r| r.iter_mut().find(|t| t.name == name).unwrap().bytes[0] = 0xFF, |_| {});
    has(&load_err(d.path()), &[name, "invalid 2-bit ternary code"]);
}

#[test]
fn truncated_file() {
    let d = mutate(PACKED, |_| {}, |_| {});
    let p = d.path().join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(b.len() - 1);
    std::fs::write(&p, b).unwrap();
    has(&load_err(d.path()), &["model.safetensors", "truncated"]);
}

#[test]
fn overlapping_tensors() {
    let src = fixture(PACKED);
    let set = SafetensorsSet::open_files(&[src.join("model.safetensors")]).unwrap();
    let raws: Vec<Raw> = set
        .tensors
        .values()
        .take(2)
        .map(|t| Raw {
            name: t.name.clone(),
            dtype: t.dtype.name().into(),
            shape: t.shape.clone(),
            bytes: t.bytes().to_vec(),
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), d.path().join("config.json")).unwrap();
    let (a, b) = (raws[0].bytes.len(), raws[1].bytes.len());
    write_safetensors(&d.path().join("model.safetensors"), &raws, Some(vec![(0, a), (a - 2, a - 2 + b)]));
    has(&load_err(d.path()), &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn fp8_rejected() {
    let name = "model.norm.weight";
    let d = mutate(
        PACKED,
        |r| {
            let t = r.iter_mut().find(|t| t.name == name).unwrap();
            t.dtype = "F8_E4M3".into();
            let n = t.shape[0];
            t.bytes.truncate(n);
        },
        |_| {},
    );
    has(&load_err(d.path()), &["model.safetensors", name, "F8_E4M3", "not supported"]);
}

#[test]
fn sharded_index_pointing_at_wrong_file() {
    let src = fixture("bitnet_autobitlinear_packed_sharded");
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    let idx_path = d.path().join("model.safetensors.index.json");
    let mut idx: Value = serde_json::from_str(&std::fs::read_to_string(&idx_path).unwrap()).unwrap();
    let map = idx["weight_map"].as_object_mut().unwrap();
    let files: Vec<String> = map.values().map(|v| v.as_str().unwrap().to_string()).collect();
    let (k, v) = map.iter_mut().find(|(_, v)| v.as_str() != Some(files[files.len() - 1].as_str())).unwrap();
    let key = k.clone();
    *v = files[files.len() - 1].clone().into();
    std::fs::write(&idx_path, serde_json::to_string(&idx).unwrap()).unwrap();
    has(&load_err(d.path()), &["index.json", &key]);
}

#[test]
fn garbage_files_do_not_panic() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), "{not json").unwrap();
    has(&load_err(d.path()), &["config.json", "invalid JSON"]);
    std::fs::copy(fixture(PACKED).join("config.json"), d.path().join("config.json")).unwrap();
    for junk in [&b""[..], &b"\xff\xff\xff\xff\xff\xff\xff\xff"[..], &b"\x04\x00\x00\x00\x00\x00\x00\x00{\"a\""[..]] {
        std::fs::write(d.path().join("model.safetensors"), junk).unwrap();
        let e = load_err(d.path());
        assert!(e.contains("model.safetensors"), "{e}");
    }
    // A valid but empty file: the first required tensor is reported missing.
    std::fs::write(d.path().join("model.safetensors"), b"\x02\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    has(&load_err(d.path()), &["missing tensor 'model.embed_tokens.weight'"]);
}
