//! The one error type of this crate.
//!
//! Every variant that comes from a file names that file (`path`, `"<memory>"` for buffers), and where it
//! applies the metadata key or tensor name plus what was expected versus what was found, so a message
//! alone is enough to locate the problem. Limits and checks mirror llama.cpp's `ggml/src/gguf.cpp`
//! (`gguf_init_from_file_impl`), made stricter where the GGUF spec allows it.

use crate::types::GgmlType;

/// Result alias for this crate.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// Errors from reading, writing, quantizing and dequantizing GGUF data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// An operating-system error while opening, mapping, reading or writing a file.
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("{path}: bad magic: expected \"GGUF\" (47 47 55 46), found {found:02x?}")]
    BadMagic { path: String, found: Vec<u8> },

    /// Version 0, 1 (GGUFv1, 32-bit counts), a future version, or a byte-swapped (big-endian) header.
    #[error("{path}: unsupported GGUF version {found}: expected 2 or 3{hint}")]
    UnsupportedVersion { path: String, found: u32, hint: &'static str },

    /// The file ends before a field could be read completely.
    #[error("{path}: truncated: {what} at byte {offset} needs {needed} bytes but only {available} remain")]
    Truncated { path: String, what: String, offset: u64, needed: u64, available: u64 },

    /// A count (keys, tensors, string length, array length) is above a hard limit or cannot fit in
    /// the bytes that remain. Checked before anything is allocated.
    #[error("{path}: {what}: count {found} exceeds the maximum {max}")]
    CountTooLarge { path: String, what: String, found: u64, max: u64 },

    /// A metadata value type id outside 0..=12.
    #[error("{path}: key {key:?}: invalid GGUF value type id {found} (expected 0..=12)")]
    InvalidValueType { path: String, key: String, found: u32 },

    /// Arrays nested deeper than [`crate::MAX_ARRAY_NESTING`].
    #[error("{path}: key {key:?}: arrays nested deeper than {max} levels")]
    NestingTooDeep { path: String, key: String, max: usize },

    /// A metadata key or tensor name that is not UTF-8.
    #[error("{path}: {what} is not valid UTF-8")]
    InvalidUtf8 { path: String, what: String },

    /// An empty metadata key.
    #[error("{path}: metadata entry #{index} has an empty key")]
    EmptyKey { path: String, index: u64 },

    /// The same metadata key twice.
    #[error("{path}: duplicate metadata key {key:?} (entries #{first} and #{second})")]
    DuplicateKey { path: String, key: String, first: usize, second: usize },

    /// `general.alignment` of a type other than u32, zero, or not a power of two.
    #[error("{path}: general.alignment: expected a u32 power of two > 0, found {found}")]
    BadAlignment { path: String, found: String },

    /// A tensor name of `GGML_MAX_NAME` (64) bytes or more, as llama.cpp rejects.
    #[error("{path}: tensor #{index} name {name:?} is {len} bytes, expected at most {max}")]
    TensorNameTooLong { path: String, index: u64, name: String, len: usize, max: usize },

    /// The same tensor name twice.
    #[error("{path}: duplicate tensor name {name:?} (tensors #{first} and #{second})")]
    DuplicateTensor { path: String, name: String, first: usize, second: usize },

    /// More than four dimensions.
    #[error("{path}: tensor {name:?}: {found} dimensions, expected at most 4")]
    TooManyDims { path: String, name: String, found: u32 },

    /// A dimension that is zero or negative (as i64).
    #[error("{path}: tensor {name:?}: dimension {index} is {found}, expected >= 1")]
    BadDim { path: String, name: String, index: usize, found: i64 },

    /// The element count or byte size of a tensor does not fit in 63 bits / the address space.
    #[error("{path}: tensor {name:?}: shape {dims:?} of type {ty}: {what} overflows")]
    SizeOverflow { path: String, name: String, dims: Vec<u64>, ty: String, what: &'static str },

    /// A ggml type id this crate does not know.
    #[error("{path}: tensor {name:?}: unknown ggml type id {id}")]
    UnknownType { path: String, name: String, id: u32 },

    /// A ggml type id whose meaning depends on which ggml fork wrote the file, and the metadata does
    /// not decide it.
    #[error("{path}: tensor {name:?}: ggml type id {id} is ambiguous: {reason}")]
    AmbiguousType { path: String, name: String, id: u32, reason: String },

    /// A known type whose on-disk size is undefined, so the tensor cannot be located safely.
    #[error("{path}: tensor {name:?}: type {ty} has no defined on-disk size")]
    UnsizedType { path: String, name: String, ty: GgmlType },

    /// `ne[0]` is not a multiple of the type's block size.
    #[error("{path}: tensor {name:?}: row length ne0 = {ne0} is not a multiple of the {ty} block size {block}")]
    BlockMisaligned { path: String, name: String, ty: GgmlType, ne0: u64, block: u64 },

    /// A tensor data offset that is not a multiple of the file alignment.
    #[error("{path}: tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset { path: String, name: String, offset: u64, alignment: u64 },

    /// Tensor data that extends past the end of the file.
    #[error("{path}: tensor {name:?}: data [{start}, {start}+{size}) relative to the data section at byte {data_start} extends past the end of the file ({file_len} bytes)")]
    TensorOutOfRange { path: String, name: String, start: u64, size: u64, data_start: u64, file_len: u64 },

    /// Two tensors whose data ranges overlap.
    #[error(
        "{path}: tensor {name:?} data [{start}, {end}) overlaps tensor {other:?} data [{other_start}, {other_end})"
    )]
    TensorOverlap { path: String, name: String, start: u64, end: u64, other: String, other_start: u64, other_end: u64 },

    /// A metadata key that is not present.
    #[error("{path}: metadata key {key:?} not found")]
    MissingKey { path: String, key: String },

    /// A metadata value of another type than the getter asked for.
    #[error("{path}: metadata key {key:?}: expected {expected}, found {found}")]
    WrongType { path: String, key: String, expected: &'static str, found: String },

    /// A metadata value of the right type but unusable (negative count, not UTF-8, out of range).
    #[error("{path}: metadata key {key:?}: {problem}")]
    BadValue { path: String, key: String, problem: String },

    /// A tensor that this crate cannot (de)quantize.
    #[error("unsupported tensor type {ty} in tensor {tensor:?} ({path}): {op} is not implemented for {ty}")]
    UnsupportedType { path: String, tensor: String, ty: GgmlType, op: &'static str },

    /// A lookup of a tensor by name that failed.
    #[error("{path}: tensor {name:?} not found")]
    MissingTensor { path: String, name: String },

    /// Buffer lengths that do not match a type's block layout.
    #[error("{ty} {op}: {what}: expected {expected}, found {found}")]
    Layout { ty: GgmlType, op: &'static str, what: &'static str, expected: u64, found: u64 },

    /// Misuse of [`crate::GgufWriter`] (duplicate key, tensor out of order, wrong data size, ...).
    #[error("{path}: writer: {problem}")]
    Writer { path: String, problem: String },
}

/// How a source is named in messages: its path, or `<memory>` for in-memory buffers.
pub(crate) fn origin_name(path: Option<&std::path::Path>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "<memory>".to_string(),
    }
}

impl From<tern_quants::QuantError> for GgufError {
    fn from(e: tern_quants::QuantError) -> Self {
        match e {
            tern_quants::QuantError::UnsupportedType { ty, op } => {
                GgufError::UnsupportedType { path: "<buffer>".to_string(), tensor: "<buffer>".to_string(), ty, op }
            }
            tern_quants::QuantError::Layout { ty, op, what, expected, found } => {
                GgufError::Layout { ty, op, what, expected, found }
            }
        }
    }
}
