//! A minimal reader for SentencePiece `tokenizer.model` files (the `ModelProto` protobuf of
//! `sentencepiece_model.proto`): the pieces with their scores and types, the trainer's model type and
//! special ids, and the normalizer flags — what llama.cpp's converter reads through
//! `SentencePieceProcessor` (`_create_vocab_sentencepiece`).
//!
//! Only the protobuf wire format is decoded (varints, fixed32/64, length-delimited fields); unknown
//! fields are skipped. Every length is checked against the bytes that remain, so truncated or hostile
//! files give an error naming the field, never a panic or an oversized allocation.

use crate::error::{ConvertError, Result};

/// `SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

/// One vocabulary entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// What the converter needs from a `tokenizer.model`.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpmModel {
    pub pieces: Vec<Piece>,
    /// `TrainerSpec.model_type`: 1 UNIGRAM (the default), 2 BPE, 3 WORD, 4 CHAR.
    pub model_type: i64,
    pub byte_fallback: bool,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, what: &str) -> ConvertError {
        ConvertError::tokenizer(self.path, format!("not a SentencePiece model: {what} at byte {}", self.pos))
    }

    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let byte = *self.b.get(self.pos).ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            self.err(&format!("field of {n} bytes runs past the end of the file ({} bytes)", self.b.len()))
        })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Next field: `(number, wire type, payload)` where the payload is the varint value (type 0), the
    /// raw bytes (types 1, 2, 5).
    fn field(&mut self) -> Result<(u64, Field<'a>)> {
        let key = self.varint()?;
        let (num, wt) = (key >> 3, key & 7);
        let f = match wt {
            0 => Field::Varint(self.varint()?),
            1 => Field::Bytes(self.bytes(8)?),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| self.err("length overflows"))?;
                Field::Bytes(self.bytes(n)?)
            }
            5 => Field::Bytes(self.bytes(4)?),
            other => return Err(self.err(&format!("unsupported protobuf wire type {other} (field {num})"))),
        };
        Ok((num, f))
    }
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn piece_type(v: u64) -> PieceType {
    match v {
        2 => PieceType::Unknown,
        3 => PieceType::Control,
        4 => PieceType::UserDefined,
        5 => PieceType::Unused,
        6 => PieceType::Byte,
        _ => PieceType::Normal,
    }
}

/// Parses a `tokenizer.model` (`path` is used in messages).
pub(crate) fn parse(data: &[u8], path: &str) -> Result<SpmModel> {
    let mut m =
        SpmModel { model_type: 1, add_dummy_prefix: true, remove_extra_whitespaces: true, ..Default::default() };
    let mut r = Reader { b: data, pos: 0, path };
    while !r.done() {
        match r.field()? {
            (1, Field::Bytes(p)) => m.pieces.push(parse_piece(p, path, m.pieces.len())?),
            (2, Field::Bytes(t)) => {
                let mut tr = Reader { b: t, pos: 0, path };
                while !tr.done() {
                    match tr.field()? {
                        (3, Field::Varint(v)) => m.model_type = v as i64,
                        (35, Field::Varint(v)) => m.byte_fallback = v != 0,
                        _ => {}
                    }
                }
            }
            (3, Field::Bytes(n)) => {
                let mut nr = Reader { b: n, pos: 0, path };
                while !nr.done() {
                    match nr.field()? {
                        (3, Field::Varint(v)) => m.add_dummy_prefix = v != 0,
                        (4, Field::Varint(v)) => m.remove_extra_whitespaces = v != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if m.pieces.is_empty() {
        return Err(ConvertError::tokenizer(path, "not a SentencePiece model: no pieces"));
    }
    Ok(m)
}

fn parse_piece(b: &[u8], path: &str, index: usize) -> Result<Piece> {
    let mut r = Reader { b, pos: 0, path };
    let mut p = Piece { piece: String::new(), score: 0.0, kind: PieceType::Normal };
    while !r.done() {
        match r.field()? {
            (1, Field::Bytes(s)) => {
                p.piece = String::from_utf8(s.to_vec())
                    .map_err(|_| ConvertError::tokenizer(path, format!("piece #{index} is not valid UTF-8")))?;
            }
            (2, Field::Bytes(f)) if f.len() == 4 => p.score = f32::from_le_bytes([f[0], f[1], f[2], f[3]]),
            (3, Field::Varint(v)) => p.kind = piece_type(v),
            _ => {}
        }
    }
    Ok(p)
}

/// Whether a `tokenizer.model` is a tiktoken BPE file (`base64 rank` lines) rather than protobuf.
pub(crate) fn looks_like_tiktoken(data: &[u8]) -> bool {
    let head = &data[..data.len().min(256)];
    let Some(line) = head.split(|&b| b == b'\n').next() else { return false };
    let mut parts = line.split(|&b| b == b' ');
    let (Some(tok), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    !tok.is_empty()
        && tok.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && !rank.is_empty()
        && rank.iter().all(u8::is_ascii_digit)
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
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(num: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    #[test]
    fn parses_pieces_and_specs() {
        let mut m = Vec::new();
        for (s, score, ty) in [("<unk>", 0.0f32, 2u64), ("<s>", 0.0, 3), ("▁a", -1.5, 1), ("<0x0A>", 0.0, 6)] {
            let mut p = Vec::new();
            bytes_field(1, s.as_bytes(), &mut p);
            varint(2 << 3 | 5, &mut p);
            p.extend_from_slice(&score.to_le_bytes());
            varint(3 << 3, &mut p);
            varint(ty, &mut p);
            bytes_field(1, &p, &mut m);
        }
        let mut t = Vec::new();
        varint(3 << 3, &mut t);
        varint(2, &mut t);
        varint(35 << 3, &mut t);
        varint(1, &mut t);
        varint(43 << 3, &mut t);
        varint(u64::MAX, &mut t); // pad_id = -1 as a 10-byte varint
        bytes_field(2, &t, &mut m);
        let mut n = Vec::new();
        varint(3 << 3, &mut n);
        varint(0, &mut n);
        bytes_field(3, &n, &mut m);
        let model = parse(&m, "t.model").unwrap();
        assert_eq!(model.pieces.len(), 4);
        assert_eq!(model.pieces[2], Piece { piece: "▁a".into(), score: -1.5, kind: PieceType::Normal });
        assert_eq!(model.pieces[3].kind, PieceType::Byte);
        assert_eq!(model.model_type, 2);
        assert!(model.byte_fallback && !model.add_dummy_prefix && model.remove_extra_whitespaces);
        // Every truncation is an error, never a panic.
        for cut in 0..m.len() {
            let _ = parse(&m[..cut], "t.model");
        }
        assert!(parse(&m[..m.len() - 1], "t.model").unwrap_err().to_string().contains("t.model"));
    }

    #[test]
    fn tells_tiktoken_apart() {
        assert!(looks_like_tiktoken(b"IQ== 0\nIg== 1\n"));
        assert!(!looks_like_tiktoken(&[0x0a, 0x0b, 0x0a, 0x05, b'<', b'u', b'n', b'k', b'>']));
    }
}
