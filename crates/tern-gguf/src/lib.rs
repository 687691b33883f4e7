//! tern-gguf: a GGUF (v2/v3) reader and writer plus reference (de)quantizers for ggml block types.
//!
//! This crate knows nothing of kernels or models. It parses a GGUF file (memory-mapped, or from an
//! in-memory buffer) into its version, ordered metadata ([`Metadata`], typed getters) and tensor infos
//! ([`TensorInfo`]: name, ggml-order dims, [`GgmlType`], offset, byte size), hands out tensor bytes
//! without copying, dequantizes them with scalar reference code ported from ggml
//! (`ggml/src/ggml-quants.c`), quantizes with ggml's `quantize_row_*_ref` semantics, and writes GGUF v3
//! files byte-compatible with gguf-py's `GGUFWriter`.
//!
//! References: the GGUF spec and llama.cpp's `ggml/src/gguf.cpp` (reader limits and checks),
//! `ggml/include/ggml.h` / gguf-py `constants.py` (type ids and sizes), and Microsoft's bitnet.cpp fork
//! for I2_S (see `tern_quants::quant::i2s` and `tern_quants::types` for the type-id clash at 36..=39).
//!
//! ```no_run
//! # fn main() -> tern_gguf::Result<()> {
//! let f = tern_gguf::GgufFile::open("model.gguf")?;
//! let layers = f.metadata().get_u32("llama.block_count")?;
//! let t = f.require_tensor("token_embd.weight")?;
//! let values = f.dequantize_tensor(t)?;
//! # let _ = (layers, values); Ok(()) }
//! ```

pub mod error;
/// ggml block types and reference (de)quantizers live in `tern-quants`; re-exported here.
pub use tern_quants::{quant, types};
pub mod reader;
pub mod value;
pub mod writer;

pub use error::{GgufError, Result};
pub use tern_quants::QuantError;

/// Dequantizes `n_elements` values (see [`tern_quants::dequantize`]).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    Ok(tern_quants::dequantize(ty, bytes, n_elements)?)
}
/// Dequantizes into `out` (see [`tern_quants::dequantize_into`]).
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    Ok(tern_quants::dequantize_into(ty, bytes, out)?)
}
/// Quantizes `src` (see [`tern_quants::quantize`]).
pub fn quantize(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>> {
    Ok(tern_quants::quantize(ty, src)?)
}
/// Quantizes into `dst` (see [`tern_quants::quantize_into`]).
pub fn quantize_into(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<()> {
    Ok(tern_quants::quantize_into(ty, src, dst)?)
}
pub use reader::{
    GgufFile, ReadOptions, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_LEN, MAX_ARRAY_NESTING,
    MAX_DIMS, MAX_STRING_LEN, MAX_TENSOR_NAME_LEN,
};
pub use types::{resolve_type_id, GgmlType, TypeIdDialect, TypeIdResolution};
pub use value::{Array, GgufString, Metadata, Value, ValueType};
pub use writer::{GgufWriter, TensorDataWriter};

#[cfg(test)]
mod tests {
    #[test]
    fn file_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::GgufFile>();
        check::<crate::Metadata>();
    }
}
