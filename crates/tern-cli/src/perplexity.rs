//! `tern perplexity -m MODEL -f FILE [--ctx N] [--batch N]` with llama-perplexity's semantics.

use crate::common;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model: a GGUF file, an HF model directory, or a Hub repo (`org/name[@rev]`, `org/name:file.gguf`).
    #[arg(short, long)]
    model: String,
    #[command(flatten)]
    hub: crate::hub_cmds::HubArgs,
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Text file to score.
    #[arg(short, long)]
    file: PathBuf,
    /// Window size (tokens); the second half of each window is scored.
    #[arg(short = 'c', long = "ctx", default_value_t = 512)]
    ctx: usize,
    /// Tokens per forward call.
    #[arg(short = 'b', long = "batch", default_value_t = 512)]
    batch: usize,
    /// Stop after this many windows (0 = all).
    #[arg(long, default_value_t = 0)]
    chunks: usize,
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
}

pub fn main(a: Args) -> Result<()> {
    let model_path = crate::hub_cmds::resolve_model(&a.model, &a.hub)?;
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let model = common::load_model(&model_path)?;
    let tok = tern_text::source::load_tokenizer(&model_path)?;
    let mut tokens = tok.encode(&text, true, false)?;
    if a.chunks > 0 {
        tokens.truncate(a.chunks * a.ctx);
    }
    let bos = if tok.add_bos() { tok.bos_id() } else { None };
    let pool = common::pool(a.threads);
    let mut ws = a.device.workspace(&model)?;
    eprintln!("[tern] {} tokens, {} windows of {}", tokens.len(), tokens.len() / a.ctx, a.ctx);
    let t0 = std::time::Instant::now();
    let st = tern_engine::perplexity::perplexity_in(&model, &pool, &mut ws, &tokens, a.ctx, a.batch, bos, |s| {
        eprint!("[{}]{:.4},", s.windows, s.ppl());
        let _ = std::io::stderr().flush();
    })?;
    eprintln!();
    println!("Final estimate: PPL = {:.4} +/- {:.5}", st.ppl(), st.ppl_err());
    eprintln!("[tern] scored {} tokens in {:.1} s", st.scored, t0.elapsed().as_secs_f64());
    Ok(())
}
