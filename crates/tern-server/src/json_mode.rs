//! `response_format: {"type": "json_object"}`: constrained decoding that only lets the model write a
//! syntactically valid JSON object (RFC 8259 grammar), as OpenAI's JSON mode guarantees.
//!
//! [`JsonState`] is an incremental JSON recogniser over bytes, small and `Copy` (the container stack
//! is a bit set, depth ≤ [`MAX_DEPTH`]), so checking whether a token may come next is a copy plus one
//! step per byte. At each step every token whose text would break the grammar gets a logit of −∞ (the
//! token-mask approach of llama.cpp grammars / Outlines, without precompiled automata): about
//! vocabulary × token length byte steps per generated token. End-of-sequence is only allowed once the
//! object is complete, and generation stops as soon as it is. Bytes ≥ 0x80 (including U+FFFD from a
//! token that holds part of a UTF-8 character) are allowed inside strings only.

/// Deepest nesting the recogniser follows.
pub const MAX_DEPTH: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// Before the top-level value (whitespace, then `{`).
    Start,
    /// A value must come (after `:` or `,` in an array, or `[`).
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the closing bracket (or, at the top, the end).
    After,
    /// Inside a string; `key` when it is an object key.
    Str { key: bool },
    /// After a backslash in a string.
    Escape { key: bool },
    /// Inside `\uXXXX`, `n` hex digits still expected.
    Unicode { key: bool, n: u8 },
    /// Inside a number.
    Num(NumPart),
    /// Inside `true` / `false` / `null`: the rest of the literal.
    Lit { word: u8, at: u8 },
    /// The top-level value is complete.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumPart {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

const WORDS: [&[u8]; 3] = [b"true", b"false", b"null"];

/// Incremental JSON-object recogniser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonState {
    lex: Lex,
    /// Bit `i` set: container `i` (0 = outermost) is an object, else an array.
    kinds: u64,
    depth: u32,
}

impl Default for JsonState {
    fn default() -> Self {
        JsonState::new()
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonState {
    /// Expects one JSON object.
    pub fn new() -> JsonState {
        JsonState { lex: Lex::Start, kinds: 0, depth: 0 }
    }

    /// The object is complete.
    pub fn is_complete(&self) -> bool {
        self.lex == Lex::Done
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.kinds >> (self.depth - 1) & 1 == 1
    }

    fn open(&mut self, object: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        if object {
            self.kinds |= 1 << self.depth;
        } else {
            self.kinds &= !(1 << self.depth);
        }
        self.depth += 1;
        self.lex = if object { Lex::KeyOrEnd } else { Lex::ValueOrEnd };
        true
    }

    fn close(&mut self, object: bool) -> bool {
        if self.depth == 0 || self.in_object() != object {
            return false;
        }
        self.depth -= 1;
        self.value_done();
        true
    }

    fn value_done(&mut self) {
        self.lex = if self.depth == 0 { Lex::Done } else { Lex::After };
    }

    /// Starts a value with byte `b`.
    fn start_value(&mut self, b: u8) -> bool {
        match b {
            b'{' => self.open(true),
            b'[' => self.open(false),
            b'"' => {
                self.lex = Lex::Str { key: false };
                true
            }
            b'-' => {
                self.lex = Lex::Num(NumPart::Minus);
                true
            }
            b'0' => {
                self.lex = Lex::Num(NumPart::Zero);
                true
            }
            b'1'..=b'9' => {
                self.lex = Lex::Num(NumPart::Int);
                true
            }
            b't' | b'f' | b'n' => {
                let word = match b {
                    b't' => 0,
                    b'f' => 1,
                    _ => 2,
                };
                self.lex = Lex::Lit { word, at: 1 };
                true
            }
            _ => false,
        }
    }

    /// Consumes one byte; false (state unchanged meaning nothing) if it breaks the grammar.
    pub fn push(&mut self, b: u8) -> bool {
        match self.lex {
            Lex::Start => is_ws(b) || (b == b'{' && self.open(true)),
            Lex::Value => is_ws(b) || self.start_value(b),
            Lex::ValueOrEnd => is_ws(b) || (b == b']' && self.close(false)) || self.start_value(b),
            Lex::KeyOrEnd | Lex::Key => {
                if is_ws(b) {
                    return true;
                }
                if b == b'"' {
                    self.lex = Lex::Str { key: true };
                    return true;
                }
                self.lex == Lex::KeyOrEnd && b == b'}' && self.close(true)
            }
            Lex::Colon => {
                if b == b':' {
                    self.lex = Lex::Value;
                    return true;
                }
                is_ws(b)
            }
            Lex::After => {
                if is_ws(b) {
                    return true;
                }
                match b {
                    b',' => {
                        self.lex = if self.in_object() { Lex::Key } else { Lex::Value };
                        true
                    }
                    b'}' => self.close(true),
                    b']' => self.close(false),
                    _ => false,
                }
            }
            Lex::Str { key } => match b {
                b'"' => {
                    if key {
                        self.lex = Lex::Colon;
                    } else {
                        self.value_done();
                    }
                    true
                }
                b'\\' => {
                    self.lex = Lex::Escape { key };
                    true
                }
                0..=0x1F => false,
                _ => true,
            },
            Lex::Escape { key } => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                    self.lex = Lex::Str { key };
                    true
                }
                b'u' => {
                    self.lex = Lex::Unicode { key, n: 4 };
                    true
                }
                _ => false,
            },
            Lex::Unicode { key, n } => {
                if !b.is_ascii_hexdigit() {
                    return false;
                }
                self.lex = if n == 1 { Lex::Str { key } } else { Lex::Unicode { key, n: n - 1 } };
                true
            }
            Lex::Num(part) => {
                use NumPart::*;
                let next = match (part, b) {
                    (Minus, b'0') => Some(Zero),
                    (Minus, b'1'..=b'9') => Some(Int),
                    (Int, b'0'..=b'9') => Some(Int),
                    (Zero | Int, b'.') => Some(Dot),
                    (Dot | Frac, b'0'..=b'9') => Some(Frac),
                    (Zero | Int | Frac, b'e' | b'E') => Some(E),
                    (E, b'+' | b'-') => Some(ESign),
                    (E | ESign | Exp, b'0'..=b'9') => Some(Exp),
                    _ => None,
                };
                if let Some(p) = next {
                    self.lex = Lex::Num(p);
                    return true;
                }
                // The number ends here if it can; the byte then follows the value.
                if matches!(part, Zero | Int | Frac | Exp) {
                    self.value_done();
                    return self.push(b);
                }
                false
            }
            Lex::Lit { word, at } => {
                let w = WORDS[word as usize];
                if w.get(at as usize) != Some(&b) {
                    return false;
                }
                if at as usize + 1 == w.len() {
                    self.value_done();
                } else {
                    self.lex = Lex::Lit { word, at: at + 1 };
                }
                true
            }
            // Nothing may follow the object (whitespace would never end).
            Lex::Done => false,
        }
    }

    /// Whether `bytes` may come next (a non-empty token text).
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        let mut s = *self;
        bytes.iter().all(|&b| s.push(b))
    }

    /// Consumes `bytes` (which [`JsonState::accepts`] allowed).
    pub fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.push(b) {
                break;
            }
        }
    }
}

/// Masks every token that may not come next: `logits[id] = −∞` unless `texts[id]` is accepted.
/// EOS is masked too (generation ends when the object is complete). Returns how many tokens remain.
pub fn mask_logits(state: &JsonState, texts: &[Box<[u8]>], logits: &mut [f32]) -> usize {
    let mut allowed = 0;
    for (id, l) in logits.iter_mut().enumerate() {
        let ok = texts.get(id).is_some_and(|t| state.accepts(t));
        if ok {
            allowed += 1;
        } else {
            *l = f32::NEG_INFINITY;
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts_all(s: &str) -> Option<JsonState> {
        let mut st = JsonState::new();
        for &b in s.as_bytes() {
            if !st.push(b) {
                return None;
            }
        }
        Some(st)
    }

    #[test]
    fn valid_objects_complete() {
        for s in [
            "{}",
            " {\"a\": 1}",
            "{\"a\":[1,-2.5e+3,0,true,false,null,\"x\\n\\u00e9\",{\"b\":[]}],\"c\":{}}",
            "{\"k\": \"caf\u{e9} \u{1F600}\"}",
            "{\"n\": -0.0E1 }",
        ] {
            let st = accepts_all(s).unwrap_or_else(|| panic!("{s} rejected"));
            assert!(st.is_complete(), "{s}");
            // Every one of them parses in serde_json too.
            serde_json::from_str::<serde_json::Value>(s).unwrap();
        }
        // Prefixes are accepted but not complete.
        let st = accepts_all("{\"a\": [1, 2").unwrap();
        assert!(!st.is_complete());
    }

    #[test]
    fn invalid_bytes_are_rejected() {
        for s in [
            "[]",
            "1",
            "\"x\"",
            "{,}",
            "{\"a\" 1}",
            "{\"a\":}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":1,}",
            "{\"a\":tru }",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\n\"}",
            "{\"a\":[1}",
            "{} {}",
            "{}x",
            "{\"a\":-}",
            "{\"a\":1e}",
        ] {
            let st = accepts_all(s);
            assert!(st.is_none_or(|st| !st.is_complete()), "{s:?} accepted");
            assert!(serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).is_err(), "{s}");
        }
        let deep = "{\"a\":".to_string() + &"[".repeat(MAX_DEPTH as usize);
        assert!(accepts_all(&deep).is_none());
    }

    #[test]
    fn random_byte_strings_agree_with_serde() {
        // Every complete string the recogniser accepts is a JSON object for serde_json.
        let alphabet = b"{}[]:,\"\\ 0123456789-+.eEtruefalsn\nax";
        let mut x: u64 = 12345;
        let mut complete = 0;
        for _ in 0..200_000 {
            let mut st = JsonState::new();
            let mut s = Vec::new();
            for _ in 0..24 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = alphabet[(x % alphabet.len() as u64) as usize];
                let mut t = st;
                if t.push(b) {
                    st = t;
                    s.push(b);
                }
                if st.is_complete() {
                    break;
                }
            }
            if st.is_complete() {
                complete += 1;
                let text = String::from_utf8(s).unwrap();
                assert!(serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).is_ok(), "{text}");
            }
        }
        assert!(complete > 1000, "{complete}");
    }

    #[test]
    fn masking() {
        let texts: Vec<Box<[u8]>> =
            ["{", "}", "\"a\"", ":", "1", " ", "x", "", "\u{FFFD}"].iter().map(|t| t.as_bytes().into()).collect();
        let mut logits = vec![0.0; texts.len() + 1];
        let st = JsonState::new();
        assert_eq!(mask_logits(&st, &texts, &mut logits), 2); // "{" and " "
        assert!(logits[0] == 0.0 && logits[5] == 0.0 && logits[1].is_infinite() && logits[9].is_infinite());
        let st = accepts_all("{\"a\":\"").unwrap();
        let mut logits = vec![0.0; texts.len()];
        mask_logits(&st, &texts, &mut logits);
        assert_eq!(logits[8], 0.0, "non-ASCII inside a string");
        assert!(logits[7].is_infinite(), "empty tokens never");
    }
}
