//! `tern`: the command-line surface. Each subcommand parses its flags, calls library code and
//! prints; no model logic lives here.
#![forbid(unsafe_code)]

mod common;
mod logits;
mod run;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tern", version, about = "Fast inference for ternary (BitNet b1.58) and everyday LLMs")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Raw completion of a prompt (no chat template), streamed to stdout.
    Run(run::Args),
    /// Print the logits of every position of a token sequence as JSON.
    Logits(logits::Args),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TERN_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Logits(a) => logits::main(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
