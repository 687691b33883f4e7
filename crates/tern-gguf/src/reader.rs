//! GGUF v2/v3 reader: header, metadata, tensor infos, and memory-mapped tensor data.
//!
//! Layout (GGUF spec, llama.cpp `ggml/src/gguf.cpp`, gguf-py `gguf_reader.py`), all little-endian:
//! `"GGUF"`, `u32 version`, `u64 n_tensors`, `u64 n_kv`, then `n_kv` × (`string key`, `u32 type`,
//! value), then `n_tensors` × (`string name`, `u32 n_dims`, `u64 ne[n_dims]`, `u32 ggml_type`,
//! `u64 offset`), padding to `general.alignment` (default 32), then the data section; each tensor's
//! `offset` is relative to the start of the data section. A string is `u64 len` + bytes; an array is
//! `u32 element type` + `u64 count` + elements. GGUFv1 (32-bit counts) is rejected, v2 and v3 parse
//! identically (v3 only added big-endian files, which are rejected with a hint, as llama.cpp does).
//!
//! Hardening mirrors llama.cpp's gguf.cpp and goes further where it is cheap:
//! * every count, length, offset and size is checked against the bytes that remain, with checked
//!   arithmetic, **before** anything is allocated (a count of 2^60 allocates nothing);
//! * strings and arrays hold at most 2^30 elements, arrays nest at most 64 deep, tensors have at most
//!   4 dims, every dim is ≥ 1 and the element count fits in i64;
//! * duplicate keys, duplicate tensor names, empty keys, tensor names of 64 bytes or more, unknown
//!   value types and unknown tensor types are errors naming the key or tensor;
//! * `general.alignment` must be a u32 power of two; tensor offsets must be aligned, lie inside the
//!   file and not overlap; `ne0` must be a multiple of the type's block size.
//!
//! Unlike llama.cpp, tensors need not be stored in declaration order with no gaps (gguf-py and
//! llama.cpp only ever write them that way; reading is permissive about order, strict about overlap).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{origin_name, GgufError, Result};
use crate::types::{resolve_type_id, GgmlType, TypeIdDialect, TypeIdResolution};
use crate::value::{Array, GgufString, Metadata, Value, ValueType};

/// The four magic bytes at the start of every GGUF file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Maximum bytes in a string (llama.cpp `GGUF_MAX_STRING_LENGTH`).
pub const MAX_STRING_LEN: u64 = 1 << 30;
/// Maximum elements in an array (llama.cpp `GGUF_MAX_ARRAY_ELEMENTS`).
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
/// Maximum nesting depth of arrays (a top-level array is depth 1).
pub const MAX_ARRAY_NESTING: usize = 64;
/// Maximum tensor dimensions (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Maximum tensor name length in bytes (`GGML_MAX_NAME - 1`).
pub const MAX_TENSOR_NAME_LEN: usize = 63;
/// Alignment used when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Options for [`GgufFile::open_with`] and [`GgufFile::from_bytes_with`].
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// How ggml type ids ≥ 36 are interpreted (see [`TypeIdDialect`]).
    pub type_id_dialect: TypeIdDialect,
}

/// One tensor's description from the tensor-info table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Dimensions in ggml order (`ne[0]`, the contiguous row length, first).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes (ggml's `ggml_nbytes`).
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (product of dims; 1 for zero dims). Infos from a parsed file fit in i64;
    /// a hand-made info whose product overflows saturates at `u64::MAX`.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).unwrap_or(u64::MAX)
    }

    /// Row length `ne[0]` (1 for a zero-dim tensor).
    pub fn ne0(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of `dims[1..]`, saturating like [`TensorInfo::n_elements`]).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).try_fold(1u64, |acc, &d| acc.checked_mul(d)).unwrap_or(u64::MAX)
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
    Shared(Arc<[u8]>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Shared(b) => b,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in the mapped file (or the given buffer).
pub struct GgufFile {
    path: Option<PathBuf>,
    origin: String,
    backing: Backing,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_start: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("origin", &self.origin)
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_start", &self.data_start)
            .finish()
    }
}

impl GgufFile {
    /// Open and memory-map a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        Self::open_with(path, &ReadOptions::default())
    }

    /// Open and memory-map a GGUF file with options.
    pub fn open_with(path: impl AsRef<Path>, options: &ReadOptions) -> Result<GgufFile> {
        let path = path.as_ref();
        let origin = origin_name(Some(path));
        let io = |op: &'static str| {
            let origin = origin.clone();
            move |source| GgufError::Io { path: origin, op, source }
        };
        let file = std::fs::File::open(path).map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        let backing = if len == 0 {
            // Mapping an empty file fails on some platforms; it is rejected by the parser anyway.
            Backing::Shared(Arc::from(Vec::new()))
        } else {
            // SAFETY: the map is read-only and private to this process. As with any mmap, another
            // process truncating or rewriting the file while it is mapped could change or fault the
            // bytes under us; model files are treated as immutable while open, as llama.cpp does.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("mmap"))?;
            Backing::Mmap(map)
        };
        Self::parse(Some(path.to_path_buf()), origin, backing, options)
    }

    /// Parse a GGUF image held in memory (useful for tests and embedded files).
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Result<GgufFile> {
        Self::from_bytes_with(bytes, &ReadOptions::default())
    }

    /// Parse a GGUF image held in memory, with options.
    pub fn from_bytes_with(bytes: impl Into<Arc<[u8]>>, options: &ReadOptions) -> Result<GgufFile> {
        Self::parse(None, origin_name(None), Backing::Shared(bytes.into()), options)
    }

    fn parse(path: Option<PathBuf>, origin: String, backing: Backing, options: &ReadOptions) -> Result<GgufFile> {
        let parsed = Parser::new(backing.bytes(), &origin).parse_all(options)?;
        let tensor_index = parsed.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(GgufFile {
            path,
            origin,
            backing,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            tensor_index,
            alignment: parsed.alignment,
            data_start: parsed.data_start,
        })
    }

    /// The file path, if opened from a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The metadata, in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// `general.architecture`, if present and a UTF-8 string.
    pub fn architecture(&self) -> Option<&str> {
        match self.metadata.get("general.architecture") {
            Some(Value::String(s)) => s.to_str(),
            _ => None,
        }
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor info named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor info named `name`, or an error naming it.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor { path: self.origin.clone(), name: name.to_string() })
    }

    /// Alignment of the data section and of every tensor offset.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_start
    }

    /// The whole file image.
    pub fn as_bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// The raw bytes of a tensor (`info.n_bytes` long). Fails only for an info that does not belong to
    /// this file.
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<&[u8]> {
        let bytes = self.backing.bytes();
        let out_of_range = || GgufError::TensorOutOfRange {
            path: self.origin.clone(),
            name: info.name.clone(),
            start: info.offset,
            size: info.n_bytes,
            data_start: self.data_start,
            file_len: bytes.len() as u64,
        };
        let start = self.data_start.checked_add(info.offset).ok_or_else(out_of_range)?;
        let end = start.checked_add(info.n_bytes).ok_or_else(out_of_range)?;
        let start = usize::try_from(start).map_err(|_| out_of_range())?;
        let end = usize::try_from(end).map_err(|_| out_of_range())?;
        bytes.get(start..end).ok_or_else(out_of_range)
    }

    /// Dequantize a whole tensor to f32 with the reference dequantizers.
    pub fn dequantize_tensor(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let data = self.tensor_data(info)?;
        if !info.ggml_type.can_dequantize() {
            return Err(GgufError::UnsupportedType {
                path: self.origin.clone(),
                tensor: info.name.clone(),
                ty: info.ggml_type,
                op: "dequantization",
            });
        }
        let n = usize::try_from(info.n_elements()).map_err(|_| GgufError::SizeOverflow {
            path: self.origin.clone(),
            name: info.name.clone(),
            dims: info.dims.clone(),
            ty: info.ggml_type.to_string(),
            what: "element count (usize)",
        })?;
        Ok(crate::quant::dequantize(info.ggml_type, data, n)?)
    }
}

struct Parsed {
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    origin: &'a str,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8], origin: &'a str) -> Self {
        Parser { buf, pos: 0, origin }
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn path(&self) -> String {
        self.origin.to_string()
    }

    fn truncated(&self, what: impl Into<String>, needed: u64) -> GgufError {
        GgufError::Truncated {
            path: self.path(),
            what: what.into(),
            offset: self.pos as u64,
            needed,
            available: self.remaining(),
        }
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.truncated(what(), n));
        }
        // n <= remaining <= usize::MAX
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Check that `count` elements of at least `min_size` bytes each can still be present.
    fn check_count(&self, what: &dyn Fn() -> String, count: u64, limit: u64, min_size: u64) -> Result<()> {
        if count > limit {
            return Err(GgufError::CountTooLarge { path: self.path(), what: what(), found: count, max: limit });
        }
        match count.checked_mul(min_size) {
            Some(need) if need <= self.remaining() => Ok(()),
            _ => Err(self.truncated(
                format!("{} ({count} elements of at least {min_size} bytes)", what()),
                count.saturating_mul(min_size),
            )),
        }
    }

    fn string_bytes(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let len = self.u64(&|| format!("{} length", what()))?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::CountTooLarge {
                path: self.path(),
                what: format!("{} length", what()),
                found: len,
                max: MAX_STRING_LEN,
            });
        }
        self.take(len, what)
    }

    fn utf8(&self, bytes: &[u8], what: &dyn Fn() -> String) -> Result<String> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(GgufError::InvalidUtf8 {
                path: self.path(),
                what: format!("{} {:?}", what(), String::from_utf8_lossy(bytes)),
            }),
        }
    }

    fn parse_all(mut self, options: &ReadOptions) -> Result<Parsed> {
        // Header.
        let magic = self.take(4, &|| "magic".into()).map_err(|_| GgufError::BadMagic {
            path: self.path(),
            found: self.buf[..self.buf.len().min(4)].to_vec(),
        })?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { path: self.path(), found: magic.to_vec() });
        }
        let version = self.u32(&|| "version".into())?;
        let bad_version =
            |hint: &'static str| GgufError::UnsupportedVersion { path: self.path(), found: version, hint };
        match version {
            2 | 3 => {}
            0 => return Err(bad_version("")),
            1 => return Err(bad_version(" (GGUFv1 is no longer supported; re-convert the model)")),
            v if v & 0xFFFF == 0 => return Err(bad_version(" (looks byte-swapped: a big-endian GGUF file?)")),
            _ => return Err(bad_version(" (newer than this reader)")),
        }
        let n_tensors = self.u64(&|| "tensor count".into())?;
        let n_kv = self.u64(&|| "metadata key/value count".into())?;
        // Minimum encodings: a KV is key len (8) + 1 key byte + type (4) + 1 value byte; a tensor info is
        // name len (8) + n_dims (4) + type (4) + offset (8).
        self.check_count(&|| "metadata key/value count".into(), n_kv, i64::MAX as u64, 14)?;
        self.check_count(&|| "tensor count".into(), n_tensors, i64::MAX as u64, 24)?;

        // Metadata.
        let mut metadata = Metadata::with_origin(self.path());
        for i in 0..n_kv {
            let what_key = || format!("metadata key #{i}");
            let key_bytes = self.string_bytes(&what_key)?;
            if key_bytes.is_empty() {
                return Err(GgufError::EmptyKey { path: self.path(), index: i });
            }
            let key = self.utf8(key_bytes, &what_key)?;
            let type_id = self.u32(&|| format!("value type of key {key:?}"))?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::InvalidValueType {
                path: self.path(),
                key: key.clone(),
                found: type_id,
            })?;
            let value = self.value(ty, &key, 0)?;
            if let Err(first) = metadata.insert_new(key.clone(), value) {
                return Err(GgufError::DuplicateKey { path: self.path(), key, first, second: i as usize });
            }
        }

        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => u64::from(DEFAULT_ALIGNMENT),
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(Value::U32(a)) => return Err(GgufError::BadAlignment { path: self.path(), found: a.to_string() }),
            Some(other) => {
                return Err(GgufError::BadAlignment {
                    path: self.path(),
                    found: format!("a value of type {}", other.describe()),
                })
            }
        };
        let architecture = match metadata.get("general.architecture") {
            Some(Value::String(s)) => s.to_str().map(str::to_string),
            _ => None,
        };

        // Tensor infos.
        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
        let mut names: HashMap<String, usize> = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let what_name = || format!("tensor #{i} name");
            let name_bytes = self.string_bytes(&what_name)?;
            let name = self.utf8(name_bytes, &what_name)?;
            if name.len() > MAX_TENSOR_NAME_LEN {
                return Err(GgufError::TensorNameTooLong {
                    path: self.path(),
                    index: i,
                    len: name.len(),
                    name,
                    max: MAX_TENSOR_NAME_LEN,
                });
            }
            if let Some(&first) = names.get(&name) {
                return Err(GgufError::DuplicateTensor { path: self.path(), name, first, second: i as usize });
            }
            let n_dims = self.u32(&|| format!("tensor {name:?} n_dims"))?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::TooManyDims { path: self.path(), name, found: n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims as usize {
                let raw = self.u64(&|| format!("tensor {name:?} dim {d}"))?;
                let signed = raw as i64;
                if signed < 1 {
                    return Err(GgufError::BadDim { path: self.path(), name, index: d, found: signed });
                }
                dims.push(raw);
            }
            let type_id = self.u32(&|| format!("tensor {name:?} type"))?;
            let offset = self.u64(&|| format!("tensor {name:?} offset"))?;

            let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&p| p <= i64::MAX as u64));
            let ggml_type = match resolve_type_id(type_id, options.type_id_dialect, architecture.as_deref()) {
                TypeIdResolution::Known(t) => t,
                TypeIdResolution::Unknown => {
                    return Err(GgufError::UnknownType { path: self.path(), name, id: type_id })
                }
                TypeIdResolution::Ambiguous(reason) => {
                    return Err(GgufError::AmbiguousType { path: self.path(), name, id: type_id, reason })
                }
            };
            if n_elements.is_none() {
                return Err(GgufError::SizeOverflow {
                    path: self.path(),
                    name,
                    dims,
                    ty: ggml_type.to_string(),
                    what: "element count",
                });
            }
            let ne0 = dims.first().copied().unwrap_or(1);
            let block = ggml_type.block_size();
            if ne0 % block != 0 {
                return Err(GgufError::BlockMisaligned { path: self.path(), name, ty: ggml_type, ne0, block });
            }
            let n_bytes = match ggml_type.storage_size(&dims) {
                Some(n) if n <= isize::MAX as u64 => n,
                Some(_) => {
                    return Err(GgufError::SizeOverflow {
                        path: self.path(),
                        name,
                        dims,
                        ty: ggml_type.to_string(),
                        what: "byte size",
                    })
                }
                None if matches!(ggml_type, GgmlType::I8_S) || (ggml_type == GgmlType::TL2 && ne0 < 256) => {
                    return Err(GgufError::UnsizedType { path: self.path(), name, ty: ggml_type })
                }
                None => {
                    return Err(GgufError::SizeOverflow {
                        path: self.path(),
                        name,
                        dims,
                        ty: ggml_type.to_string(),
                        what: "byte size",
                    })
                }
            };
            names.insert(name.clone(), i as usize);
            tensors.push(TensorInfo { name, dims, ggml_type, offset, n_bytes });
        }

        // Data section: starts at the next multiple of the alignment.
        let file_len = self.buf.len() as u64;
        let pos = self.pos as u64;
        let data_start = pos
            .checked_add((alignment - pos % alignment) % alignment)
            .filter(|&s| s <= file_len || tensors.is_empty())
            .ok_or_else(|| {
                self.truncated("padding before the tensor data section", (alignment - pos % alignment) % alignment)
            })?;

        for t in &tensors {
            if t.offset % alignment != 0 {
                return Err(GgufError::MisalignedOffset {
                    path: self.path(),
                    name: t.name.clone(),
                    offset: t.offset,
                    alignment,
                });
            }
            let end = data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
            if end.is_none_or(|e| e > file_len) {
                return Err(GgufError::TensorOutOfRange {
                    path: self.path(),
                    name: t.name.clone(),
                    start: t.offset,
                    size: t.n_bytes,
                    data_start,
                    file_len,
                });
            }
        }
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].offset);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            // In range (checked above), so no overflow.
            let a_end = a.offset + a.n_bytes;
            if a_end > b.offset {
                return Err(GgufError::TensorOverlap {
                    path: self.path(),
                    name: b.name.clone(),
                    start: b.offset,
                    end: b.offset + b.n_bytes,
                    other: a.name.clone(),
                    other_start: a.offset,
                    other_end: a_end,
                });
            }
        }

        Ok(Parsed { version, metadata, tensors, alignment, data_start })
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        let what = || format!("value of key {key:?}");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(&what)?[0] != 0),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::String => Value::String(GgufString::from(self.string_bytes(&what)?.to_vec())),
            ValueType::Array => Value::Array(self.array_value(key, depth + 1)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array> {
        if depth > MAX_ARRAY_NESTING {
            return Err(GgufError::NestingTooDeep { path: self.path(), key: key.to_string(), max: MAX_ARRAY_NESTING });
        }
        let what = || format!("array of key {key:?}");
        let type_id = self.u32(&|| format!("array element type of key {key:?}"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::InvalidValueType {
            path: self.path(),
            key: key.to_string(),
            found: type_id,
        })?;
        let n = self.u64(&|| format!("array length of key {key:?}"))?;
        self.check_count(&|| format!("array length of key {key:?}"), n, MAX_ARRAY_LEN, ty.min_encoded_size() as u64)?;
        // Bounded by the check above: n <= 2^30 and n * size <= remaining bytes.
        let n = n as usize;

        macro_rules! fixed {
            ($v:ident, $t:ty) => {{
                const W: usize = std::mem::size_of::<$t>();
                let bytes = self.take((n * W) as u64, &what)?;
                Array::$v(
                    bytes
                        .chunks_exact(W)
                        .map(|c| {
                            let mut a = [0u8; W];
                            a.copy_from_slice(c);
                            <$t>::from_le_bytes(a)
                        })
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            ValueType::U8 => Array::U8(self.take(n as u64, &what)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(n as u64, &what)?.iter().map(|&b| b as i8).collect()),
            ValueType::Bool => Array::Bool(self.take(n as u64, &what)?.iter().map(|&b| b != 0).collect()),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for j in 0..n {
                    let s = self.string_bytes(&|| format!("element {j} of array key {key:?}"))?;
                    v.push(GgufString::from(s.to_vec()));
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}
