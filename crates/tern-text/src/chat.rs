//! Turning a conversation into prompt token ids: render the chat template, then tokenize so that the
//! template's own special tokens are recognised while special-token text typed by a user stays plain
//! text (transformers 5.x `sanitize_control_tokens` semantics, see [`crate::template`]).
//!
//! The rendered prompt already contains whatever BOS the template writes, so no BOS/EOS is added
//! by the tokenizer here (transformers' `apply_chat_template(tokenize=True)` uses
//! `add_special_tokens=False`).

use crate::template::{ChatTemplate, RenderRequest, TemplateError};
use crate::tokenizer::Tokenizer;
use crate::TextError;

/// Errors from building a chat prompt.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Text(#[from] TextError),
}

/// A rendered prompt: the text (for display, `tern prompt`) and its token ids.
#[derive(Debug, Clone)]
pub struct ChatPrompt {
    pub text: String,
    pub ids: Vec<u32>,
}

/// Renders `req` with `template` and tokenizes it safely with `tok`.
pub fn encode_chat(tok: &Tokenizer, template: &ChatTemplate, req: &RenderRequest) -> Result<ChatPrompt, ChatError> {
    let added: Vec<(String, bool)> =
        tok.hf().get_added_tokens_decoder().values().map(|t| (t.content.clone(), t.special)).collect();
    let segments = template.render_segments(req, added.iter().map(|(s, sp)| (s.as_str(), *sp)))?;
    let mut ids = Vec::new();
    let mut text = String::new();
    for s in &segments {
        ids.extend(tok.encode(&s.text, false, s.parse_special)?);
        text.push_str(&s.text);
    }
    Ok(ChatPrompt { text, ids })
}
