//! `tern chat -m MODEL`: an interactive conversation in the terminal.
//!
//! Replies stream as they are generated; the history is kept and re-rendered through the chat
//! template each turn, and the KV cache is reused for the longest unchanged prefix, so only the new
//! turn is prefilled. `/reset` starts over, `/exit` (or Ctrl-D) leaves; Ctrl-C stops the current
//! reply and returns to the prompt.

use crate::common::{self, SamplingArgs};
use crate::text_cmds::chat_request;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tern_engine::{Generator, Sampler, StepControl};
use tern_text::stream::StreamDecoder;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model: a GGUF file, an HF model directory, or a Hub repo (`org/name[@rev]`, `org/name:file.gguf`).
    #[arg(short, long)]
    model: String,
    #[command(flatten)]
    hub: crate::hub_cmds::HubArgs,
    #[command(flatten)]
    device: common::DeviceArgs,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Render with enable_thinking=false (Qwen3-style templates).
    #[arg(long)]
    no_think: bool,
    /// Maximum tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    n_predict: usize,
    /// Context size (KV cache positions). Default: min(max_position_embeddings, 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx: Option<usize>,
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn main(a: Args) -> Result<()> {
    let model_path = crate::hub_cmds::resolve_model(&a.model, &a.hub)?;
    let model = common::load_model(&model_path)?;
    let tok = tern_text::source::load_tokenizer(&model_path)
        .with_context(|| format!("loading the tokenizer from {}", model_path.display()))?;
    let template = tern_text::source::load_chat_template(&model_path)?
        .with_context(|| format!("{} has no chat template: use `tern run` for raw completion", model_path.display()))?;
    let params = a.sampling.resolve(&model)?;
    let ctx = a.ctx.unwrap_or_else(|| model.config.max_position_embeddings.min(4096));
    let pool = common::pool(a.threads);
    let mut gen = Generator::with_workspace(&model, &pool, ctx, a.device.workspace(&model)?);
    let mut sampler = Sampler::new(params);
    let eos = common::eos_ids(&model, &tok);

    let generating = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (generating, interrupted) = (Arc::clone(&generating), Arc::clone(&interrupted));
        ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                interrupted.store(true, Ordering::SeqCst);
            } else {
                eprint!("\n(type /exit or press Ctrl-D to quit)\n> ");
                let _ = std::io::stderr().flush();
            }
        })
        .context("installing the Ctrl-C handler")?;
    }

    let mut history: Vec<serde_json::Value> = Vec::new();
    let system = a.system.clone();
    let reset_history = |h: &mut Vec<serde_json::Value>| {
        h.clear();
        if let Some(s) = &system {
            h.push(json!({"role": "system", "content": s}));
        }
    };
    reset_history(&mut history);
    eprintln!("[tern] chat with {} — /reset, /exit, Ctrl-C stops a reply", model_path.display());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next() else {
            println!();
            break;
        };
        let line = line?;
        let input = line.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                reset_history(&mut history);
                gen.reset();
                println!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        history.push(json!({"role": "user", "content": input}));
        let req = chat_request(history.clone(), None, a.no_think);
        let prompt = match tern_text::chat::encode_chat(&tok, &template, &req) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                history.pop();
                continue;
            }
        };
        let reused = gen.reuse_prefix(&prompt.ids);
        let mut dec = StreamDecoder::new(&tok);
        let mut reply = String::new();
        interrupted.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let out = std::io::stdout();
        let res = gen.generate(&prompt.ids, a.n_predict, &eos, &mut sampler, |id| {
            if let Ok(Some(piece)) = dec.push(id) {
                let mut o = out.lock();
                let _ = o.write_all(piece.as_bytes());
                let _ = o.flush();
                reply.push_str(&piece);
            }
            if interrupted.load(Ordering::SeqCst) {
                StepControl::Stop
            } else {
                StepControl::Continue
            }
        });
        generating.store(false, Ordering::SeqCst);
        match res {
            Ok(r) => {
                if let Ok(tail) = dec.flush() {
                    print!("{tail}");
                    reply.push_str(&tail);
                }
                println!();
                let note = if interrupted.load(Ordering::SeqCst) { " (stopped)" } else { "" };
                println!(
                    "[prompt: {} tokens ({} reused), {:.1} tok/s | reply: {} tokens, {:.1} tok/s]{note}",
                    r.prompt_tokens,
                    reused,
                    r.prefill_tok_s(),
                    r.tokens.len(),
                    r.decode_tok_s()
                );
                history.push(json!({"role": "assistant", "content": reply}));
            }
            Err(e) => {
                eprintln!("\nerror: {e}");
                history.pop();
                gen.reset();
            }
        }
    }
    Ok(())
}
