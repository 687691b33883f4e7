//! Target types (`--type`) and the per-tensor type choice.
//!
//! Rules, as llama.cpp applies them (`convert_hf_to_gguf.py` `prepare_tensors`, `llama-quantize`
//! `tensor_type_fallback` in `src/llama-quant.cpp`):
//! * 1-D tensors, norms and biases are F32; so are generated tensors such as `rope_freqs`.
//! * Token embeddings and the output head are F16 for ternary targets (`tq1_0`, `tq2_0`, `i2_s`),
//!   otherwise the target type.
//! * A tensor whose rows (`ne0`) are not a whole number of the type's blocks falls back:
//!   TQ1_0/TQ2_0 → Q4_0, Q4_K → Q5_0, Q6_K → Q8_0, and to F16 when even the fallback does not fit.
//!   I2_S (bitnet.cpp's 128-element rows) falls back like TQ2_0. For ternary weights tern writes the
//!   Q4_0 fallback with `d = scale`, `q = t + 8`, which is exact, where llama-quantize's reference
//!   Q4_0 rounding (`d = max / −8`) would turn one sign into ±7/8 of the scale.

use crate::error::{ConvertError, Result};
use tern_gguf::GgmlType;

/// What `--type` asks for.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetType {
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_K,
    Q6_K,
    TQ1_0,
    TQ2_0,
    I2_S,
}

impl TargetType {
    /// Every target, in `--help` order.
    pub const ALL: &'static [TargetType] = &[
        TargetType::TQ1_0,
        TargetType::TQ2_0,
        TargetType::I2_S,
        TargetType::Q8_0,
        TargetType::Q4_0,
        TargetType::Q4_K,
        TargetType::Q6_K,
        TargetType::F16,
        TargetType::BF16,
    ];

    /// The lower-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TargetType::F16 => "f16",
            TargetType::BF16 => "bf16",
            TargetType::Q8_0 => "q8_0",
            TargetType::Q4_0 => "q4_0",
            TargetType::Q4_K => "q4_k",
            TargetType::Q6_K => "q6_k",
            TargetType::TQ1_0 => "tq1_0",
            TargetType::TQ2_0 => "tq2_0",
            TargetType::I2_S => "i2_s",
        }
    }

    /// Parses a `--type` value (case-insensitive).
    pub fn parse(s: &str) -> Result<TargetType> {
        TargetType::ALL.iter().copied().find(|t| t.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            ConvertError::UnknownType {
                found: s.to_string(),
                expected: TargetType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", "),
            }
        })
    }

    /// The ggml type of the bulk of the weights.
    pub fn ggml(self) -> GgmlType {
        match self {
            TargetType::F16 => GgmlType::F16,
            TargetType::BF16 => GgmlType::BF16,
            TargetType::Q8_0 => GgmlType::Q8_0,
            TargetType::Q4_0 => GgmlType::Q4_0,
            TargetType::Q4_K => GgmlType::Q4_K,
            TargetType::Q6_K => GgmlType::Q6_K,
            TargetType::TQ1_0 => GgmlType::TQ1_0,
            TargetType::TQ2_0 => GgmlType::TQ2_0,
            TargetType::I2_S => GgmlType::I2_S,
        }
    }

    /// Ternary targets store `{−s, 0, +s}` weights only.
    pub fn is_ternary(self) -> bool {
        matches!(self, TargetType::TQ1_0 | TargetType::TQ2_0 | TargetType::I2_S)
    }

    /// `general.file_type`: llama.cpp's `llama_ftype` (`include/llama.h`); `i2_s` is bitnet.cpp's
    /// `LLAMA_FTYPE_MOSTLY_I2_S = 40`; `q4_k` is written as `MOSTLY_Q4_K_S` (14), the closest
    /// llama.cpp name for an all-Q4_K file.
    pub fn file_type(self) -> u32 {
        match self {
            TargetType::F16 => 1,
            TargetType::Q4_0 => 2,
            TargetType::Q8_0 => 7,
            TargetType::Q4_K => 14,
            TargetType::Q6_K => 18,
            TargetType::BF16 => 32,
            TargetType::TQ1_0 => 36,
            TargetType::TQ2_0 => 37,
            TargetType::I2_S => 40,
        }
    }
}

impl std::fmt::Display for TargetType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The type a row of `ne0` elements can actually use when `want` is asked for, and, when it differs,
/// a log line explaining the fallback (llama-quantize's `tensor_type_fallback`).
pub(crate) fn fit_type(want: GgmlType, ne0: u64, tensor: &str) -> (GgmlType, Option<String>) {
    if ne0.is_multiple_of(want.block_size()) {
        return (want, None);
    }
    let mut ty = match want {
        GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2_S | GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if !ne0.is_multiple_of(ty.block_size()) {
        ty = GgmlType::F16;
    }
    let note = format!(
        "{tensor}: row length {ne0} is not a multiple of the {want} block size {}: falling back to {ty}",
        want.block_size()
    );
    (ty, Some(note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_names_round_trip() {
        for &t in TargetType::ALL {
            assert_eq!(TargetType::parse(t.name()).unwrap(), t);
            assert_eq!(TargetType::parse(&t.name().to_uppercase()).unwrap(), t);
        }
        let e = TargetType::parse("q5_k").unwrap_err().to_string();
        assert!(e.contains("q5_k") && e.contains("tq2_0"), "{e}");
    }

    #[test]
    fn fallbacks_follow_llama_quantize() {
        assert_eq!(fit_type(GgmlType::Q4_K, 4096, "t").0, GgmlType::Q4_K);
        assert_eq!(fit_type(GgmlType::Q4_K, 96, "t").0, GgmlType::Q5_0);
        assert_eq!(fit_type(GgmlType::Q6_K, 96, "t").0, GgmlType::Q8_0);
        assert_eq!(fit_type(GgmlType::TQ2_0, 128, "t").0, GgmlType::Q4_0);
        assert_eq!(fit_type(GgmlType::I2_S, 96, "t").0, GgmlType::Q4_0);
        assert_eq!(fit_type(GgmlType::I2_S, 256, "t").0, GgmlType::I2_S);
        assert_eq!(fit_type(GgmlType::Q8_0, 80, "t").0, GgmlType::F16);
        assert_eq!(fit_type(GgmlType::Q4_K, 72, "t").0, GgmlType::F16);
        let (_, note) = fit_type(GgmlType::Q6_K, 96, "blk.0.ffn_down.weight");
        let note = note.unwrap();
        assert!(note.contains("blk.0.ffn_down.weight") && note.contains("Q8_0"), "{note}");
    }
}
