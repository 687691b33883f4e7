//! GGUF v3 writer: metadata, tensor infos, then tensor data streamed one tensor at a time.
//!
//! Produces the same bytes as gguf-py's `GGUFWriter` (`write_header_to_file`, `write_kv_data_to_file`,
//! `write_tensors_to_file`) for the same keys, tensors and alignment: little-endian header with version
//! 3, keys in insertion order, tensor infos with dims in ggml order and offsets that are each padded to
//! the alignment, zero padding to the alignment before the data section and after every tensor
//! (including the last). The alignment is 32 unless a `general.alignment` u32 key is added (before any
//! tensor), as in llama.cpp's `gguf_write_to_buf`.
//!
//! ```no_run
//! # fn main() -> tern_gguf::Result<()> {
//! use tern_gguf::{GgmlType, GgufWriter};
//! let mut w = GgufWriter::new();
//! w.add_kv("general.architecture", "llama")?;
//! w.add_tensor("tok_embd.weight", &[64, 10], GgmlType::F16)?;
//! let mut data = w.create("out.gguf")?;
//! data.write_tensor_f32("tok_embd.weight", &vec![0.5; 640])?;
//! data.finish()?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::error::{origin_name, GgufError, Result};
use crate::reader::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_NESTING, MAX_DIMS, MAX_TENSOR_NAME_LEN};
use crate::types::{resolve_type_id, GgmlType, TypeIdDialect, TypeIdResolution};
use crate::value::{Array, Metadata, Value};
use crate::TensorInfo;

/// Collects metadata and tensor declarations, then writes the header.
#[derive(Debug)]
pub struct GgufWriter {
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    names: HashMap<String, usize>,
    alignment: u64,
    next_offset: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn writer_err(path: &str, problem: impl Into<String>) -> GgufError {
    GgufError::Writer { path: path.to_string(), problem: problem.into() }
}

fn pad_len(n: u64, alignment: u64) -> u64 {
    (alignment - n % alignment) % alignment
}

impl GgufWriter {
    /// An empty writer (alignment 32).
    pub fn new() -> Self {
        GgufWriter {
            metadata: Metadata::with_origin("<writer>".to_string()),
            tensors: Vec::new(),
            names: HashMap::new(),
            alignment: u64::from(DEFAULT_ALIGNMENT),
            next_offset: 0,
        }
    }

    /// Add a metadata key. Keys must be non-empty and unique; `general.alignment` must be a u32 power
    /// of two and be added before any tensor. Arrays may nest up to 64 levels.
    pub fn add_kv(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Result<&mut Self> {
        let key = key.into();
        let value = value.into();
        if key.is_empty() {
            return Err(writer_err("<writer>", "empty metadata key"));
        }
        if self.metadata.contains_key(&key) {
            return Err(writer_err("<writer>", format!("duplicate metadata key {key:?}")));
        }
        if key == ALIGNMENT_KEY {
            match value {
                Value::U32(a) if a.is_power_of_two() => {
                    if !self.tensors.is_empty() {
                        return Err(writer_err("<writer>", "general.alignment must be set before tensors are added"));
                    }
                    self.alignment = u64::from(a);
                }
                ref other => {
                    return Err(writer_err(
                        "<writer>",
                        format!("general.alignment must be a u32 power of two, got {other:?}"),
                    ))
                }
            }
        }
        if let Value::Array(a) = &value {
            if nesting_depth(a) > MAX_ARRAY_NESTING {
                return Err(writer_err(
                    "<writer>",
                    format!("key {key:?}: arrays nested deeper than {MAX_ARRAY_NESTING}"),
                ));
            }
        }
        // Uniqueness was checked above.
        let _ = self.metadata.insert_new(key, value);
        Ok(self)
    }

    /// Declare a tensor with dims in ggml order (`ne0` first). Data is written later, in declaration
    /// order, through [`TensorDataWriter`].
    pub fn add_tensor(&mut self, name: impl Into<String>, dims: &[u64], ty: GgmlType) -> Result<&mut Self> {
        let name = name.into();
        let bad = |problem: String| writer_err("<writer>", format!("tensor {name:?}: {problem}"));
        if name.len() > MAX_TENSOR_NAME_LEN {
            return Err(bad(format!("name is {} bytes, at most {MAX_TENSOR_NAME_LEN} allowed", name.len())));
        }
        if let Some(&i) = self.names.get(&name) {
            return Err(bad(format!("duplicate tensor name (already tensor #{i})")));
        }
        if dims.len() > MAX_DIMS {
            return Err(bad(format!("{} dims, at most {MAX_DIMS} allowed", dims.len())));
        }
        if let Some((i, d)) = dims.iter().enumerate().find(|(_, &d)| d == 0 || d > i64::MAX as u64) {
            return Err(bad(format!("dimension {i} is {d}, expected 1..=i64::MAX")));
        }
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0 % ty.block_size() != 0 {
            return Err(bad(format!("ne0 = {ne0} is not a multiple of the {ty} block size {}", ty.block_size())));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&p| p <= i64::MAX as u64))
            .ok_or_else(|| bad("element count overflows".to_string()))?;
        let n_bytes = ty
            .storage_size(dims)
            .filter(|&n| n <= isize::MAX as u64)
            .ok_or_else(|| bad(format!("{n_elements} elements of {ty} have no representable size")))?;
        let offset = self.next_offset;
        self.next_offset = n_bytes
            .checked_add(pad_len(n_bytes, self.alignment))
            .and_then(|p| offset.checked_add(p))
            .ok_or_else(|| bad("data section size overflows".to_string()))?;
        self.names.insert(name.clone(), self.tensors.len());
        self.tensors.push(TensorInfo { name, dims: dims.to_vec(), ggml_type: ty, offset, n_bytes });
        Ok(self)
    }

    /// The metadata added so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tensors declared so far, with their offsets.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The alignment in effect.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Encode the header (everything before the data section, including its padding).
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&GGUF_MAGIC);
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in self.metadata.iter() {
            put_str(&mut b, k.as_bytes());
            b.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut b, v);
        }
        for t in &self.tensors {
            put_str(&mut b, t.name.as_bytes());
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            b.extend_from_slice(&t.offset.to_le_bytes());
        }
        let pad = pad_len(b.len() as u64, self.alignment) as usize;
        b.resize(b.len() + pad, 0);
        b
    }

    /// Write the header to `out` and return the writer for the tensor data.
    pub fn write_header<W: Write>(self, out: W) -> Result<TensorDataWriter<W>> {
        self.start(out, "<writer>".to_string())
    }

    /// Create (truncate) the file at `path`, write the header, and return the tensor data writer.
    pub fn create(self, path: impl AsRef<Path>) -> Result<TensorDataWriter<std::io::BufWriter<std::fs::File>>> {
        let origin = origin_name(Some(path.as_ref()));
        self.check_type_ids(&origin)?;
        let file = std::fs::File::create(path.as_ref()).map_err(|source| GgufError::Io {
            path: origin.clone(),
            op: "create",
            source,
        })?;
        self.start(std::io::BufWriter::new(file), origin)
    }

    /// Every tensor's type id must read back as the same type under the file's architecture (see
    /// [`crate::types::TypeIdDialect::Auto`]), so bitnet.cpp types need a bitnet architecture and
    /// upstream ids 36..=39 must not appear under one.
    fn check_type_ids(&self, origin: &str) -> Result<()> {
        let arch = match self.metadata.get("general.architecture") {
            Some(Value::String(s)) => s.to_str(),
            _ => None,
        };
        for t in &self.tensors {
            match resolve_type_id(t.ggml_type.id(), TypeIdDialect::Auto, arch) {
                TypeIdResolution::Known(back) if back == t.ggml_type => {}
                other => {
                    let why = match other {
                        TypeIdResolution::Ambiguous(reason) => format!("ambiguous: {reason}"),
                        TypeIdResolution::Known(back) => format!("it would read back as {back}"),
                        TypeIdResolution::Unknown => "it would read back as an unknown type".to_string(),
                    };
                    return Err(writer_err(
                        origin,
                        format!(
                            "tensor {:?}: type {} (id {}) cannot be stored under general.architecture {:?}: {why}",
                            t.name,
                            t.ggml_type,
                            t.ggml_type.id(),
                            arch.unwrap_or("<absent>")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn start<W: Write>(self, mut out: W, origin: String) -> Result<TensorDataWriter<W>> {
        self.check_type_ids(&origin)?;
        let header = self.header_bytes();
        out.write_all(&header).map_err(|source| GgufError::Io { path: origin.clone(), op: "write header", source })?;
        Ok(TensorDataWriter { out, tensors: self.tensors, next: 0, alignment: self.alignment, origin })
    }
}

fn nesting_depth(a: &Array) -> usize {
    match a {
        Array::Array(v) => 1 + v.iter().map(nesting_depth).max().unwrap_or(0),
        _ => 1,
    }
}

fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s);
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_str(b, s.as_bytes()),
        Value::Array(a) => put_array(b, a),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(b: &mut Vec<u8>, a: &Array) {
    b.extend_from_slice(&a.element_type().id().to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => b.extend_from_slice(v),
        Array::I8(v) => b.extend(v.iter().map(|&x| x as u8)),
        Array::Bool(v) => b.extend(v.iter().map(|&x| u8::from(x))),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::String(v) => {
            for s in v {
                put_str(b, s.as_bytes());
            }
        }
        Array::Array(v) => {
            for inner in v {
                put_array(b, inner);
            }
        }
    }
}

/// Streams tensor data after the header, one tensor at a time in declaration order.
#[derive(Debug)]
pub struct TensorDataWriter<W: Write> {
    out: W,
    tensors: Vec<TensorInfo>,
    next: usize,
    alignment: u64,
    origin: String,
}

impl<W: Write> TensorDataWriter<W> {
    /// The tensor whose data is expected next.
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.tensors.get(self.next)
    }

    fn expect(&self, name: &str) -> Result<&TensorInfo> {
        match self.tensors.get(self.next) {
            Some(t) if t.name == name => Ok(t),
            Some(t) => Err(writer_err(
                &self.origin,
                format!("tensor data must follow declaration order: expected {:?}, got {name:?}", t.name),
            )),
            None => Err(writer_err(&self.origin, format!("tensor {name:?}: all declared tensors are already written"))),
        }
    }

    /// Write the raw bytes of the next tensor (exactly its `n_bytes`), then padding.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let t = self.expect(name)?;
        if data.len() as u64 != t.n_bytes {
            return Err(writer_err(
                &self.origin,
                format!(
                    "tensor {name:?} ({} {:?}): expected {} bytes, got {}",
                    t.ggml_type,
                    t.dims,
                    t.n_bytes,
                    data.len()
                ),
            ));
        }
        let pad = pad_len(t.n_bytes, self.alignment) as usize;
        let io = |source| GgufError::Io { path: self.origin.clone(), op: "write tensor data", source };
        self.out.write_all(data).map_err(io)?;
        self.out.write_all(&vec![0u8; pad]).map_err(io)?;
        self.next += 1;
        Ok(())
    }

    /// Quantize f32 values to the next tensor's declared type with the reference quantizers and write
    /// them.
    pub fn write_tensor_f32(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let t = self.expect(name)?;
        let n = t.n_elements();
        if values.len() as u64 != n {
            return Err(writer_err(
                &self.origin,
                format!("tensor {name:?}: expected {n} values, got {}", values.len()),
            ));
        }
        let bytes = crate::quant::quantize(t.ggml_type, values)?;
        self.write_tensor(name, &bytes)
    }

    /// Check that every declared tensor was written, flush, and return the sink.
    pub fn finish(mut self) -> Result<W> {
        if let Some(t) = self.tensors.get(self.next) {
            return Err(writer_err(
                &self.origin,
                format!(
                    "finish called with {} tensor(s) unwritten, next is {:?}",
                    self.tensors.len() - self.next,
                    t.name
                ),
            ));
        }
        self.out.flush().map_err(|source| GgufError::Io { path: self.origin.clone(), op: "flush", source })?;
        Ok(self.out)
    }
}
