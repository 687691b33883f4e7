//! GgufWriter: write → read round trips (metadata and bytes identical), streaming to a real file, misuse
//! errors, and a committed golden: tests/data/rust_writer.gguf must be reproduced byte for byte, and
//! tests/data/rust_writer.json (gguf-py's GGUFReader parse of that file, by tools/gguf/make_goldens.py)
//! must agree with what we wrote. Regenerate with `TERN_BLESS=1 cargo test -p tern-gguf --test writer`
//! followed by `python3 tools/gguf/make_goldens.py --only rust`.

mod common;

use tern_gguf::{Array, GgmlType, GgufError, GgufFile, GgufString, GgufWriter, Value};

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::from("tern-test")),
        ("w.u8", Value::U8(255)),
        ("w.i8", Value::I8(-128)),
        ("w.u16", Value::U16(65535)),
        ("w.i16", Value::I16(-32768)),
        ("w.u32", Value::U32(u32::MAX)),
        ("w.i32", Value::I32(i32::MIN)),
        ("w.f32", Value::F32(-0.1)),
        ("w.bool", Value::Bool(true)),
        ("w.str", Value::from("ünïcödé ✓")),
        ("w.str_empty", Value::from("")),
        ("w.u64", Value::U64(u64::MAX)),
        ("w.i64", Value::I64(i64::MIN)),
        ("w.f64", Value::F64(1e-300)),
        ("w.arr_u8", Value::from(vec![0u8, 1, 255])),
        ("w.arr_i8", Value::from(vec![-1i8, 0, 127])),
        ("w.arr_u16", Value::from(vec![7u16])),
        ("w.arr_i16", Value::from(vec![-7i16, 7])),
        ("w.arr_u32", Value::from(vec![1u32, 2, 3])),
        ("w.arr_i32", Value::from(vec![-1i32, 2])),
        ("w.arr_f32", Value::from(vec![0.25f32, -3.5e-5])),
        ("w.arr_bool", Value::from(vec![false, true])),
        ("w.arr_str", Value::from(vec!["a", "", "ß"])),
        ("w.arr_u64", Value::from(vec![u64::MAX, 0])),
        ("w.arr_i64", Value::from(vec![i64::MIN])),
        ("w.arr_f64", Value::from(vec![0.5f64, -1e200])),
        ("w.arr_empty", Value::Array(Array::U32(vec![]))),
        (
            "w.arr_nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2, 3]),
                Array::String(vec![GgufString::from("x")]),
                Array::Array(vec![Array::F32(vec![1.5]), Array::U8(vec![])]),
            ])),
        ),
    ]
}

/// Deterministic pseudo-random values in [-amp, amp).
fn values(n: usize, seed: u32, amp: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

const TENSORS: &[(&str, &[u64], GgmlType)] = &[
    ("f32", &[7, 3], GgmlType::F32),
    ("f16", &[64, 2], GgmlType::F16),
    ("bf16", &[16], GgmlType::BF16),
    ("q8_0", &[64, 2], GgmlType::Q8_0),
    ("q4_0", &[32, 3], GgmlType::Q4_0),
    ("q4_k", &[256, 2], GgmlType::Q4_K),
    ("q6_k", &[256], GgmlType::Q6_K),
    ("tq1_0", &[256, 2], GgmlType::TQ1_0),
    ("tq2_0", &[256], GgmlType::TQ2_0),
    ("blk.0.four_dims", &[32, 2, 1, 2], GgmlType::F32),
];

fn build(alignment: Option<u32>) -> (GgufWriter, Vec<Vec<f32>>) {
    let mut w = GgufWriter::new();
    if let Some(a) = alignment {
        w.add_kv("general.alignment", a).unwrap();
    }
    for (k, v) in all_values() {
        w.add_kv(k, v).unwrap();
    }
    let mut inputs = Vec::new();
    for (i, (name, dims, ty)) in TENSORS.iter().enumerate() {
        w.add_tensor(*name, dims, *ty).unwrap();
        let n: u64 = dims.iter().product();
        let mut x = values(n as usize, i as u32 + 1, 2.0);
        if matches!(ty, GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2_S) {
            x = x.iter().map(|v| (v.round().clamp(-1.0, 1.0)) * 0.25).collect();
        }
        inputs.push(x);
    }
    (w, inputs)
}

fn write_all(w: GgufWriter, inputs: &[Vec<f32>]) -> Vec<u8> {
    let mut out = w.write_header(Vec::new()).unwrap();
    for ((name, _, _), x) in TENSORS.iter().zip(inputs) {
        out.write_tensor_f32(name, x).unwrap();
    }
    out.finish().unwrap()
}

#[test]
fn round_trip_in_memory() {
    for align in [None, Some(1), Some(8), Some(64), Some(4096)] {
        let (w, inputs) = build(align);
        let declared = w.tensors().to_vec();
        let md = w.metadata().clone();
        let bytes = write_all(w, &inputs);
        let f = GgufFile::from_bytes(bytes.clone()).unwrap_or_else(|e| panic!("align {align:?}: {e}"));
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), u64::from(align.unwrap_or(32)));
        assert_eq!(f.metadata(), &md, "metadata round trip");
        assert_eq!(f.tensors(), declared.as_slice(), "tensor infos round trip");
        assert_eq!(bytes.len() as u64 % f.alignment(), 0, "file ends padded");
        for ((t, x), (_, _, ty)) in f.tensors().iter().zip(&inputs).zip(TENSORS) {
            assert_eq!(f.tensor_data(t).unwrap(), tern_gguf::quantize(*ty, x).unwrap().as_slice(), "{}", t.name);
            let y = f.dequantize_tensor(t).unwrap();
            let max_err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let tol = match ty {
                GgmlType::F32 => 0.0,
                GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2_S => 0.0,
                GgmlType::Q4_0 | GgmlType::Q4_K => 0.3,
                _ => 0.05,
            };
            assert!(max_err <= tol, "{}: max error {max_err}", t.name);
        }
        // Re-writing the parsed file reproduces it exactly.
        let mut w2 = GgufWriter::new();
        for (k, v) in f.metadata().iter() {
            w2.add_kv(k, v.clone()).unwrap();
        }
        for t in f.tensors() {
            w2.add_tensor(&t.name, &t.dims, t.ggml_type).unwrap();
        }
        let mut out = w2.write_header(Vec::new()).unwrap();
        for t in f.tensors() {
            out.write_tensor(&t.name, f.tensor_data(t).unwrap()).unwrap();
        }
        assert_eq!(out.finish().unwrap(), bytes);
    }
}

#[test]
fn streams_to_a_file_and_mmaps_back() {
    let dir = std::env::temp_dir().join(format!("tern-gguf-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stream.gguf");
    let (w, inputs) = build(None);
    let mut out = w.create(&path).unwrap();
    assert_eq!(out.next_tensor().unwrap().name, "f32");
    for ((name, _, _), x) in TENSORS.iter().zip(&inputs) {
        out.write_tensor_f32(name, x).unwrap();
    }
    assert!(out.next_tensor().is_none());
    out.finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), Some(path.as_path()));
    assert_eq!(f.tensors().len(), TENSORS.len());
    assert_eq!(f.metadata().get_str("w.str").unwrap(), "ünïcödé ✓");
    assert_eq!(std::fs::read(&path).unwrap(), write_all(build(None).0, &inputs));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_misuse_is_an_error() {
    let err = |r: Result<&mut GgufWriter, GgufError>| r.map(|_| ()).unwrap_err().to_string();
    let mut w = GgufWriter::new();
    w.add_kv("a", 1u32).unwrap();
    assert!(err(w.add_kv("a", 2u32)).contains("duplicate metadata key \"a\""));
    assert!(err(w.add_kv("", 2u32)).contains("empty"));
    assert!(err(w.add_kv("general.alignment", 48u32)).contains("power of two"));
    assert!(err(w.add_kv("general.alignment", 64u64)).contains("power of two"));
    assert!(err(w.add_tensor("q", &[33], GgmlType::Q4_0)).contains("block size 32"));
    assert!(err(w.add_tensor("z", &[0], GgmlType::F32)).contains("dimension 0"));
    assert!(err(w.add_tensor("five", &[1, 1, 1, 1, 1], GgmlType::F32)).contains("5 dims"));
    assert!(err(w.add_tensor("x".repeat(64), &[1], GgmlType::F32)).contains("64 bytes"));
    assert!(err(w.add_tensor("big", &[1 << 62, 1 << 62], GgmlType::F32)).contains("overflows"));
    assert!(err(w.add_tensor("i8s", &[4], GgmlType::I8_S)).contains("no representable size"));
    let deep = (0..70).fold(Array::U8(vec![1]), |a, _| Array::Array(vec![a]));
    assert!(err(w.add_kv("deep", Value::Array(deep))).contains("nested deeper"));
    w.add_tensor("t1", &[4], GgmlType::F32).unwrap();
    w.add_tensor("t2", &[4], GgmlType::F16).unwrap();
    assert!(err(w.add_tensor("t1", &[4], GgmlType::F32)).contains("duplicate tensor name"));
    assert!(err(w.add_kv("general.alignment", 64u32)).contains("before tensors"));
    let mut out = w.write_header(Vec::new()).unwrap();
    let e = out.write_tensor("t2", &[0; 8]).unwrap_err().to_string();
    assert!(e.contains("expected \"t1\", got \"t2\""), "{e}");
    let e = out.write_tensor("t1", &[0; 15]).unwrap_err().to_string();
    assert!(e.contains("expected 16 bytes, got 15"), "{e}");
    let e = out.write_tensor_f32("t1", &[0.0; 3]).unwrap_err().to_string();
    assert!(e.contains("expected 4 values, got 3"), "{e}");
    out.write_tensor("t1", &[0; 16]).unwrap();
    let e = out.finish().unwrap_err().to_string();
    assert!(e.contains("1 tensor(s) unwritten") && e.contains("t2"), "{e}");
}

#[test]
fn i2s_round_trip_needs_a_bitnet_architecture() {
    let x: Vec<f32> = values(512, 9, 2.0).iter().map(|v| v.round().clamp(-1.0, 1.0) * 0.75).collect();
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "bitnet-b1.58").unwrap();
    w.add_tensor("blk.0.ffn_up.weight", &[128, 4], GgmlType::I2_S).unwrap();
    w.add_tensor("mx", &[32], GgmlType::MXFP4).unwrap();
    // MXFP4's id 39 means TL2 to bitnet.cpp: refused under a bitnet architecture.
    let e = w.write_header(Vec::new()).unwrap_err().to_string();
    assert!(e.contains("\"mx\"") && e.contains("MXFP4") && e.contains("bitnet-b1.58"), "{e}");

    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "bitnet-b1.58").unwrap();
    w.add_tensor("blk.0.ffn_up.weight", &[128, 4], GgmlType::I2_S).unwrap();
    let mut out = w.write_header(Vec::new()).unwrap();
    out.write_tensor_f32("blk.0.ffn_up.weight", &x).unwrap();
    let bytes = out.finish().unwrap();
    let f = GgufFile::from_bytes(bytes).unwrap();
    let t = f.require_tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!((t.ggml_type, t.n_bytes), (GgmlType::I2_S, 512 / 4 + 32));
    assert_eq!(f.dequantize_tensor(t).unwrap(), x);

    // Without a bitnet architecture the id would be ambiguous to readers: refused at write time.
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "llama").unwrap();
    w.add_tensor("t", &[128], GgmlType::I2_S).unwrap();
    let e = w.write_header(Vec::new()).unwrap_err().to_string();
    assert!(e.contains("I2_S") && e.contains("ambiguous"), "{e}");
}

#[test]
fn writer_golden_matches_committed_bytes_and_gguf_py_parse() {
    let (w, inputs) = build(None);
    let bytes = write_all(w, &inputs);
    let path = common::data_dir().join("rust_writer.gguf");
    if std::env::var_os("TERN_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
        eprintln!("wrote {}; now run python3 tools/gguf/make_goldens.py --only rust", path.display());
    }
    let committed = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with TERN_BLESS=1 cargo test -p tern-gguf --test writer, then python3 tools/gguf/make_goldens.py --only rust",
            path.display()
        )
    });
    assert!(bytes == committed, "writer output changed: {} bytes vs committed {}", bytes.len(), committed.len());
    let json = common::read_json("rust_writer.json");
    let f = GgufFile::from_bytes(bytes).unwrap();
    common::assert_file_matches_json(&f, &json);
}
