//! Safetensors checkpoints: a single `model.safetensors` or a sharded set described by
//! `model.safetensors.index.json` (`{"weight_map": {tensor: file}}`), memory-mapped.
//!
//! Validation (via the `safetensors` crate's `read_metadata`, plus our own checks): header bounds,
//! tensor byte ranges that must tile the data section exactly (no overlap, no gap, no truncation),
//! dtype × shape = byte length, every index entry present in its shard, and no tensor in two shards.
//! FP8 / FP4 / FP6 and other dtypes tern does not run are rejected with the tensor named.

use crate::{FormatError, Result};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Element types tern reads from safetensors files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    U8,
    I8,
    I32,
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::U8 | DType::I8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
        }
    }
    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::I32 => "I32",
            DType::I64 => "I64",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor: its type, shape and bytes inside a shared memory map.
#[derive(Clone)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The file it lives in.
    pub file: Arc<PathBuf>,
    map: Arc<Mmap>,
    offset: usize,
    len: usize,
}

impl TensorEntry {
    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }
    /// The backing memory map and the byte range inside it (for zero-copy weight views).
    pub fn storage(&self) -> (Arc<Mmap>, usize, usize) {
        (Arc::clone(&self.map), self.offset, self.len)
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Values widened to f32 (F32/F16/BF16 only).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let b = self.bytes();
        Some(match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::BF16 => {
                b.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect()
            }
            DType::F16 => b.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            _ => return None,
        })
    }
    /// Integer values (I64/I32/U8/I8).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        let b = self.bytes();
        Some(match self.dtype {
            DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
            DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            DType::U8 => b.iter().map(|&x| x as i64).collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            _ => return None,
        })
    }
}

impl std::fmt::Debug for TensorEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}{:?} in {}", self.name, self.dtype, self.shape, self.file.display())
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: value = m * 2^-24
            let v = m as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// All tensors of a checkpoint, by name.
#[derive(Debug, Default)]
pub struct SafetensorsSet {
    pub tensors: BTreeMap<String, TensorEntry>,
    pub files: Vec<PathBuf>,
}

/// Memory-maps a file read-only.
#[allow(unsafe_code)]
pub fn map_file(path: &Path) -> Result<Mmap> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| FormatError::Io { path: p.clone(), source })?;
    // SAFETY: the map is read-only. Like every mmap-based loader (llama.cpp, candle, safetensors),
    // we rely on the model file not being truncated or rewritten by another process while mapped.
    unsafe { Mmap::map(&file) }.map_err(|source| FormatError::Io { path: p, source })
}

impl SafetensorsSet {
    /// Opens the weights of a model directory: `model.safetensors.index.json` if present, else
    /// `model.safetensors`, else every `*.safetensors` file in the directory.
    pub fn open_dir(dir: &Path) -> Result<SafetensorsSet> {
        let index = dir.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open_index(&index);
        }
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open_files(&[single]);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| FormatError::Io { path: dir.display().to_string(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(FormatError::NoWeights { path: dir.display().to_string() });
        }
        Self::open_files(&files)
    }

    /// Opens a sharded checkpoint from its index file.
    pub fn open_index(index: &Path) -> Result<SafetensorsSet> {
        let j = crate::json::JsonFile::read(index)?;
        let map = j.object("weight_map")?.ok_or_else(|| j.err("weight_map", "required field is missing"))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for (tensor, file) in &map.root {
            let f = file.as_str().ok_or_else(|| j.err("weight_map", format!("entry '{tensor}' is not a file name")))?;
            if f.contains("..") || Path::new(f).is_absolute() {
                return Err(j.err("weight_map", format!("entry '{tensor}' points outside the model directory: {f}")));
            }
            wanted.insert(tensor.clone(), f.to_string());
        }
        let mut shard_names: Vec<&String> = wanted.values().collect();
        shard_names.sort();
        shard_names.dedup();
        let files: Vec<PathBuf> = shard_names.iter().map(|f| dir.join(f)).collect();
        let set = Self::open_files(&files)?;
        for (tensor, f) in &wanted {
            let ok = set.tensors.get(tensor).is_some_and(|e| e.file.ends_with(f));
            if !ok {
                return Err(FormatError::MissingFromShard {
                    path: index.display().to_string(),
                    tensor: tensor.clone(),
                    expected_file: f.clone(),
                });
            }
        }
        Ok(set)
    }

    /// Opens and validates a list of safetensors files as one checkpoint.
    pub fn open_files(files: &[PathBuf]) -> Result<SafetensorsSet> {
        let mut set = SafetensorsSet::default();
        for path in files {
            let map = Arc::new(map_file(path)?);
            let file = Arc::new(path.clone());
            for entry in parse(path, &map, &file)? {
                if let Some(prev) = set.tensors.get(&entry.name) {
                    return Err(FormatError::DuplicateTensor {
                        tensor: entry.name.clone(),
                        first: prev.file.display().to_string(),
                        second: path.display().to_string(),
                    });
                }
                set.tensors.insert(entry.name.clone(), entry);
            }
            set.files.push(path.clone());
        }
        Ok(set)
    }

    /// A tensor by name.
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }
}

fn parse(path: &Path, map: &Arc<Mmap>, file: &Arc<PathBuf>) -> Result<Vec<TensorEntry>> {
    use ::safetensors::tensor::Dtype as D;
    let p = path.display().to_string();
    let (header, meta) = ::safetensors::SafeTensors::read_metadata(&map[..])
        .map_err(|e| FormatError::Safetensors { path: p.clone(), reason: describe(&e) })?;
    let data_start = 8 + header;
    let mut out = Vec::new();
    for (name, info) in meta.tensors() {
        let dtype = match info.dtype {
            D::F32 => DType::F32,
            D::F16 => DType::F16,
            D::BF16 => DType::BF16,
            D::U8 => DType::U8,
            D::I8 => DType::I8,
            D::I32 => DType::I32,
            D::I64 => DType::I64,
            other => {
                let s = format!("{other:?}");
                let hint = if s.starts_with("F8") || s.starts_with("F4") || s.starts_with("F6") {
                    " (FP8/FP4/FP6 checkpoints are not supported; use a BF16/F16 or a ternary/GGUF-quantized checkpoint)"
                } else {
                    ""
                };
                return Err(FormatError::UnsupportedDType { path: p, tensor: name, dtype: s, hint });
            }
        };
        let (s, e) = info.data_offsets;
        out.push(TensorEntry {
            name,
            dtype,
            shape: info.shape.clone(),
            file: Arc::clone(file),
            map: Arc::clone(map),
            offset: data_start + s,
            len: e - s,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn describe(e: &::safetensors::SafeTensorError) -> String {
    use ::safetensors::SafeTensorError as E;
    match e {
        E::MetadataIncompleteBuffer => "the file length does not match its header (truncated or trailing bytes)".into(),
        E::InvalidOffset(t) => format!("tensor '{t}' has byte offsets that overlap, leave a gap, or run past the data"),
        E::TensorInvalidInfo => "a tensor's dtype × shape does not match its byte range".into(),
        E::HeaderTooSmall => "file shorter than the 8-byte header length".into(),
        E::InvalidHeaderLength => "header length points past the end of the file".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_st(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
        f.write_all(header.as_bytes()).unwrap();
        f.write_all(data).unwrap();
        p
    }

    #[test]
    fn reads_and_rejects() {
        let d = tempfile::tempdir().unwrap();
        let ok = write_st(
            d.path(),
            "a.safetensors",
            r#"{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
            &[0, 0x3f, 0, 0x40, 7, 8],
        );
        let set = SafetensorsSet::open_files(&[ok]).unwrap();
        assert_eq!(set.get("w").unwrap().to_f32().unwrap(), vec![0.5, 2.0]);
        assert_eq!(set.get("b").unwrap().bytes(), &[7, 8]);

        let trunc =
            write_st(d.path(), "t.safetensors", r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0; 7]);
        let e = SafetensorsSet::open_files(&[trunc]).unwrap_err().to_string();
        assert!(e.contains("t.safetensors") && e.contains("truncated"), "{e}");

        let overlap = write_st(
            d.path(),
            "o.safetensors",
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
            &[0; 6],
        );
        let e = SafetensorsSet::open_files(&[overlap]).unwrap_err().to_string();
        assert!(e.contains("o.safetensors"), "{e}");

        let f8 = write_st(
            d.path(),
            "f8.safetensors",
            r#"{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#,
            &[0; 2],
        );
        let e = SafetensorsSet::open_files(&[f8]).unwrap_err().to_string();
        assert!(e.contains("'w'") && e.contains("F8_E4M3") && e.contains("not supported"), "{e}");
    }

    #[test]
    fn sharded_index() {
        let d = tempfile::tempdir().unwrap();
        write_st(d.path(), "s1.safetensors", r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, &[1]);
        write_st(d.path(), "s2.safetensors", r#"{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, &[2]);
        std::fs::write(
            d.path().join("model.safetensors.index.json"),
            r#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}"#,
        )
        .unwrap();
        let set = SafetensorsSet::open_dir(d.path()).unwrap();
        assert_eq!(set.tensors.len(), 2);
        std::fs::write(
            d.path().join("model.safetensors.index.json"),
            r#"{"weight_map":{"a":"s2.safetensors","b":"s2.safetensors"}}"#,
        )
        .unwrap();
        let e = SafetensorsSet::open_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("'a'") && e.contains("s2.safetensors"), "{e}");
        // duplicate tensor across shards
        write_st(d.path(), "s3.safetensors", r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, &[3]);
        std::fs::write(
            d.path().join("model.safetensors.index.json"),
            r#"{"weight_map":{"a":"s1.safetensors","x":"s3.safetensors"}}"#,
        )
        .unwrap();
        let e = SafetensorsSet::open_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("appears in both"), "{e}");
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
