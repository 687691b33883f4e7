//! Just enough of the model file formats for `tern ls`: the GGUF key/value section (to read
//! `general.architecture` and `general.file_type`, following the GGUF v2/v3 layout of ggml's
//! `docs/gguf.md` and the `llama_ftype` names of llama.cpp's `include/llama.h`), the safetensors JSON
//! header (tensor dtypes, per the safetensors format spec), and `config.json`'s `model_type`.
//! Everything is read through bounded, checked reads: a hostile file yields an error, never a panic
//! or a huge allocation.

use crate::error::{HubError, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// What a GGUF header says about the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GgufSummary {
    pub architecture: Option<String>,
    /// `general.file_type` (a `llama_ftype`).
    pub file_type: Option<u32>,
}

/// llama.cpp's name of a `llama_ftype` (`LLAMA_FTYPE_MOSTLY_Q4_K_M` → `Q4_K_M`).
pub fn file_type_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

const MAX_KV: u64 = 1 << 20;
const MAX_KEY: u64 = 1 << 16;
const MAX_DEPTH: usize = 3;

struct Rd<'a> {
    r: BufReader<File>,
    path: &'a Path,
    size: u64,
    pos: u64,
}

impl Rd<'_> {
    fn err(&self, reason: String) -> HubError {
        HubError::BadFile { path: self.path.to_path_buf(), reason: format!("GGUF at byte {}: {reason}", self.pos) }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| self.err(format!("reading {what}: {e}")))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        if n > self.size.saturating_sub(self.pos) {
            return Err(
                self.err(format!("{what} needs {n} bytes but only {} remain", self.size - self.pos.min(self.size)))
            );
        }
        let n_i64 = i64::try_from(n).map_err(|_| self.err(format!("{what}: length {n} too large")))?;
        self.r.seek_relative(n_i64).map_err(|e| self.err(format!("skipping {what}: {e}")))?;
        self.pos += n;
        Ok(())
    }

    fn string(&mut self, max: u64, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > max || n > self.size.saturating_sub(self.pos) {
            return Err(self.err(format!("{what}: string length {n} exceeds the limit or the file")));
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b).map_err(|e| self.err(format!("reading {what}: {e}")))?;
        self.pos += n;
        String::from_utf8(b).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }

    /// Skips a value of GGUF type `t`.
    fn skip_value(&mut self, t: u32, key: &str, depth: usize) -> Result<()> {
        match t {
            8 => {
                let n = self.u64(key)?;
                self.skip(n, key)
            }
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(format!("{key}: arrays nested deeper than {MAX_DEPTH}")));
                }
                let et = self.u32(key)?;
                let n = self.u64(key)?;
                match scalar_size(et) {
                    Some(sz) => {
                        let total = n.checked_mul(sz).ok_or_else(|| self.err(format!("{key}: array too large")))?;
                        self.skip(total, key)
                    }
                    None if et == 8 || et == 9 => {
                        // Each element needs at least 8 bytes (a length): bound n before looping.
                        if n > self.size.saturating_sub(self.pos) / 8 {
                            return Err(self.err(format!("{key}: array of {n} elements exceeds the file")));
                        }
                        for _ in 0..n {
                            self.skip_value(et, key, depth + 1)?;
                        }
                        Ok(())
                    }
                    None => Err(self.err(format!("{key}: invalid array element type {et}"))),
                }
            }
            _ => match scalar_size(t) {
                Some(sz) => self.skip(sz, key),
                None => Err(self.err(format!("{key}: invalid value type {t} (expected 0..=12)"))),
            },
        }
    }

    fn int_value(&mut self, t: u32, key: &str) -> Result<Option<u64>> {
        Ok(match t {
            0 | 1 => Some(self.bytes::<1>(key)?[0] as u64),
            2 | 3 => Some(u16::from_le_bytes(self.bytes::<2>(key)?) as u64),
            4 | 5 => Some(self.u32(key)? as u64),
            10 | 11 => Some(self.u64(key)?),
            _ => {
                self.skip_value(t, key, 0)?;
                None
            }
        })
    }
}

fn scalar_size(t: u32) -> Option<u64> {
    match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Reads `general.architecture` and `general.file_type` from a GGUF file's header.
pub fn gguf_summary(path: &Path) -> Result<GgufSummary> {
    let f = File::open(path).map_err(|e| HubError::io(path, "open", e))?;
    let size = f.metadata().map_err(|e| HubError::io(path, "stat", e))?.len();
    let mut rd = Rd { r: BufReader::with_capacity(1 << 16, f), path, size, pos: 0 };
    let magic = rd.bytes::<4>("magic")?;
    if &magic != b"GGUF" {
        return Err(rd.err(format!("bad magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version = rd.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(rd.err(format!("unsupported version {version} (expected 2 or 3)")));
    }
    let _tensors = rd.u64("tensor count")?;
    let n_kv = rd.u64("metadata count")?;
    if n_kv > MAX_KV {
        return Err(rd.err(format!("metadata count {n_kv} exceeds {MAX_KV}")));
    }
    let mut out = GgufSummary::default();
    for _ in 0..n_kv {
        let key = rd.string(MAX_KEY, "metadata key")?;
        let t = rd.u32(&key)?;
        match key.as_str() {
            "general.architecture" if t == 8 => out.architecture = Some(rd.string(MAX_KEY, &key)?),
            "general.file_type" => out.file_type = rd.int_value(t, &key)?.and_then(|v| u32::try_from(v).ok()),
            _ => rd.skip_value(t, &key, 0)?,
        }
        if out.architecture.is_some() && out.file_type.is_some() {
            break;
        }
    }
    Ok(out)
}

/// The distinct tensor dtypes (`BF16`, `F32`, `U8`, …) of a safetensors file, from its JSON header.
pub fn safetensors_dtypes(path: &Path) -> Result<BTreeSet<String>> {
    let bad = |reason: String| HubError::BadFile {
        path: path.to_path_buf(),
        reason: format!("safetensors header: {reason}"),
    };
    let mut f = File::open(path).map_err(|e| HubError::io(path, "open", e))?;
    let size = f.metadata().map_err(|e| HubError::io(path, "stat", e))?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| bad(format!("reading the 8-byte length: {e}")))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 || n > size.saturating_sub(8) {
        return Err(bad(format!("header length {n} exceeds 100 MiB or the file size {size}")));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).map_err(|e| bad(format!("reading {n} header bytes: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
    let mut out = BTreeSet::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dt = t.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad(format!("tensor {name:?} has no dtype")))?;
        out.insert(dt.to_string());
    }
    Ok(out)
}

/// `model_type` of a `config.json`.
pub fn config_model_type(path: &Path) -> Result<Option<String>> {
    let meta = std::fs::metadata(path).map_err(|e| HubError::io(path, "stat", e))?;
    if meta.len() > 16 << 20 {
        return Err(HubError::BadFile { path: path.to_path_buf(), reason: "config.json larger than 16 MiB".into() });
    }
    let bytes = std::fs::read(path).map_err(|e| HubError::io(path, "read", e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| HubError::BadFile { path: path.to_path_buf(), reason: format!("invalid JSON: {e}") })?;
    Ok(v.get("model_type").and_then(|m| m.as_str()).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn kv_str(out: &mut Vec<u8>, k: &str, v: &str) {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(k.as_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend((v.len() as u64).to_le_bytes());
        out.extend(v.as_bytes());
    }

    #[test]
    fn hostile_gguf_headers_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gguf");
        let mut h = b"GGUF".to_vec();
        h.extend(3u32.to_le_bytes());
        h.extend(0u64.to_le_bytes());
        h.extend(3u64.to_le_bytes());
        // An array of strings claiming 2^60 elements.
        let k = "tokenizer.ggml.tokens";
        h.extend((k.len() as u64).to_le_bytes());
        h.extend(k.as_bytes());
        h.extend(9u32.to_le_bytes());
        h.extend(8u32.to_le_bytes());
        h.extend((1u64 << 60).to_le_bytes());
        std::fs::File::create(&p).unwrap().write_all(&h).unwrap();
        let e = gguf_summary(&p).unwrap_err().to_string();
        assert!(e.contains("exceeds the file"), "{e}");
        // Truncated string, bad magic, bad version.
        let mut h2 = b"GGUF".to_vec();
        h2.extend(3u32.to_le_bytes());
        h2.extend(0u64.to_le_bytes());
        h2.extend(1u64.to_le_bytes());
        kv_str(&mut h2, "general.architecture", "llama");
        h2.truncate(h2.len() - 2);
        std::fs::write(&p, &h2).unwrap();
        assert!(gguf_summary(&p).is_err());
        std::fs::write(&p, b"GGML\x03\0\0\0").unwrap();
        assert!(gguf_summary(&p).unwrap_err().to_string().contains("bad magic"));
        std::fs::write(&p, b"GGUF\x09\0\0\0").unwrap();
        assert!(gguf_summary(&p).unwrap_err().to_string().contains("version 9"));
        let s = dir.path().join("x.safetensors");
        std::fs::write(&s, (1u64 << 40).to_le_bytes()).unwrap();
        assert!(safetensors_dtypes(&s).is_err());
    }
}
