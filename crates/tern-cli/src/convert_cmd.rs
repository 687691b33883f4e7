//! `tern convert SRC OUT.gguf --type T`: a Hugging Face model directory (BitNet packed or latent,
//! Llama / Mistral / Qwen2 / Qwen3) or a GGUF file → a GGUF file for tern and llama.cpp (bitnet.cpp for
//! `i2_s`). The work is `tern_convert::plan` + `Plan::write`; this file parses flags, prints the plan's
//! notes and drives a progress bar over the tensor bytes.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use tern_convert::{ConvertOptions, TargetType};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Source: a Hugging Face model directory (config.json + safetensors), a .gguf file, or
    /// `synthetic:NAME` (the random-weight model of `tern bench --synthetic NAME`).
    src: PathBuf,
    /// Output .gguf file.
    out: PathBuf,
    /// Target type: tq1_0, tq2_0, i2_s (ternary; i2_s is bitnet.cpp's), q8_0, q4_0, q4_k, q6_k, f16, bf16.
    #[arg(long = "type", short = 't', value_name = "TYPE", value_parser = parse_type)]
    ty: TargetType,
    /// Overwrite OUT if it exists.
    #[arg(long)]
    force: bool,
    /// Read the tokenizer files from this directory instead of SRC.
    #[arg(long)]
    vocab_dir: Option<PathBuf>,
    /// tokenizer.ggml.pre to write when llama.cpp's table does not know the BPE pre-tokenizer
    /// (e.g. gpt-2, llama-bpe, qwen2).
    #[arg(long)]
    vocab_pre: Option<String>,
    /// general.name (default: the source directory or file name).
    #[arg(long)]
    name: Option<String>,
    /// Print the plan (every tensor with its source and type) and exit without writing.
    #[arg(long)]
    dry_run: bool,
    /// Print every note and every tensor.
    #[arg(short, long)]
    verbose: bool,
}

fn parse_type(s: &str) -> Result<TargetType, String> {
    TargetType::parse(s).map_err(|e| e.to_string())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

pub fn main(a: Args) -> Result<()> {
    // `synthetic:NAME`: the random-weight model of `tern bench --synthetic NAME` (seed 0).
    if let Some(name) = a.src.to_str().and_then(|s| s.strip_prefix("synthetic:")) {
        if a.out.exists() && !a.force {
            anyhow::bail!("{} already exists (pass --force to overwrite it)", a.out.display());
        }
        return crate::bench::write_synthetic(name, 0, a.ty.ggml(), None, &a.out);
    }
    let opts = ConvertOptions {
        source: a.src.clone(),
        target: a.ty,
        vocab_dir: a.vocab_dir.clone(),
        vocab_pre: a.vocab_pre.clone(),
        name: a.name.clone(),
    };
    if a.out.exists() && !a.force && !a.dry_run {
        anyhow::bail!("{} already exists (pass --force to overwrite it)", a.out.display());
    }
    let plan = tern_convert::plan(&opts)?;
    eprintln!(
        "{} → {} ({}, architecture {}): {} tensors, {:.1} MiB of tensor data",
        a.src.display(),
        a.out.display(),
        a.ty,
        plan.arch,
        plan.tensors.len(),
        mib(plan.data_bytes())
    );
    eprintln!("tokenizer: {}", plan.vocab_summary);
    let (fallbacks, others): (Vec<&String>, Vec<&String>) = plan.notes.iter().partition(|n| n.contains("falling back"));
    for n in &others {
        eprintln!("note: {n}");
    }
    let shown = if a.verbose { fallbacks.len() } else { fallbacks.len().min(6) };
    for n in &fallbacks[..shown] {
        eprintln!("note: {n}");
    }
    if fallbacks.len() > shown {
        eprintln!("note: … {} more type fallbacks (--verbose lists them)", fallbacks.len() - shown);
    }
    if a.verbose || a.dry_run {
        for t in &plan.tensors {
            eprintln!("  {:<32} {:>6} {:?} ← {}", t.name, t.ggml_type.to_string(), t.dims, t.origin);
        }
    }
    if a.dry_run {
        return Ok(());
    }
    let pb = ProgressBar::new(plan.data_bytes());
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = plan.write(&a.out, a.force, &mut |p| {
        pb.set_position(p.bytes_done);
        if p.index < p.total {
            pb.set_message(format!("{}/{} {}", p.index + 1, p.total, p.name));
        }
    })?;
    pb.finish_and_clear();
    eprintln!("wrote {} ({} tensors, {:.1} MiB)", summary.path.display(), summary.tensors, mib(summary.file_bytes));
    Ok(())
}
