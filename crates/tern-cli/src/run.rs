//! `tern run -m DIR -p TEXT`: raw completion (BOS per the tokenizer's settings, no chat template),
//! streamed to stdout; timings on stderr.

use crate::common::{self, SamplingArgs};
use anyhow::{Context, Result};
use std::io::Write;
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
    /// Prompt text.
    #[arg(short, long)]
    prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Context size (KV cache positions). Default: min(max_position_embeddings, 4096).
    #[arg(short = 'c', long = "ctx-size")]
    ctx: Option<usize>,
    /// Threads (0 = all cores).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
    /// Treat special-token text in the prompt (e.g. `<|im_start|>`) as special tokens.
    #[arg(long)]
    parse_special: bool,
    /// Do not print the prompt before the completion.
    #[arg(long)]
    no_echo: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn main(a: Args) -> Result<()> {
    let model_path = crate::hub_cmds::resolve_model(&a.model, &a.hub)?;
    let model = common::load_model(&model_path)?;
    let tok = tern_text::source::load_tokenizer(&model_path)
        .with_context(|| format!("loading the tokenizer from {}", model_path.display()))?;
    let params = a.sampling.resolve(&model)?;
    let prompt = tok.encode(&a.prompt, true, a.parse_special)?;
    if prompt.is_empty() {
        anyhow::bail!("the prompt encodes to no tokens (and the tokenizer adds no BOS): nothing to complete");
    }
    let ctx = a.ctx.unwrap_or_else(|| model.config.max_position_embeddings.min(4096)).max(prompt.len() + 1);
    let pool = common::pool(a.threads);
    let mut gen = Generator::with_workspace(&model, &pool, ctx, a.device.workspace(&model)?);
    let eos = common::eos_ids(&model, &tok);
    let mut sampler = Sampler::new(params);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !a.no_echo {
        write!(out, "{}", a.prompt)?;
        out.flush()?;
    }
    let mut dec = StreamDecoder::new(&tok);
    let mut write_err: Option<anyhow::Error> = None;
    let res = gen.generate(&prompt, a.n_predict, &eos, &mut sampler, |id| match dec.push(id) {
        Ok(Some(piece)) => match out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => StepControl::Continue,
            Err(e) => {
                write_err = Some(e.into());
                StepControl::Stop
            }
        },
        Ok(None) => StepControl::Continue,
        Err(e) => {
            write_err = Some(e.into());
            StepControl::Stop
        }
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    let tail = dec.flush()?;
    writeln!(out, "{tail}")?;
    eprintln!(
        "\n[tern] prompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.1} tok/s | stop: {:?}",
        res.prompt_tokens,
        res.prefill_tok_s(),
        res.tokens.len(),
        res.decode_tok_s(),
        res.finish
    );
    Ok(())
}
