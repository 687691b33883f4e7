//! Streaming detokenization: turn generated ids into text as they arrive.
//!
//! The algorithm is the "prefix window" of Hugging Face text-generation-inference / `tokenizers`'
//! `DecodeStream`: the text of the new ids is the difference between decoding a short window of ids that
//! ends with them and decoding the same window without them, so decoder context (the `▁` dummy-prefix
//! strip of SentencePiece decoders, WordPiece `##` joins, byte-level UTF-8 assembly) is the same as when the
//! whole sequence is decoded. On top of that:
//!
//! * text that ends in U+FFFD is held back (it may be a UTF-8 character whose remaining bytes are in the
//!   next token), so a character is never split;
//! * while the last id is a byte-fallback token (`<0xE2>` ...), output is held too: `tokenizers`' ByteFallback
//!   decoder turns a whole run of byte tokens into U+FFFD if any part of the run is invalid, so a run can
//!   only be emitted once it has ended;
//! * special tokens dropped by `skip_special` add no text (and a byte run continues across them);
//! * the window only restarts after a non-byte token whose text was emitted.
//!
//! Hence the concatenation of everything [`StreamDecoder::push`] and [`StreamDecoder::flush`] return equals
//! `Tokenizer::decode` of all ids (tested on random ids for every tokenizer). The one exception is a run of
//! more than [`MAX_HELD`] ids that each leave the text incomplete, which is emitted as is to bound the work.

use crate::error::TextError;
use crate::tokenizer::Tokenizer;

/// The most ids held back before output is forced.
pub const MAX_HELD: usize = 64;

/// Incremental decoder over one tokenizer.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    /// Start of the decoding window.
    prefix: usize,
    /// Ids before this index have been emitted.
    read: usize,
}

impl<'a> StreamDecoder<'a> {
    /// A stream decoder that skips special tokens (like `decode(ids, true)`).
    pub fn new(tok: &'a Tokenizer) -> Self {
        Self::with_skip_special(tok, true)
    }

    /// A stream decoder; `skip_special` as in `Tokenizer::decode`.
    pub fn with_skip_special(tok: &'a Tokenizer, skip_special: bool) -> Self {
        StreamDecoder { tok, skip_special, ids: Vec::new(), prefix: 0, read: 0 }
    }

    /// Adds one id; returns the text that became final, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TextError> {
        self.tok.check_id(id)?;
        self.ids.push(id);
        if self.skip_special && self.tok.is_skipped(id) {
            // Adds no text; a byte-fallback run may even continue across it.
            return Ok(None);
        }
        let held = self.ids.len() - self.read;
        if self.tok.is_byte_token(id) && held <= MAX_HELD {
            return Ok(None);
        }
        let prefix_text = self.decode(self.prefix, self.read)?;
        let new_text = self.decode(self.prefix, self.ids.len())?;
        let complete = !new_text.ends_with('\u{FFFD}') || held > MAX_HELD;
        if new_text.len() > prefix_text.len() && complete && new_text.starts_with(&prefix_text) {
            let out = new_text[prefix_text.len()..].to_string();
            self.advance();
            return Ok(Some(out));
        }
        if held > MAX_HELD {
            // Nothing to show for a long run (e.g. skipped special tokens): restart the window.
            self.advance();
        }
        Ok(None)
    }

    /// Emits whatever is still held back (an incomplete character comes out as U+FFFD).
    pub fn flush(&mut self) -> Result<String, TextError> {
        if self.read == self.ids.len() {
            return Ok(String::new());
        }
        let prefix_text = self.decode(self.prefix, self.read)?;
        let new_text = self.decode(self.prefix, self.ids.len())?;
        let out = new_text.get(prefix_text.len()..).filter(|_| new_text.starts_with(&prefix_text));
        let out = out.unwrap_or_default().to_string();
        self.advance();
        Ok(out)
    }

    /// Forgets all ids (the next id starts a new text).
    pub fn reset(&mut self) {
        self.ids.clear();
        self.prefix = 0;
        self.read = 0;
    }

    fn decode(&self, from: usize, to: usize) -> Result<String, TextError> {
        if from >= to {
            return Ok(String::new());
        }
        self.tok.decode_checked(&self.ids[from..to], self.skip_special)
    }

    fn advance(&mut self) {
        // The window may restart at `read` only if the id before it is not a byte-fallback token.
        if self.read == 0 || !self.tok.is_byte_token(self.ids[self.read - 1]) {
            self.prefix = self.read;
        }
        self.read = self.ids.len();
        if self.prefix > 1024 {
            self.ids.drain(..self.prefix);
            self.read -= self.prefix;
            self.prefix = 0;
        }
    }
}
