//! Files written by gguf-py's `GGUFWriter` (every metadata value type incl. nested arrays; F32, F16,
//! BF16, I8, I32, F64, Q8_0, TQ2_0, Q4_K tensors; default and 64-byte alignment): our reader must parse
//! them exactly as gguf-py's `GGUFReader` does (tests/data/pywriter*.json), and our writer, fed with
//! what we parsed, must reproduce the gguf-py files byte for byte.

mod common;

use tern_gguf::{GgufFile, GgufWriter};

fn check(name: &str) {
    let path = common::data_dir().join(format!("{name}.gguf"));
    let json = common::read_json(&format!("{name}.json"));
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    common::assert_file_matches_json(&f, &json);

    // Same content through our writer gives gguf-py's exact bytes.
    let mut w = GgufWriter::new();
    for (k, v) in f.metadata().iter() {
        w.add_kv(k, v.clone()).unwrap();
    }
    for t in f.tensors() {
        w.add_tensor(&t.name, &t.dims, t.ggml_type).unwrap();
    }
    assert_eq!(w.tensors(), f.tensors(), "writer offsets differ from gguf-py's");
    let mut out = w.write_header(Vec::new()).unwrap();
    for t in f.tensors() {
        out.write_tensor(&t.name, f.tensor_data(t).unwrap()).unwrap();
    }
    let bytes = out.finish().unwrap();
    let orig = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), orig.len(), "{name}: length");
    if let Some(i) = bytes.iter().zip(&orig).position(|(a, b)| a != b) {
        panic!("{name}: our writer differs from gguf-py at byte {i}");
    }

    // The in-memory constructor sees the same file.
    let g = GgufFile::from_bytes(orig).unwrap();
    assert_eq!(g.metadata(), f.metadata());
    assert_eq!(g.tensors(), f.tensors());
}

#[test]
fn gguf_py_file_default_alignment() {
    check("pywriter");
}

#[test]
fn gguf_py_file_alignment_64() {
    check("pywriter_align64");
}

#[test]
fn typed_getters_on_gguf_py_file() {
    let f = GgufFile::open(common::data_dir().join("pywriter.gguf")).unwrap();
    let m = f.metadata();
    assert_eq!(f.architecture(), Some("tern-test"));
    assert_eq!(m.get_u8("t.u8").unwrap(), 200);
    assert_eq!(m.get_i8("t.i8").unwrap(), -100);
    assert_eq!(m.get_u16("t.u16").unwrap(), 60000);
    assert_eq!(m.get_i16("t.i16").unwrap(), -30000);
    assert_eq!(m.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(m.get_i32("t.i32").unwrap(), -2_000_000_000);
    let f32_val = f32::from_bits(0x4049_0fd0); // 3.14159 as written by gguf-py
    assert_eq!(m.get_f32("t.f32").unwrap(), f32_val);
    assert_eq!(m.get_u64("t.u64").unwrap(), (1u64 << 63) + 12345);
    assert_eq!(m.get_i64("t.i64").unwrap(), -(1i64 << 62));
    assert_eq!(m.get_f64("t.f64").unwrap(), std::f64::consts::E);
    assert!(m.get_bool("t.bool_true").unwrap());
    assert!(!m.get_bool("t.bool_false").unwrap());
    assert_eq!(m.get_str("t.str_unicode").unwrap(), "héllo ✓ 🦙 \u{0} end");
    assert_eq!(m.get_str_array("t.arr_str").unwrap(), vec!["a", "", "ünïcode", "<0x0A>"]);
    assert_eq!(m.get_arr_f32("t.arr_f32").unwrap()[..2], [0.5, -1.25]);
    assert_eq!(m.get_arr_bool("t.arr_bool").unwrap(), &[true, false, true]);
    assert_eq!(m.get_arr_arr("t.arr_nested").unwrap().len(), 3);
    assert_eq!(m.get_uint("t.u16").unwrap(), 60000);
    assert!(m.get_uint("t.i8").is_err());
    assert_eq!(m.get_int("t.i8").unwrap(), -100);
    assert_eq!(m.get_float("t.f32").unwrap(), f64::from(f32_val));
    let e = m.get_u32("t.str").unwrap_err().to_string();
    assert!(e.contains("pywriter.gguf") && e.contains("t.str") && e.contains("u32") && e.contains("str"), "{e}");

    // Tensor data: F16/BF16/Q8_0/TQ2_0 dequantize; I8/I32/F64 are raw-only.
    let t = f.require_tensor("f16.weight").unwrap();
    assert_eq!(t.dims, vec![64, 2]);
    assert_eq!(f.dequantize_tensor(t).unwrap().len(), 128);
    let e = f.dequantize_tensor(f.require_tensor("i32.weight").unwrap()).unwrap_err().to_string();
    assert!(e.contains("unsupported tensor type I32 in tensor \"i32.weight\""), "{e}");
    assert!(f.require_tensor("nope").unwrap_err().to_string().contains("\"nope\" not found"));
}

#[test]
fn open_errors_name_the_path() {
    let missing = common::data_dir().join("does-not-exist.gguf");
    let e = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(e, tern_gguf::GgufError::Io { .. }));
    assert!(e.to_string().contains("does-not-exist.gguf"), "{e}");

    let dir = std::env::temp_dir().join(format!("tern-gguf-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = GgufFile::open(&empty).unwrap_err();
    assert!(matches!(e, tern_gguf::GgufError::BadMagic { .. }), "{e:?}");
    assert!(e.to_string().contains("empty.gguf"), "{e}");
    let bad = dir.join("bad.gguf");
    let mut bytes = std::fs::read(common::data_dir().join("pywriter.gguf")).unwrap();
    bytes.truncate(bytes.len() - 40);
    std::fs::write(&bad, &bytes).unwrap();
    let e = GgufFile::open(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.gguf") && e.contains("blk.0.attn_q.weight.4d"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
