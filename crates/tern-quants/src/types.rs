//! ggml tensor types: ids, names, block sizes and on-disk sizes.
//!
//! Ids and `(block size, bytes per block)` match upstream ggml (`ggml/include/ggml.h`, the
//! `type_traits` table in `ggml/src/ggml.c`, and gguf-py's `GGML_QUANT_SIZES`). Ids 31..=33 and
//! 36..=38 were repacked variants that upstream removed from GGUF files; they are known here by name
//! and size only.
//!
//! # The bitnet.cpp id clash
//! Microsoft's bitnet.cpp ships a llama.cpp fork (`3rdparty/llama.cpp`, `ggml/include/ggml.h`) that
//! numbers its own types `GGML_TYPE_I2_S = 36`, `GGML_TYPE_I8_S = 37`, `GGML_TYPE_TL1 = 38`,
//! `GGML_TYPE_TL2 = 39`, while upstream ggml uses 36..=38 for the removed `IQ4_NL_4_4/4_8/8_8` and 39
//! for `MXFP4`. The on-disk id alone therefore does not say what a tensor is; see [`TypeIdDialect`] and
//! [`resolve_type_id`] for how the reader decides.
//!
//! # I2_S on-disk size
//! bitnet.cpp gives I2_S `blck_size = 1, type_size = 1` in its traits table but overrides
//! `ggml_nbytes`: an I2_S tensor of `n` elements occupies `n / 4 + 32` bytes (2 bits per element plus a
//! 32-byte tail whose first 4 bytes are the per-tensor f32 scale). The layout itself is documented in
//! [`crate::quant::i2s`]. This crate reports I2_S with a block size of 128 (the x86 `QK_I2_S` packing
//! unit), so `ne0 % 128 == 0` is checked when a file is opened.

use std::fmt;

/// A ggml tensor element type.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    /// Removed upstream (id 31): interleaved Q4_0, same block size.
    Q4_0_4_4,
    /// Removed upstream (id 32).
    Q4_0_4_8,
    /// Removed upstream (id 33).
    Q4_0_8_8,
    TQ1_0,
    TQ2_0,
    /// Removed upstream (id 36 in upstream numbering).
    IQ4_NL_4_4,
    /// Removed upstream (id 37 in upstream numbering).
    IQ4_NL_4_8,
    /// Removed upstream (id 38 in upstream numbering).
    IQ4_NL_8_8,
    /// Upstream id 39.
    MXFP4,
    /// Upstream id 40.
    NVFP4,
    /// Upstream id 41.
    Q1_0,
    /// Upstream id 42.
    Q2_0,
    /// bitnet.cpp id 36: ternary weights, 2 bits each, one f32 scale per tensor.
    I2_S,
    /// bitnet.cpp id 37: int8 activations with an in-band scale (never a weight type in files).
    I8_S,
    /// bitnet.cpp id 38: ARM lookup-table layout.
    TL1,
    /// bitnet.cpp id 39: x86 lookup-table layout.
    TL2,
}

/// Which numbering of ggml type ids ≥ 36 a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TypeIdDialect {
    /// Decide from metadata (the default): `general.architecture` of `bitnet-b1.58` or `bitnet-25`
    /// (architectures only bitnet.cpp writes) selects bitnet.cpp ids; `bitnet` (shared by upstream
    /// llama.cpp and bitnet.cpp) selects bitnet.cpp ids 36..=38, which upstream never writes, and makes
    /// id 39 (upstream MXFP4 vs bitnet.cpp TL2) an error; anything else selects upstream ids, and id 36
    /// is then an error (I2_S outside a bitnet architecture is ambiguous).
    #[default]
    Auto,
    /// Upstream ggml numbering (`MXFP4 = 39`, ...).
    Upstream,
    /// bitnet.cpp numbering (`I2_S = 36`, `I8_S = 37`, `TL1 = 38`, `TL2 = 39`).
    BitnetCpp,
}

/// Architectures that only bitnet.cpp writes.
pub const BITNET_CPP_ARCHITECTURES: &[&str] = &["bitnet-b1.58", "bitnet-25"];

/// Outcome of mapping an on-disk type id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeIdResolution {
    Known(GgmlType),
    Unknown,
    Ambiguous(String),
}

/// Map an on-disk ggml type id to a [`GgmlType`], using `dialect` and the file's
/// `general.architecture` (if any) as described on [`TypeIdDialect::Auto`].
pub fn resolve_type_id(id: u32, dialect: TypeIdDialect, architecture: Option<&str>) -> TypeIdResolution {
    use TypeIdResolution::*;
    if id < 36 {
        return match GgmlType::from_upstream_id(id) {
            Some(t) => Known(t),
            None => Unknown,
        };
    }
    let by = |t: Option<GgmlType>| t.map_or(Unknown, Known);
    match dialect {
        TypeIdDialect::Upstream => by(GgmlType::from_upstream_id(id)),
        TypeIdDialect::BitnetCpp => by(GgmlType::from_bitnet_cpp_id(id)),
        TypeIdDialect::Auto => {
            let arch = architecture.unwrap_or("");
            if BITNET_CPP_ARCHITECTURES.contains(&arch) {
                return by(GgmlType::from_bitnet_cpp_id(id));
            }
            if arch == "bitnet" {
                return match id {
                    36..=38 => by(GgmlType::from_bitnet_cpp_id(id)),
                    39 => Ambiguous(
                        "general.architecture is \"bitnet\", used by both upstream llama.cpp (39 = MXFP4) \
                         and bitnet.cpp (39 = TL2); open with an explicit TypeIdDialect"
                            .to_string(),
                    ),
                    _ => by(GgmlType::from_upstream_id(id)),
                };
            }
            if id == 36 {
                return Ambiguous(format!(
                    "36 is bitnet.cpp's I2_S but general.architecture is {:?}, not a bitnet architecture \
                     (bitnet-b1.58, bitnet-25, bitnet); upstream ggml's 36 (IQ4_NL_4_4) was removed from GGUF; \
                     open with an explicit TypeIdDialect",
                    architecture.unwrap_or("<absent>")
                ));
            }
            by(GgmlType::from_upstream_id(id))
        }
    }
}

impl GgmlType {
    /// All known types.
    pub const ALL: &'static [GgmlType] = &[
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::Q4_0_4_4,
        GgmlType::Q4_0_4_8,
        GgmlType::Q4_0_8_8,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::IQ4_NL_4_4,
        GgmlType::IQ4_NL_4_8,
        GgmlType::IQ4_NL_8_8,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
        GgmlType::Q2_0,
        GgmlType::I2_S,
        GgmlType::I8_S,
        GgmlType::TL1,
        GgmlType::TL2,
    ];

    /// Type for an id in upstream ggml numbering.
    pub fn from_upstream_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            31 => Q4_0_4_4,
            32 => Q4_0_4_8,
            33 => Q4_0_8_8,
            34 => TQ1_0,
            35 => TQ2_0,
            36 => IQ4_NL_4_4,
            37 => IQ4_NL_4_8,
            38 => IQ4_NL_8_8,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            42 => Q2_0,
            _ => return None,
        })
    }

    /// Type for an id in bitnet.cpp numbering (same as upstream below 36).
    pub fn from_bitnet_cpp_id(id: u32) -> Option<GgmlType> {
        match id {
            36 => Some(GgmlType::I2_S),
            37 => Some(GgmlType::I8_S),
            38 => Some(GgmlType::TL1),
            39 => Some(GgmlType::TL2),
            0..=35 => GgmlType::from_upstream_id(id),
            _ => None,
        }
    }

    /// The id written to disk for this type (bitnet.cpp numbering for its own types).
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            Q4_0_4_4 => 31,
            Q4_0_4_8 => 32,
            Q4_0_8_8 => 33,
            TQ1_0 => 34,
            TQ2_0 => 35,
            IQ4_NL_4_4 => 36,
            IQ4_NL_4_8 => 37,
            IQ4_NL_8_8 => 38,
            MXFP4 => 39,
            NVFP4 => 40,
            Q1_0 => 41,
            Q2_0 => 42,
            I2_S => 36,
            I8_S => 37,
            TL1 => 38,
            TL2 => 39,
        }
    }

    /// Whether the id of this type means something else in the other numbering (see the module doc).
    pub fn is_bitnet_cpp(self) -> bool {
        matches!(self, GgmlType::I2_S | GgmlType::I8_S | GgmlType::TL1 | GgmlType::TL2)
    }

    /// The upper-case name used by gguf-py (`Q4_K`, `I2_S`, ...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            Q4_0_4_4 => "Q4_0_4_4",
            Q4_0_4_8 => "Q4_0_4_8",
            Q4_0_8_8 => "Q4_0_8_8",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            IQ4_NL_4_4 => "IQ4_NL_4_4",
            IQ4_NL_4_8 => "IQ4_NL_4_8",
            IQ4_NL_8_8 => "IQ4_NL_8_8",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
            Q2_0 => "Q2_0",
            I2_S => "I2_S",
            I8_S => "I8_S",
            TL1 => "TL1",
            TL2 => "TL2",
        }
    }

    /// Parse a name as produced by [`GgmlType::name`] (case-insensitive).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL.iter().copied().find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Elements per block. For I2_S this is the x86 packing unit of 128 (see the module doc).
    pub fn block_size(self) -> u64 {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64 | I8_S | TL1 | TL2 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            Q4_0_4_4 | Q4_0_4_8 | Q4_0_8_8 | IQ4_NL_4_4 | IQ4_NL_4_8 | IQ4_NL_8_8 => 32,
            NVFP4 | Q2_0 => 64,
            Q1_0 | I2_S => 128,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => 256,
            IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S | IQ2_S | IQ4_XS | IQ1_M => 256,
            TQ1_0 | TQ2_0 => 256,
        }
    }

    /// Bytes per block, or `None` for types whose size is not per-block (I2_S: `n/4 + 32` per tensor,
    /// I8_S, TL1, TL2).
    pub fn type_size(self) -> Option<u64> {
        use GgmlType::*;
        Some(match self {
            F32 => 4,
            F16 | BF16 => 2,
            I8 => 1,
            I16 => 2,
            I32 => 4,
            I64 | F64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
            IQ2_XXS => 66,
            IQ2_XS => 74,
            IQ3_XXS => 98,
            IQ1_S => 50,
            IQ4_NL => 18,
            IQ3_S => 110,
            IQ2_S => 82,
            IQ4_XS => 136,
            IQ1_M => 56,
            Q4_0_4_4 | Q4_0_4_8 | Q4_0_8_8 => 18,
            IQ4_NL_4_4 | IQ4_NL_4_8 | IQ4_NL_8_8 => 18,
            TQ1_0 => 54,
            TQ2_0 => 66,
            MXFP4 => 17,
            NVFP4 => 36,
            Q1_0 => 18,
            Q2_0 => 18,
            I2_S | I8_S | TL1 | TL2 => return None,
        })
    }

    /// Whether this crate has a reference dequantizer for the type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16
                | BF16
                | Q4_0
                | Q4_1
                | Q5_0
                | Q5_1
                | Q8_0
                | Q2_K
                | Q3_K
                | Q4_K
                | Q5_K
                | Q6_K
                | TQ1_0
                | TQ2_0
                | I2_S
        )
    }

    /// Whether this crate has a reference quantizer for the type.
    pub fn can_quantize(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q4_0 | Q8_0 | Q4_K | Q6_K | TQ1_0 | TQ2_0 | I2_S)
    }

    /// Bytes of one row of `ne0` elements, or `None` if `ne0` is not a whole number of blocks or the
    /// type has no per-row size (I8_S, TL1, TL2). For I2_S this is the packed part only (`ne0 / 4`);
    /// the tensor's 32-byte tail with the scale comes after the last row.
    pub fn row_size(self, ne0: u64) -> Option<u64> {
        if !ne0.is_multiple_of(self.block_size()) {
            return None;
        }
        match self {
            GgmlType::I2_S => Some(ne0 / 4),
            _ => (ne0 / self.block_size()).checked_mul(self.type_size()?),
        }
    }

    /// On-disk bytes of a tensor with the given number of elements (which must be a multiple of the
    /// block size), or `None` on overflow or for types whose size depends on the shape (TL2) or is
    /// undefined (I8_S). Follows ggml's `ggml_nbytes`, including bitnet.cpp's I2_S/TL1 override.
    pub fn storage_size_for_elements(self, n_elements: u64) -> Option<u64> {
        match self {
            GgmlType::I2_S | GgmlType::TL1 => (n_elements / 4).checked_add(32),
            GgmlType::I8_S | GgmlType::TL2 => None,
            _ => {
                let block = self.block_size();
                if !n_elements.is_multiple_of(block) {
                    return None;
                }
                (n_elements / block).checked_mul(self.type_size()?)
            }
        }
    }

    /// On-disk bytes of a tensor with the given dims (ggml order), `None` on overflow or when undefined.
    pub fn storage_size(self, dims: &[u64]) -> Option<u64> {
        let n = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        if self == GgmlType::TL2 {
            // bitnet.cpp ggml_nbytes: (ne0-256)*ne1/3*5/8 + 256*ne1/2*4/8, padded to 32, plus 32.
            let ne0 = *dims.first()?;
            let ne1 = n / ne0.max(1);
            let body = ne0.checked_sub(256)?.checked_mul(ne1)? / 3 * 5 / 8;
            let tail = 256u64.checked_mul(ne1)? / 2 * 4 / 8;
            let total = body.checked_add(tail)?;
            let padded = total.checked_add((32 - total % 32) % 32)?;
            return padded.checked_add(32);
        }
        self.storage_size_for_elements(n)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for &t in GgmlType::ALL {
            let back = if t.is_bitnet_cpp() {
                GgmlType::from_bitnet_cpp_id(t.id())
            } else {
                GgmlType::from_upstream_id(t.id())
            };
            assert_eq!(back, Some(t), "{t}");
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
    }

    #[test]
    fn dialect_resolution() {
        use TypeIdResolution::*;
        let r = |id, d, a| resolve_type_id(id, d, a);
        assert_eq!(r(36, TypeIdDialect::Auto, Some("bitnet-b1.58")), Known(GgmlType::I2_S));
        assert_eq!(r(36, TypeIdDialect::Auto, Some("bitnet")), Known(GgmlType::I2_S));
        assert!(matches!(r(36, TypeIdDialect::Auto, Some("llama")), Ambiguous(_)));
        assert!(matches!(r(36, TypeIdDialect::Auto, None), Ambiguous(_)));
        assert!(matches!(r(39, TypeIdDialect::Auto, Some("bitnet")), Ambiguous(_)));
        assert_eq!(r(39, TypeIdDialect::Auto, Some("gpt-oss")), Known(GgmlType::MXFP4));
        assert_eq!(r(39, TypeIdDialect::Auto, Some("bitnet-25")), Known(GgmlType::TL2));
        assert_eq!(r(39, TypeIdDialect::Upstream, Some("bitnet-25")), Known(GgmlType::MXFP4));
        assert_eq!(r(36, TypeIdDialect::BitnetCpp, None), Known(GgmlType::I2_S));
        assert_eq!(r(40, TypeIdDialect::BitnetCpp, None), Unknown);
        assert_eq!(r(4, TypeIdDialect::Auto, None), Unknown);
        assert_eq!(r(12, TypeIdDialect::Auto, None), Known(GgmlType::Q4_K));
    }

    #[test]
    fn sizes_match_ggml() {
        assert_eq!(GgmlType::Q4_K.storage_size(&[256, 2]), Some(288));
        assert_eq!(GgmlType::I2_S.storage_size(&[128, 4]), Some(128 + 32));
        assert_eq!(GgmlType::F32.storage_size(&[u64::MAX, 2]), None);
        assert_eq!(GgmlType::I8_S.storage_size(&[4]), None);
        assert_eq!(GgmlType::Q6_K.row_size(512), Some(420));
        assert_eq!(GgmlType::I2_S.row_size(256), Some(64));
        assert_eq!(GgmlType::Q4_0.row_size(33), None);
        assert_eq!(GgmlType::TL1.row_size(4), None);
    }
}
