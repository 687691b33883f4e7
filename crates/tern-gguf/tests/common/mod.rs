//! Shared helpers for tern-gguf's integration tests: golden-file locations, a comparator between our
//! parsed metadata/tensors and gguf-py's parse dumped to JSON by tools/gguf/make_goldens.py, and a
//! raw GGUF byte builder for handcrafted (possibly invalid) files.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value as J;
use tern_gguf::{Array, GgufFile, Value};

/// `crates/tern-gguf/tests/data`.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("data")
}

pub fn read_json(name: &str) -> J {
    let p = data_dir().join(name);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (regenerate with python3 tools/gguf/make_goldens.py)", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Root of the real test assets: `$TERN_TESTDATA` or `<repo>/.cache/testdata`.
pub fn testdata_root() -> PathBuf {
    match std::env::var_os("TERN_TESTDATA") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdata"),
    }
}

/// A real test asset, or a panic telling how to fetch it.
pub fn require_asset(rel: &str, fetch_arg: &str) -> PathBuf {
    let p = testdata_root().join(rel);
    if !p.exists() {
        panic!("missing test asset {}: run `tools/testdata/fetch.sh {fetch_arg}` (or set TERN_TESTDATA)", p.display());
    }
    p
}

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn json_str(j: &J) -> Vec<u8> {
    match j {
        J::String(s) => s.as_bytes().to_vec(),
        J::Object(o) => hex(o["hex"].as_str().expect("hex string")),
        other => panic!("not a string: {other}"),
    }
}

fn num_eq_f64(x: f64, j: &J) -> bool {
    j.as_f64().is_some_and(|y| y == x)
}

/// Compare one of our values with gguf-py's JSON form `{"type": .., ("elem": ..), "value": ..}`.
pub fn value_matches(v: &Value, j: &J) -> Result<(), String> {
    let ty = j["type"].as_str().ok_or("no type")?;
    if ty != v.value_type().name() {
        return Err(format!("type {} vs gguf-py {ty}", v.value_type().name()));
    }
    let jv = &j["value"];
    let ok = match v {
        Value::U8(x) => jv.as_u64() == Some(u64::from(*x)),
        Value::U16(x) => jv.as_u64() == Some(u64::from(*x)),
        Value::U32(x) => jv.as_u64() == Some(u64::from(*x)),
        Value::U64(x) => jv.as_u64() == Some(*x),
        Value::I8(x) => jv.as_i64() == Some(i64::from(*x)),
        Value::I16(x) => jv.as_i64() == Some(i64::from(*x)),
        Value::I32(x) => jv.as_i64() == Some(i64::from(*x)),
        Value::I64(x) => jv.as_i64() == Some(*x),
        Value::F32(x) => num_eq_f64(f64::from(*x), jv),
        Value::F64(x) => num_eq_f64(*x, jv),
        Value::Bool(x) => jv.as_bool() == Some(*x),
        Value::String(s) => json_str(jv) == s.as_bytes(),
        Value::Array(a) => return array_matches(a, j),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("value {v:?} vs gguf-py {jv}"))
    }
}

fn array_matches(a: &Array, j: &J) -> Result<(), String> {
    let elem = j["elem"].as_str().ok_or("no elem")?;
    if elem != a.element_type().name() {
        return Err(format!("element type {} vs gguf-py {elem}", a.element_type().name()));
    }
    let items = j["value"].as_array().ok_or("array value is not a list")?;
    if items.len() != a.len() {
        return Err(format!("length {} vs gguf-py {}", a.len(), items.len()));
    }
    let each = |i: usize, ok: bool| -> Result<(), String> {
        if ok {
            Ok(())
        } else {
            Err(format!("element {i}: gguf-py {}", items[i]))
        }
    };
    match a {
        Array::U8(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_u64() == Some(u64::from(*x)))),
        Array::U16(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_u64() == Some(u64::from(*x)))),
        Array::U32(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_u64() == Some(u64::from(*x)))),
        Array::U64(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_u64() == Some(*x))),
        Array::I8(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_i64() == Some(i64::from(*x)))),
        Array::I16(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_i64() == Some(i64::from(*x)))),
        Array::I32(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_i64() == Some(i64::from(*x)))),
        Array::I64(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_i64() == Some(*x))),
        Array::F32(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, num_eq_f64(f64::from(*x), &items[i]))),
        Array::F64(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, num_eq_f64(*x, &items[i]))),
        Array::Bool(v) => v.iter().enumerate().try_for_each(|(i, x)| each(i, items[i].as_bool() == Some(*x))),
        Array::String(v) => v.iter().enumerate().try_for_each(|(i, s)| each(i, json_str(&items[i]) == s.as_bytes())),
        Array::Array(v) => v
            .iter()
            .enumerate()
            .try_for_each(|(i, inner)| array_matches(inner, &items[i]).map_err(|e| format!("element {i}: {e}"))),
    }
}

/// Assert that our parse of a file equals gguf-py's JSON description of it.
pub fn assert_file_matches_json(f: &GgufFile, j: &J) {
    assert_eq!(u64::from(f.version()), j["version"].as_u64().unwrap(), "version");
    assert_eq!(f.alignment(), j["alignment"].as_u64().unwrap(), "alignment");
    let kv = j["kv"].as_array().unwrap();
    let ours: Vec<(&str, &Value)> = f.metadata().iter().collect();
    assert_eq!(ours.len(), kv.len(), "number of metadata keys");
    for ((k, v), jk) in ours.iter().zip(kv) {
        assert_eq!(*k, jk["key"].as_str().unwrap(), "key order");
        if let Err(e) = value_matches(v, jk) {
            panic!("key {k:?}: {e}");
        }
    }
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(f.tensors().len(), tensors.len(), "number of tensors");
    if !tensors.is_empty() {
        assert_eq!(f.data_offset(), j["data_offset"].as_u64().unwrap(), "data offset");
    }
    for (t, jt) in f.tensors().iter().zip(tensors) {
        assert_eq!(t.name, jt["name"].as_str().unwrap());
        let dims: Vec<u64> = jt["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(t.dims, dims, "{}: dims", t.name);
        assert_eq!(t.ggml_type.name(), jt["type"].as_str().unwrap(), "{}: type", t.name);
        assert_eq!(u64::from(t.ggml_type.id()), jt["type_id"].as_u64().unwrap(), "{}: type id", t.name);
        assert_eq!(t.offset, jt["offset"].as_u64().unwrap(), "{}: offset", t.name);
        assert_eq!(t.n_bytes, jt["n_bytes"].as_u64().unwrap(), "{}: n_bytes", t.name);
        if let Some(h) = jt.get("data_hex").and_then(J::as_str) {
            assert_eq!(f.tensor_data(t).unwrap(), hex(h).as_slice(), "{}: data", t.name);
        }
    }
}

/// Builds raw GGUF bytes field by field, valid or not.
#[derive(Default, Clone)]
pub struct Raw {
    pub b: Vec<u8>,
}

impl Raw {
    pub fn new() -> Self {
        Raw::default()
    }
    pub fn bytes(mut self, x: &[u8]) -> Self {
        self.b.extend_from_slice(x);
        self
    }
    pub fn u8(self, x: u8) -> Self {
        self.bytes(&[x])
    }
    pub fn u32(self, x: u32) -> Self {
        self.bytes(&x.to_le_bytes())
    }
    pub fn u64(self, x: u64) -> Self {
        self.bytes(&x.to_le_bytes())
    }
    pub fn i64(self, x: i64) -> Self {
        self.bytes(&x.to_le_bytes())
    }
    pub fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// `GGUF`, version, n_tensors, n_kv.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        Raw::new().bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv)
    }
    /// A key with a u32 value.
    pub fn kv_u32(self, key: &str, v: u32) -> Self {
        self.str(key).u32(4).u32(v)
    }
    pub fn kv_str(self, key: &str, v: &str) -> Self {
        self.str(key).u32(8).str(v)
    }
    /// A tensor info.
    pub fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for d in dims {
            r = r.u64(*d);
        }
        r.u32(ty).u64(offset)
    }
    /// Zero padding to a multiple of `align`.
    pub fn pad(mut self, align: usize) -> Self {
        while !self.b.len().is_multiple_of(align) {
            self.b.push(0);
        }
        self
    }
    pub fn zeros(mut self, n: usize) -> Self {
        self.b.resize(self.b.len() + n, 0);
        self
    }
    pub fn len(&self) -> usize {
        self.b.len()
    }
}
