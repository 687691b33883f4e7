//! `tern logits -m DIR --tokens 1,2,3`: `{"logits": [[f32 × vocab] per position]}` on stdout.
//! The ids are used as given (no BOS); no tokenizer files are needed.

use crate::common;
use anyhow::{bail, Result};
use std::io::Write;
use tern_model::{KvCache, Logits};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model: a GGUF file, an HF model directory, or a Hub repo (`org/name[@rev]`, `org/name:file.gguf`).
    #[arg(short, long)]
    model: String,
    #[command(flatten)]
    hub: crate::hub_cmds::HubArgs,
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Comma-separated token ids.
    #[arg(long)]
    tokens: String,
    /// Threads (0 = all cores).
    #[arg(short, long, default_value_t = 0)]
    threads: usize,
}

pub fn main(a: Args) -> Result<()> {
    let model_path = crate::hub_cmds::resolve_model(&a.model, &a.hub)?;
    let ids = common::parse_ids(&a.tokens)?;
    if ids.is_empty() {
        bail!("--tokens: no token ids given");
    }
    let model = common::load_model(&model_path)?;
    let pool = common::pool(a.threads);
    let mut cache = KvCache::new(&model.config, ids.len());
    let mut ws = a.device.workspace(&model)?;
    model.forward(&pool, &ids, &mut cache, &mut ws, Logits::All)?;
    let v = model.vocab();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    out.write_all(b"{\"logits\": [")?;
    for t in 0..ids.len() {
        if t > 0 {
            out.write_all(b", ")?;
        }
        out.write_all(b"[")?;
        for (i, x) in ws.logits[t * v..(t + 1) * v].iter().enumerate() {
            if !x.is_finite() {
                bail!("logit {i} at position {t} is {x}: the model produced a non-finite value");
            }
            if i > 0 {
                out.write_all(b", ")?;
            }
            write!(out, "{x:?}")?;
        }
        out.write_all(b"]")?;
    }
    out.write_all(b"]}\n")?;
    out.flush()?;
    Ok(())
}
