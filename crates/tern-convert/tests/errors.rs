//! Bad input and refusals: every failure is an error (never a panic) that names the file, tensor or
//! field involved, and a failed write leaves neither the output nor its `.partial` file behind.

mod common;

use common::*;
use std::path::Path;
use tern_convert::{plan, ConvertError, ConvertOptions, TargetType};

fn plan_err(src: &Path, ty: TargetType) -> String {
    match plan(&ConvertOptions::new(src, ty)) {
        Ok(_) => panic!("{}: {ty} should fail", src.display()),
        Err(e) => e.to_string(),
    }
}

/// A copy of a fixture with config.json edited by `edit`.
fn edited_fixture(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = tmp.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    tmp
}

#[test]
fn refuses_what_gguf_cannot_express() {
    let e = plan_err(&fixture("llama_bitlinear_bf16"), TargetType::I2_S);
    assert!(e.contains("i2_s") && e.contains("tq2_0"), "{e}");
    let e = plan_err(&fixture("qwen2_bias"), TargetType::TQ1_0);
    assert!(e.contains("model.layers.0.self_attn.q_proj.weight") && e.contains("ternary"), "{e}");
    let d = edited_fixture("bitnet_autobitlinear_packed", |c| c["quantization_config"]["use_rms_norm"] = true.into());
    let e = plan_err(d.path(), TargetType::TQ2_0);
    assert!(e.contains("use_rms_norm"), "{e}");
    let e = TargetType::parse("q5_k").unwrap_err().to_string();
    assert!(e.contains("q5_k") && e.contains("i2_s"), "{e}");
}

#[test]
fn checkpoint_mismatches_name_the_tensor() {
    let more = edited_fixture("llama_rope_linear", |c| c["num_hidden_layers"] = 3.into());
    let e = plan_err(more.path(), TargetType::F16);
    assert!(e.contains("model.layers.2.input_layernorm.weight") && e.contains("missing"), "{e}");
    let fewer = edited_fixture("llama_rope_linear", |c| c["num_hidden_layers"] = 1.into());
    let e = plan_err(fewer.path(), TargetType::F16);
    assert!(e.contains("model.layers.1.") && e.contains("not used"), "{e}");
    let wide = edited_fixture("qwen2_bias", |c| c["intermediate_size"] = 208.into());
    let e = plan_err(wide.path(), TargetType::Q8_0);
    assert!(e.contains("model.layers.0.mlp.gate_proj.weight") && e.contains("[208, 96]"), "{e}");
    let dense = edited_fixture("bitnet_autobitlinear_packed", |c| {
        c.as_object_mut().unwrap().remove("quantization_config");
    });
    let e = plan_err(dense.path(), TargetType::F16);
    assert!(e.contains("q_proj.weight") && e.contains("U8"), "{e}");
}

#[test]
fn bad_sources_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.bin");
    std::fs::write(&junk, b"not a model").unwrap();
    assert!(matches!(plan(&ConvertOptions::new(&junk, TargetType::F16)), Err(ConvertError::BadSource { .. })));
    let missing = tmp.path().join("nope");
    assert!(plan_err(&missing, TargetType::F16).contains("nope"));
    // Every truncation of a GGUF source is an error, not a panic.
    let (_t, gguf, _) = convert(&fixture("llama_rope_linear"), TargetType::Q8_0);
    let bytes = std::fs::read(&gguf).unwrap();
    let cut = tmp.path().join("cut.gguf");
    for n in [8usize, 40, 300, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..n]).unwrap();
        let e = plan_err(&cut, TargetType::F16);
        assert!(e.contains("cut.gguf"), "{n}: {e}");
    }
}

#[test]
fn corrupt_packed_weights_fail_the_write_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("corrupt");
    write_bitnet(&src, BitnetStorage::PackedCorrupt, 4);
    let p = plan(&ConvertOptions::new(&src, TargetType::TQ2_0)).unwrap();
    let out = tmp.path().join("out.gguf");
    let e = p.write(&out, false, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("model.layers.1.mlp.down_proj.weight")
            && e.contains("code 3")
            && e.contains("blk.1.ffn_down.weight"),
        "{e}"
    );
    assert!(!out.exists());
    assert!(!tmp.path().join("out.gguf.partial").exists());
}

#[test]
fn output_is_protected() {
    let src = fixture("llama_rope_linear");
    let (tmp, out, p) = convert(&src, TargetType::F16);
    let before = std::fs::read(&out).unwrap();
    let e = p.write(&out, false, &mut |_| {}).unwrap_err();
    assert!(matches!(e, ConvertError::OutputExists { .. }) && e.to_string().contains("--force"), "{e}");
    // --force overwrites with the same bytes (conversion is deterministic).
    let mut events = Vec::new();
    p.write(&out, true, &mut |ev| events.push((ev.index, ev.total, ev.bytes_done))).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), before);
    assert_eq!(events.len(), p.tensors.len() + 1);
    assert_eq!(events.last().unwrap().0, p.tensors.len());
    assert_eq!(events.last().unwrap().2, p.data_bytes());
    // Converting a GGUF onto itself is refused even with --force.
    let again = plan(&ConvertOptions::new(&out, TargetType::Q8_0)).unwrap();
    assert!(matches!(again.write(&out, true, &mut |_| {}), Err(ConvertError::OutputIsSource { .. })));
    drop(tmp);
}

#[test]
fn tokenizer_problems_are_errors() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    // 376 tokens do not fit a 256-token model.
    let mut o = ConvertOptions::new(fixture("llama_rope_linear"), TargetType::F16);
    o.vocab_dir = Some(data.join("tok_llamahf"));
    let e = plan(&o).unwrap_err().to_string();
    assert!(e.contains("vocab_size 256") && e.contains("tok_llamahf"), "{e}");
    // An unknown pre-tokenizer regex stops the conversion unless --vocab-pre names one.
    let tmp = tempfile::tempdir().unwrap();
    let mut tj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("tok_bpe240/tokenizer.json")).unwrap()).unwrap();
    tj["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}|[a-z]+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]});
    std::fs::write(tmp.path().join("tokenizer.json"), serde_json::to_vec(&tj).unwrap()).unwrap();
    o.vocab_dir = Some(tmp.path().to_path_buf());
    let e = plan(&o).unwrap_err().to_string();
    assert!(e.contains("--vocab-pre"), "{e}");
    o.vocab_pre = Some("gpt-2".into());
    let p = plan(&o).unwrap();
    assert!(p.notes.iter().any(|n| n.contains("--vocab-pre")), "{:?}", p.notes);
    // Malformed tokenizer files name the file.
    std::fs::write(tmp.path().join("tokenizer.json"), b"{\"model\": {\"type\": \"BPE\", \"vocab\": [1]}}").unwrap();
    let e = plan(&o).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    std::fs::write(tmp.path().join("tokenizer.model"), [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap();
    let e = plan(&o).unwrap_err().to_string();
    assert!(e.contains("tokenizer.model") && e.contains("SentencePiece"), "{e}");
}
