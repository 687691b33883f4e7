//! Splitting `<think>…</think>` reasoning from the answer, incrementally (for streaming) or at once.
//!
//! Matches vLLM's `deepseek_r1` / `qwen3` reasoning parsers: the reasoning is the text between an
//! opening `<think>` at the very start of the output (after whitespace) — or from the start when the
//! prompt itself ends with an open `<think>` (DeepSeek-R1 templates) — and the first `</think>`;
//! everything after it (leading whitespace removed) is the content. Output without a leading
//! `<think>` is all content. A tag split across pieces is held back until it is complete, so no
//! partial tag ever reaches either field. Output that ends inside the reasoning (length limit) is
//! all reasoning.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not yet known whether the output starts with `<think>`.
    Start,
    Thinking,
    /// After `</think>`, before the first non-whitespace content.
    AfterThink,
    Content,
}

/// Incremental reasoning/content splitter.
#[derive(Debug)]
pub struct ReasoningSplit {
    state: State,
    buf: String,
    /// A think block was opened (by the prompt or the output).
    thought: bool,
}

/// Text routed to each field by one call.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
}

impl ReasoningSplit {
    /// A splitter; `in_thinking` when the prompt ends with an open `<think>`.
    pub fn new(in_thinking: bool) -> ReasoningSplit {
        ReasoningSplit {
            state: if in_thinking { State::Thinking } else { State::Start },
            buf: String::new(),
            thought: in_thinking,
        }
    }

    /// True when the rendered prompt leaves the model inside a `<think>` block.
    pub fn prompt_opens_thinking(prompt: &str) -> bool {
        let t = prompt.trim_end();
        match (t.rfind(OPEN), t.rfind(CLOSE)) {
            (Some(o), Some(c)) => o > c && t[o..].trim() == OPEN,
            (Some(o), None) => t[o..].trim() == OPEN,
            _ => false,
        }
    }

    /// Adds generated text.
    pub fn push(&mut self, text: &str) -> Split {
        self.buf.push_str(text);
        let mut out = Split::default();
        loop {
            match self.state {
                State::Start => {
                    let t = self.buf.trim_start();
                    if t.is_empty() || (OPEN.starts_with(t) && t.len() < OPEN.len()) {
                        return out;
                    }
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.buf = rest.to_string();
                        self.state = State::Thinking;
                        self.thought = true;
                    } else {
                        self.state = State::Content;
                    }
                }
                State::Thinking => {
                    if let Some(at) = self.buf.find(CLOSE) {
                        out.reasoning.push_str(&self.buf[..at]);
                        self.buf.drain(..at + CLOSE.len());
                        self.state = State::AfterThink;
                        continue;
                    }
                    let keep = partial_suffix(&self.buf, CLOSE);
                    let cut = self.buf.len() - keep;
                    out.reasoning.push_str(&self.buf[..cut]);
                    self.buf.drain(..cut);
                    return out;
                }
                State::AfterThink => {
                    let t = self.buf.trim_start();
                    if t.is_empty() {
                        self.buf.clear();
                        return out;
                    }
                    self.buf = t.to_string();
                    self.state = State::Content;
                }
                State::Content => {
                    out.content.push_str(&self.buf);
                    self.buf.clear();
                    return out;
                }
            }
        }
    }

    /// True once a think block was opened.
    pub fn thought(&self) -> bool {
        self.thought
    }

    /// Generation ended: releases held text.
    pub fn finish(&mut self) -> Split {
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            State::Thinking => Split { reasoning: rest, content: String::new() },
            State::AfterThink => Split::default(),
            State::Start | State::Content => Split { reasoning: String::new(), content: rest },
        }
    }

    /// Splits a whole output: `(reasoning, content)`; reasoning is `None` without a think block.
    pub fn split_all(in_thinking: bool, text: &str) -> (Option<String>, String) {
        let mut s = ReasoningSplit::new(in_thinking);
        let a = s.push(text);
        let b = s.finish();
        let reasoning = a.reasoning + &b.reasoning;
        (s.thought.then_some(reasoning), a.content + &b.content)
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of `tag` (on a char boundary).
fn partial_suffix(s: &str, tag: &str) -> usize {
    let max = (tag.len() - 1).min(s.len());
    (1..=max).rev().find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(in_thinking: bool, pieces: &[&str]) -> (String, String) {
        let mut s = ReasoningSplit::new(in_thinking);
        let (mut r, mut c) = (String::new(), String::new());
        for p in pieces {
            let o = s.push(p);
            r += &o.reasoning;
            c += &o.content;
        }
        let o = s.finish();
        (r + &o.reasoning, c + &o.content)
    }

    #[test]
    fn splits_think_blocks_across_pieces() {
        let want = ("I should add.".to_string(), "4".to_string());
        assert_eq!(stream(false, &["<think>I should add.</think>\n\n4"]), want);
        assert_eq!(stream(false, &["\n<th", "ink>I sh", "ould add.</thi", "nk>", "\n", "\n4"]), want);
        assert_eq!(stream(true, &["I should add.</think>4"]), want);
        // No think block: all content, even a "<" that first looked like a tag.
        assert_eq!(stream(false, &["<", "b>hi"]), (String::new(), "<b>hi".into()));
        assert_eq!(stream(false, &["Answer: <think> no"]), (String::new(), "Answer: <think> no".into()));
        // Cut off while thinking.
        assert_eq!(stream(false, &["<think>hmm </th"]), ("hmm </th".into(), String::new()));
    }

    #[test]
    fn split_all_and_prompt_detection() {
        assert_eq!(ReasoningSplit::split_all(false, "plain"), (None, "plain".into()));
        assert_eq!(ReasoningSplit::split_all(false, "<think></think>x"), (Some(String::new()), "x".into()));
        assert!(ReasoningSplit::prompt_opens_thinking("<|im_start|>assistant\n<think>\n"));
        assert!(!ReasoningSplit::prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        assert!(!ReasoningSplit::prompt_opens_thinking("<|im_start|>assistant\n"));
    }
}
