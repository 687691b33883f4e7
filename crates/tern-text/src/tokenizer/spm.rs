//! SentencePiece `tokenizer.model` support: a hand-written protobuf reader for `ModelProto` and its
//! conversion into a `tokenizers` pipeline.
//!
//! The message layout follows `sentencepiece_model.proto` (pieces = 1 {piece = 1, score = 2, type = 3},
//! trainer_spec = 2 {model_type = 3, byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42},
//! normalizer_spec = 3 {name = 1, precompiled_charsmap = 2, add_dummy_prefix = 3,
//! remove_extra_whitespaces = 4, escape_whitespaces = 5}), with the proto2 defaults of that file.
//!
//! The conversion matches `transformers`' `convert_slow_tokenizer.py`: BPE models become a `tokenizers`
//! BPE whose merges are every split of a normal piece into two normal pieces, ranked by the merged piece's
//! score (the SentencePiece BPE rule "merge the adjacent pair whose concatenation scores highest"); Unigram
//! models become a `tokenizers` Unigram with the piece scores; control and unknown pieces are special added
//! tokens, user-defined pieces non-special added tokens; byte pieces `<0xXX>` serve byte fallback. The
//! normalizer/decoder follow `LlamaConverter` (legacy): optional precompiled charsmap, optional removal of
//! extra spaces, the `▁` dummy prefix, spaces escaped as `▁`; decoding reverses it.

use tokenizers::Tokenizer as HfTokenizer;

use super::build::{
    add_fixed_tokens, bare_tokenizer, bpe_model, set_spm_pipeline, unigram_model, vocab_map, FixedToken, SpmPipeline,
};
use crate::error::TextError;

/// SentencePiece piece types (`ModelProto.SentencePiece.Type`; GGUF `tokenizer.ggml.token_type` uses
/// the same numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    pub(crate) fn from_i32(v: i32) -> PieceType {
        match v {
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            // 1 is NORMAL; 0 (GGUF "undefined") and unknown values are treated as normal text.
            _ => PieceType::Normal,
        }
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The segmentation algorithm of a SentencePiece-style vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Unigram,
    Bpe,
}

/// A parsed `tokenizer.model`.
#[derive(Debug, Clone)]
pub(crate) struct SpmModel {
    pub pieces: Vec<Piece>,
    pub algorithm: Algorithm,
    pub byte_fallback: bool,
    pub treat_whitespace_as_suffix: bool,
    pub unk_id: Option<u32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

/// A minimal protobuf wire-format reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    source: &'a str,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], source: &'a str, what: &'static str) -> Self {
        Reader { buf, pos: 0, source, what }
    }

    fn err(&self, msg: impl std::fmt::Display) -> TextError {
        TextError::InvalidTokenizer {
            source_name: self.source.to_string(),
            message: format!("malformed SentencePiece protobuf in {} at byte {}: {msg}", self.what, self.pos),
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, TextError> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn key(&mut self) -> Result<(u64, u8), TextError> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], TextError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.err("length does not fit in memory"))?;
        let end = self.pos.checked_add(len).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            self.err(format!("length {len} runs past the end ({} bytes left)", self.buf.len() - self.pos))
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed32(&mut self) -> Result<u32, TextError> {
        let s = self.buf.get(self.pos..self.pos + 4).ok_or_else(|| self.err("truncated fixed32"))?;
        self.pos += 4;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn skip(&mut self, wire: u8) -> Result<(), TextError> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => {
                if self.pos + 8 > self.buf.len() {
                    return Err(self.err("truncated fixed64"));
                }
                self.pos += 8;
            }
            2 => {
                self.bytes()?;
            }
            5 => {
                self.fixed32()?;
            }
            w => return Err(self.err(format!("unsupported wire type {w}"))),
        }
        Ok(())
    }

    fn string(&mut self) -> Result<String, TextError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string field is not valid UTF-8"))
    }

    fn int32(&mut self) -> Result<i32, TextError> {
        // proto int32: negative values are sign-extended 64-bit varints.
        Ok(self.varint()? as i64 as i32)
    }
}

fn expect_wire(r: &Reader<'_>, field: &str, wire: u8, want: u8) -> Result<(), TextError> {
    if wire == want {
        Ok(())
    } else {
        Err(r.err(format!("field {field} has wire type {wire}, expected {want}")))
    }
}

fn parse_piece(buf: &[u8], source: &str) -> Result<Piece, TextError> {
    let mut r = Reader::new(buf, source, "SentencePiece");
    let mut piece = Piece { text: String::new(), score: 0.0, kind: PieceType::Normal };
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                expect_wire(&r, "piece", wire, 2)?;
                piece.text = r.string()?;
            }
            2 => {
                expect_wire(&r, "score", wire, 5)?;
                piece.score = f32::from_bits(r.fixed32()?);
            }
            3 => {
                expect_wire(&r, "type", wire, 0)?;
                piece.kind = PieceType::from_i32(r.int32()?);
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(piece)
}

struct TrainerSpec {
    model_type: i32,
    byte_fallback: bool,
    treat_whitespace_as_suffix: bool,
    unk_id: i32,
    bos_id: i32,
    eos_id: i32,
}

fn parse_trainer(buf: &[u8], source: &str) -> Result<TrainerSpec, TextError> {
    let mut r = Reader::new(buf, source, "TrainerSpec");
    let mut t = TrainerSpec {
        model_type: 1,
        byte_fallback: false,
        treat_whitespace_as_suffix: false,
        unk_id: 0,
        bos_id: 1,
        eos_id: 2,
    };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (3, 0) => t.model_type = r.int32()?,
            (24, 0) => t.treat_whitespace_as_suffix = r.varint()? != 0,
            (35, 0) => t.byte_fallback = r.varint()? != 0,
            (40, 0) => t.unk_id = r.int32()?,
            (41, 0) => t.bos_id = r.int32()?,
            (42, 0) => t.eos_id = r.int32()?,
            _ => r.skip(wire)?,
        }
    }
    Ok(t)
}

struct NormalizerSpec {
    precompiled_charsmap: Vec<u8>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

fn parse_normalizer(buf: &[u8], source: &str) -> Result<NormalizerSpec, TextError> {
    let mut r = Reader::new(buf, source, "NormalizerSpec");
    let mut n = NormalizerSpec {
        precompiled_charsmap: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        escape_whitespaces: true,
    };
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (2, 2) => n.precompiled_charsmap = r.bytes()?.to_vec(),
            (3, 0) => n.add_dummy_prefix = r.varint()? != 0,
            (4, 0) => n.remove_extra_whitespaces = r.varint()? != 0,
            (5, 0) => n.escape_whitespaces = r.varint()? != 0,
            _ => r.skip(wire)?,
        }
    }
    Ok(n)
}

fn opt_id(v: i32, n: usize, field: &str, source: &str) -> Result<Option<u32>, TextError> {
    if v < 0 {
        return Ok(None);
    }
    if (v as usize) >= n {
        return Err(TextError::InvalidTokenizer {
            source_name: source.to_string(),
            message: format!("trainer_spec.{field} = {v} is outside the {n} pieces"),
        });
    }
    Ok(Some(v as u32))
}

/// Parses a serialized `ModelProto`.
pub(crate) fn parse_model(buf: &[u8], source: &str) -> Result<SpmModel, TextError> {
    let mut r = Reader::new(buf, source, "ModelProto");
    let mut pieces = Vec::new();
    let mut trainer = None;
    let mut normalizer = None;
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                expect_wire(&r, "pieces", wire, 2)?;
                pieces.push(parse_piece(r.bytes()?, source)?);
            }
            2 => {
                expect_wire(&r, "trainer_spec", wire, 2)?;
                trainer = Some(parse_trainer(r.bytes()?, source)?);
            }
            3 => {
                expect_wire(&r, "normalizer_spec", wire, 2)?;
                normalizer = Some(parse_normalizer(r.bytes()?, source)?);
            }
            _ => r.skip(wire)?,
        }
    }
    if pieces.is_empty() {
        return Err(TextError::InvalidTokenizer {
            source_name: source.to_string(),
            message: "SentencePiece model has no pieces".into(),
        });
    }
    let t = trainer.unwrap_or(TrainerSpec {
        model_type: 1,
        byte_fallback: false,
        treat_whitespace_as_suffix: false,
        unk_id: 0,
        bos_id: 1,
        eos_id: 2,
    });
    let n = normalizer.unwrap_or(NormalizerSpec {
        precompiled_charsmap: Vec::new(),
        add_dummy_prefix: true,
        remove_extra_whitespaces: true,
        escape_whitespaces: true,
    });
    let algorithm = match t.model_type {
        1 => Algorithm::Unigram,
        2 => Algorithm::Bpe,
        3 => {
            return Err(TextError::Unsupported {
                source_name: source.to_string(),
                message: "SentencePiece model_type WORD is not supported (only UNIGRAM and BPE)".into(),
            })
        }
        4 => {
            return Err(TextError::Unsupported {
                source_name: source.to_string(),
                message: "SentencePiece model_type CHAR is not supported (only UNIGRAM and BPE)".into(),
            })
        }
        other => {
            return Err(TextError::InvalidTokenizer {
                source_name: source.to_string(),
                message: format!("unknown SentencePiece model_type {other} (expected 1 = UNIGRAM or 2 = BPE)"),
            })
        }
    };
    let np = pieces.len();
    Ok(SpmModel {
        algorithm,
        byte_fallback: t.byte_fallback,
        treat_whitespace_as_suffix: t.treat_whitespace_as_suffix,
        unk_id: opt_id(t.unk_id, np, "unk_id", source)?,
        bos_id: opt_id(t.bos_id, np, "bos_id", source)?,
        eos_id: opt_id(t.eos_id, np, "eos_id", source)?,
        pieces,
        precompiled_charsmap: n.precompiled_charsmap,
        add_dummy_prefix: n.add_dummy_prefix,
        remove_extra_whitespaces: n.remove_extra_whitespaces,
        escape_whitespaces: n.escape_whitespaces,
    })
}

/// BPE merges of a SentencePiece vocabulary: every split of a normal piece into two normal pieces, ordered
/// by the merged piece's score (highest first), then its id, then the split strings.
fn spm_merges(pieces: &[Piece]) -> Vec<(String, String)> {
    let normal: ahash::AHashMap<&str, (f32, usize)> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == PieceType::Normal)
        .map(|(i, p)| (p.text.as_str(), (p.score, i)))
        .collect();
    let mut ranked: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if p.kind != PieceType::Normal {
            continue;
        }
        let t = p.text.as_str();
        for (split, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(split);
            if normal.contains_key(l) && normal.contains_key(r) {
                ranked.push((p.score, i, l, r));
            }
        }
    }
    ranked
        .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then_with(|| a.2.cmp(b.2)).then_with(|| a.3.cmp(b.3)));
    ranked.into_iter().map(|(_, _, l, r)| (l.to_string(), r.to_string())).collect()
}

/// Everything needed to build a SentencePiece-style tokenizer.
pub(crate) struct SpmSpec<'a> {
    pub pieces: &'a [Piece],
    pub algorithm: Algorithm,
    pub byte_fallback: bool,
    pub unk_id: Option<u32>,
    pub pipeline: SpmPipeline<'a>,
}

/// A built SentencePiece tokenizer.
pub(crate) struct Built {
    pub tok: HfTokenizer,
    /// `(alias id, real id)` pairs: pieces that must never be matched in text (Unigram control, unknown
    /// and unused pieces) sit in the model under an empty string, and their text is an added token with an
    /// alias id past the vocabulary; [`super::Tokenizer`] maps alias ids back to the real ones.
    pub aliases: Vec<(u32, u32)>,
}

/// Builds the `tokenizers` pipeline of a SentencePiece vocabulary.
pub(crate) fn build(spec: &SpmSpec<'_>, source: &str) -> Result<Built, TextError> {
    let pieces = spec.pieces;
    let unk_text = spec.unk_id.and_then(|u| pieces.get(u as usize)).map(|p| p.text.clone());
    let hidden = |p: &Piece| {
        spec.algorithm == Algorithm::Unigram
            && matches!(p.kind, PieceType::Control | PieceType::Unknown | PieceType::Unused)
    };
    let mut tok = match spec.algorithm {
        Algorithm::Bpe => {
            let vocab = vocab_map(source, pieces.iter().enumerate().map(|(i, p)| (p.text.clone(), i as u32)))?;
            let merges = spm_merges(pieces);
            bare_tokenizer(bpe_model(source, vocab, merges, unk_text, spec.byte_fallback, false)?)
        }
        Algorithm::Unigram => {
            // Duplicate check only; Unigram keeps its own map.
            vocab_map(source, pieces.iter().enumerate().map(|(i, p)| (p.text.clone(), i as u32)))?;
            // SentencePiece never matches control, unknown or unused pieces in text and leaves them out of
            // the unknown-piece score: they enter the lattice as empty strings (which its trie never
            // matches) with score 0.
            let vocab: Vec<(String, f64)> = pieces
                .iter()
                .map(|p| if hidden(p) { (String::new(), 0.0) } else { (p.text.clone(), f64::from(p.score)) })
                .collect();
            let unk = spec.unk_id.map(|u| u as usize);
            bare_tokenizer(unigram_model(source, vocab, unk, spec.byte_fallback)?)
        }
    };
    set_spm_pipeline(&mut tok, source, &spec.pipeline)?;
    let mut aliases = Vec::new();
    let mut added = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let i = i as u32;
        if hidden(p) {
            let alias = (pieces.len() + aliases.len()) as u32;
            aliases.push((alias, i));
            added.push(FixedToken::new(alias, p.text.clone(), true));
        } else {
            match p.kind {
                PieceType::Control | PieceType::Unknown => added.push(FixedToken::new(i, p.text.clone(), true)),
                PieceType::UserDefined => added.push(FixedToken::new(i, p.text.clone(), false)),
                _ => {}
            }
        }
    }
    add_fixed_tokens(&mut tok, source, &mut added)?;
    Ok(Built { tok, aliases })
}

/// Builds a tokenizer from a parsed `tokenizer.model`.
pub(crate) fn build_from_model(m: &SpmModel, source: &str) -> Result<Built, TextError> {
    if m.treat_whitespace_as_suffix {
        return Err(TextError::Unsupported {
            source_name: source.to_string(),
            message: "SentencePiece treat_whitespace_as_suffix = true is not supported".into(),
        });
    }
    let spec = SpmSpec {
        pieces: &m.pieces,
        algorithm: m.algorithm,
        byte_fallback: m.byte_fallback,
        unk_id: m.unk_id,
        pipeline: SpmPipeline {
            precompiled_charsmap: Some(&m.precompiled_charsmap),
            add_dummy_prefix: m.add_dummy_prefix,
            remove_extra_whitespaces: m.remove_extra_whitespaces,
            escape_whitespaces: m.escape_whitespaces,
            byte_fallback: m.byte_fallback,
        },
    };
    build(&spec, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    fn field_bytes(field: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut p = Vec::new();
        field_bytes(1, text.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&score.to_le_bytes());
        varint(3 << 3, &mut p);
        varint(kind, &mut p);
        p
    }

    #[test]
    fn parses_minimal_model_and_rejects_garbage() {
        let mut m = Vec::new();
        for (t, s, k) in
            [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("▁a", -1.0, 1), ("a", -2.0, 1), ("▁", -3.0, 1)]
        {
            field_bytes(1, &piece(t, s, k), &mut m);
        }
        let mut trainer = Vec::new();
        varint(3 << 3, &mut trainer);
        varint(2, &mut trainer);
        field_bytes(2, &trainer, &mut m);
        let model = parse_model(&m, "test").unwrap();
        assert_eq!(model.pieces.len(), 6);
        assert_eq!(model.algorithm, Algorithm::Bpe);
        assert_eq!(model.bos_id, Some(1));
        assert!(model.add_dummy_prefix);
        let tok = build_from_model(&model, "test").unwrap().tok;
        let enc = tok.encode("a a", false).unwrap();
        assert_eq!(enc.get_ids(), &[3, 3]);

        // Truncated input and absurd lengths are errors, never panics.
        for cut in 0..m.len() {
            let _ = parse_model(&m[..cut], "test");
        }
        assert!(parse_model(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], "test").is_err());
        assert!(parse_model(&[0x0b], "test").is_err());
    }
}
