//! Stop strings over streamed text, and the alignment of per-token logprobs with the text that is
//! actually released.
//!
//! [`StopFilter`] never leaks any part of a stop string: text that could be the start of a stop string
//! is held back until the next piece shows it is not (the same rule as llama.cpp's server
//! `find_partial_stop_string` and vLLM's `stop` handling with `include_stop_str_in_output=false`). The
//! earliest match across all stop strings wins; the output ends right before it.
//!
//! [`TokenQueue`] keeps each generated token with the text the streaming detokenizer attributed to it,
//! and releases tokens as their text is released, so that the concatenated `token` strings of the
//! logprobs always equal the returned text (the token that straddles a stop string is cut at it).

use std::collections::VecDeque;

/// Holds back text that may be the beginning of a stop string.
#[derive(Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    held: String,
    matched: bool,
}

/// Result of pushing text through a [`StopFilter`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Text that can be shown.
    pub text: String,
    /// A stop string was found: generation must end; `text` ends right before it.
    pub stopped: bool,
}

impl StopFilter {
    /// A filter for these stop strings (empty strings are ignored; validation rejects them earlier).
    pub fn new(stops: &[String]) -> StopFilter {
        StopFilter { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), ..StopFilter::default() }
    }

    /// Adds generated text; returns what can be released.
    pub fn push(&mut self, text: &str) -> Released {
        if self.matched {
            return Released { text: String::new(), stopped: true };
        }
        if self.stops.is_empty() {
            return Released { text: text.to_string(), stopped: false };
        }
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            self.matched = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return Released { text: out, stopped: true };
        }
        let keep = self.partial_suffix_len();
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Released { text: out, stopped: false }
    }

    /// Releases whatever is held (generation ended for another reason).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop string, on a char
    /// boundary.
    fn partial_suffix_len(&self) -> usize {
        let h = &self.held;
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(h.len());
            for len in (best + 1..=max).rev() {
                let start = h.len() - len;
                if h.is_char_boundary(start) && s.as_bytes().starts_with(&h.as_bytes()[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

/// One generated token with its logprob information and the text attributed to it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub id: u32,
    /// Text attributed to this token by the streaming detokenizer (may be empty while a multi-byte
    /// character is incomplete).
    pub text: String,
    pub logprob: f32,
    /// `(token text, logprob)` of the most likely alternatives.
    pub top: Vec<(String, f32)>,
}

/// Tokens waiting for their text to be released.
#[derive(Debug, Default)]
pub struct TokenQueue {
    queue: VecDeque<TokenInfo>,
    /// Bytes released that the front token(s) have not consumed yet.
    credit: usize,
}

impl TokenQueue {
    pub fn push(&mut self, t: TokenInfo) {
        self.queue.push_back(t);
    }

    /// Attributes extra text (the detokenizer's final flush) to the newest token.
    pub fn append_to_last(&mut self, text: &str) {
        if let Some(t) = self.queue.back_mut() {
            t.text.push_str(text);
        }
    }

    /// `n` more bytes of text were released; returns the tokens whose text is now fully released.
    pub fn release(&mut self, n: usize) -> Vec<TokenInfo> {
        self.credit += n;
        let mut out = Vec::new();
        while let Some(front) = self.queue.front() {
            if front.text.len() > self.credit {
                break;
            }
            self.credit -= front.text.len();
            out.extend(self.queue.pop_front());
        }
        out
    }

    /// Generation ended. With `cut` (a stop string was matched) the remaining text was not released:
    /// the token straddling the end keeps only its released part and later tokens are dropped;
    /// otherwise everything is released.
    pub fn finish(&mut self, cut: bool) -> Vec<TokenInfo> {
        if !cut {
            self.credit = 0;
            return self.queue.drain(..).collect();
        }
        let mut out = Vec::new();
        if let Some(mut t) = self.queue.pop_front() {
            if self.credit > 0 {
                let mut at = self.credit.min(t.text.len());
                while !t.text.is_char_boundary(at) {
                    at -= 1;
                }
                t.text.truncate(at);
                out.push(t);
            }
        }
        self.queue.clear();
        self.credit = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut f = StopFilter::new(&stops);
        let mut out = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let r = f.push(p);
            out.push(r.text);
            if r.stopped {
                stopped = true;
                break;
            }
        }
        let tail = if stopped { String::new() } else { f.finish() };
        (out, stopped, tail)
    }

    #[test]
    fn holds_back_partial_stop_strings() {
        let (out, stopped, _) = run(&["\nUser:"], &["Hello", " world\n", "Us", "er: hi"]);
        assert_eq!(out, vec!["Hello", " world", "", ""]);
        assert!(stopped);
        // A false alarm is released once disproved.
        let (out, stopped, tail) = run(&["\nUser:"], &["a\n", "Usb", "c"]);
        assert_eq!(out, vec!["a", "\nUsb", "c"]);
        assert!(!stopped);
        assert_eq!(tail, "");
        // Held text comes out at the end when generation stops for another reason.
        let (out, _, tail) = run(&["STOP"], &["abc S", "T"]);
        assert_eq!(out, vec!["abc ", ""]);
        assert_eq!(tail, "ST");
    }

    #[test]
    fn earliest_match_wins_and_multibyte_is_safe() {
        let (out, stopped, _) = run(&["cd", "b"], &["abcd"]);
        assert_eq!(out, vec!["a"]);
        assert!(stopped);
        let (out, stopped, tail) = run(&["é!"], &["caf", "é", "?"]);
        assert_eq!(out, vec!["caf", "", "é?"]);
        assert!(!stopped);
        assert_eq!(tail, "");
        let (out, ..) = run(&[], &["x"]);
        assert_eq!(out, vec!["x"]);
    }

    fn tok(id: u32, text: &str) -> TokenInfo {
        TokenInfo { id, text: text.into(), logprob: -1.0, top: vec![] }
    }

    #[test]
    fn token_queue_follows_released_text() {
        let mut q = TokenQueue::default();
        q.push(tok(1, "ab"));
        q.push(tok(2, ""));
        q.push(tok(3, "cd"));
        assert_eq!(q.release(1), vec![]);
        assert_eq!(q.release(1).iter().map(|t| t.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(q.release(1), vec![]);
        // Stop matched after "c": token 3 keeps "c".
        let rest = q.finish(true);
        assert_eq!(rest, vec![tok(3, "c")]);
        let mut q = TokenQueue::default();
        q.push(tok(1, "ab"));
        q.push(tok(2, "cd"));
        assert_eq!(q.finish(false).len(), 2);
        let mut q = TokenQueue::default();
        q.push(tok(1, "ab"));
        assert_eq!(q.finish(true), vec![]);
    }
}
