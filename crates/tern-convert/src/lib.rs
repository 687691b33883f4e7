//! tern-convert: Hugging Face checkpoints and GGUF files → GGUF, for tern and llama.cpp.
//!
//! `tern convert SRC OUT.gguf --type T` is [`plan`] (read the source, decide every output tensor's
//! name, shape and type, and the metadata) followed by [`Plan::write`] (stream the tensors, a few rows
//! at a time, into `OUT.gguf.partial`, then rename it). The result follows llama.cpp's
//! `convert_hf_to_gguf.py` (llama.cpp vendored by llama-cpp-python 0.3.36):
//!
//! * **Names and metadata**: llama.cpp tensor names (`token_embd`, `blk.N.attn_q`, …,
//!   `blk.N.attn_sub_norm`, `blk.N.ffn_sub_norm`), `general.*`, `{arch}.*` hyper-parameters (context,
//!   widths, heads, RMS epsilon, RoPE base, dimension count and scaling, key/value lengths,
//!   vocab size, file type) and the tokenizer (`tokenizer.ggml.*`, `tokenizer.chat_template`; see
//!   [`vocab`]). Architectures: `llama` (also for Mistral), `qwen2`, `qwen3`, `bitnet`, and bitnet.cpp's
//!   `bitnet-b1.58` for I2_S files (only bitnet.cpp reads I2_S).
//! * **Llama Q/K rows** are permuted for llama.cpp's adjacent-pair RoPE (`LlamaModel.permute`), the
//!   inverse of what `tern_model::load_gguf` undoes.
//! * **BitNet weights** (`quantization_config.quant_method = "bitnet"`): packed ternary values and
//!   their `weight_scale` (AutoBitLinear multiplies by it, BitLinear divides), or latent float weights
//!   ternarized with the per-tensor absmean (online mode, and llama.cpp's `BitnetModel.weight_quant`
//!   for unquantized `bitnet` checkpoints written to a ternary type), become `t·s` with one effective
//!   scale `s` per tensor. TQ1_0/TQ2_0 store `s` as every block's f16 scale; I2_S as its f32 tensor
//!   scale.
//! * **Types** ([`target`]): norms, biases and 1-D tensors F32; embeddings and head F16 for ternary
//!   targets; llama-quantize's fallbacks when rows are not a whole number of blocks.
//! * A GGUF source is re-quantized tensor by tensor; its metadata is kept (architecture renamed when
//!   I2_S requires bitnet.cpp's name or leaves it), `*.scale` tensors are folded into their weights.

#![forbid(unsafe_code)]

mod data;
mod encode;
pub mod error;
mod gguf_src;
mod hf;
pub mod target;
pub mod vocab;
mod write;

pub use error::{ConvertError, Result};
pub use target::TargetType;
pub use write::{WriteProgress, WriteSummary};

use std::path::{Path, PathBuf};
use tern_gguf::{GgmlType, Value};

/// What to convert and how.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// An HF model directory or a `.gguf` file.
    pub source: PathBuf,
    pub target: TargetType,
    /// Take the tokenizer files from this directory instead of the source directory (HF sources).
    pub vocab_dir: Option<PathBuf>,
    /// Force `tokenizer.ggml.pre` (byte-level BPE vocabularies whose fingerprint llama.cpp lacks).
    pub vocab_pre: Option<String>,
    /// `general.name` (default: the source directory or file name).
    pub name: Option<String>,
}

impl ConvertOptions {
    pub fn new(source: impl Into<PathBuf>, target: TargetType) -> Self {
        ConvertOptions { source: source.into(), target, vocab_dir: None, vocab_pre: None, name: None }
    }
}

/// One tensor of the output file.
#[derive(Debug)]
pub struct PlannedTensor {
    /// GGUF name.
    pub name: String,
    /// Dims in ggml order (`ne0`, the row length, first).
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Where it comes from, for the log (`model.layers.0.self_attn.q_proj.weight (U8 packed ternary)`).
    pub origin: String,
    pub(crate) data: data::TensorData,
    pub(crate) encoder: encode::Encoder,
}

impl PlannedTensor {
    /// Elements per row.
    pub fn ne0(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }
    /// Number of rows (product of the other dims).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Everything decided before writing.
#[derive(Debug)]
pub struct Plan {
    pub source: PathBuf,
    pub target: TargetType,
    /// `general.architecture` of the output.
    pub arch: String,
    /// Metadata in writing order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<PlannedTensor>,
    /// Log lines: type fallbacks, things a reader of the file may handle differently, vocab choices.
    pub notes: Vec<String>,
    /// One line about the tokenizer.
    pub vocab_summary: String,
}

impl Plan {
    /// Bytes of tensor data (without alignment padding).
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.ggml_type.storage_size(&t.dims).unwrap_or(0)).sum()
    }
}

/// Reads the source and decides the output (no output file is touched).
pub fn plan(opts: &ConvertOptions) -> Result<Plan> {
    let src = &opts.source;
    let meta = std::fs::metadata(src).map_err(|e| ConvertError::io(src, "open", e))?;
    if meta.is_dir() {
        hf::plan(opts)
    } else if is_gguf(src)? {
        gguf_src::plan(opts)
    } else {
        Err(ConvertError::BadSource {
            path: src.clone(),
            reason: "not a model directory (config.json + safetensors) nor a GGUF file".into(),
        })
    }
}

fn is_gguf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| ConvertError::io(path, "open", e))?;
    let mut magic = [0u8; 4];
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"GGUF"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(ConvertError::io(path, "read", e)),
    }
}

/// `plan` then `write`.
pub fn convert(
    opts: &ConvertOptions,
    out: &Path,
    force: bool,
    progress: &mut dyn FnMut(&WriteProgress<'_>),
) -> Result<(Plan, WriteSummary)> {
    let p = plan(opts)?;
    let s = p.write(out, force, progress)?;
    Ok((p, s))
}

/// gguf-py's `model_weight_count_rounded_notation` (`general.size_label`).
pub(crate) fn size_label(n: u64) -> String {
    let n = n as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    let int_digits = format!("{}", scaled.round() as u64).trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(int_digits);
    format!("{scaled:.fix$}{suffix}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_labels_like_gguf_py() {
        assert_eq!(super::size_label(134_515_008), "135M");
        assert_eq!(super::size_label(2_412_000_000), "2.4B");
        assert_eq!(super::size_label(8_030_000_000), "8.0B");
        assert_eq!(super::size_label(190_000), "190K");
        assert_eq!(super::size_label(55_000), "55K");
        assert_eq!(super::size_label(5_500), "5.5K");
    }
}
