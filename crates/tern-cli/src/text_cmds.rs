//! `tern tokenize` and `tern prompt`: the text layer on its own (no weights needed).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tern_text::template::RenderRequest;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Model dir, tokenizer-only dir, tokenizer file (tokenizer.json, tokenizer.model, vocab.json) or GGUF file.
    #[arg(short, long)]
    model: PathBuf,
    /// Text to tokenize.
    #[arg(long)]
    text: String,
    /// Add BOS/EOS as the tokenizer's settings say.
    #[arg(long)]
    add_special: bool,
    /// Recognise special-token text (e.g. `<|im_start|>`) as special tokens.
    #[arg(long)]
    parse_special: bool,
}

/// Prints the ids as a JSON array.
pub fn tokenize_main(a: TokenizeArgs) -> Result<()> {
    let tok = tern_text::source::load_tokenizer(&a.model)
        .with_context(|| format!("loading the tokenizer from {}", a.model.display()))?;
    let ids = tok.encode(&a.text, a.add_special, a.parse_special)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PromptArgs {
    /// Model dir (tokenizer_config.json is enough), GGUF file, or a tokenizer file inside a model dir.
    #[arg(short, long)]
    model: PathBuf,
    /// JSON file with the messages (OpenAI shape: role/content, tool_calls, tool messages).
    #[arg(long)]
    messages: PathBuf,
    /// JSON file with the tool definitions.
    #[arg(long)]
    tools: Option<PathBuf>,
    /// Render with enable_thinking=false.
    #[arg(long)]
    no_think: bool,
}

fn read_json_array(path: &Path, what: &str) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    match v {
        serde_json::Value::Array(a) => Ok(a),
        serde_json::Value::Object(mut o) if o.contains_key(what) => match o.remove(what) {
            Some(serde_json::Value::Array(a)) => Ok(a),
            _ => bail!("{}: '{what}' must be an array", path.display()),
        },
        _ => bail!("{}: expected a JSON array of {what} (or an object with a '{what}' array)", path.display()),
    }
}

/// The request for `messages` (+ tools, thinking switch) with the generation prompt on.
pub fn chat_request(
    messages: Vec<serde_json::Value>,
    tools: Option<Vec<serde_json::Value>>,
    no_think: bool,
) -> RenderRequest {
    let mut req = RenderRequest::new(messages).with_generation_prompt(true);
    if let Some(t) = tools {
        req = req.with_tools(t);
    }
    if no_think {
        req = req.with_kwarg("enable_thinking", serde_json::Value::Bool(false));
    }
    req
}

/// Prints the rendered prompt exactly as the model will see it, and nothing else.
pub fn prompt_main(a: PromptArgs) -> Result<()> {
    let template = tern_text::source::load_chat_template(&a.model)?
        .with_context(|| format!("{} has no chat template", a.model.display()))?;
    let messages = read_json_array(&a.messages, "messages")?;
    let tools = a.tools.as_deref().map(|p| read_json_array(p, "tools")).transpose()?;
    let req = chat_request(messages, tools, a.no_think);
    let text = template.render(&req)?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
