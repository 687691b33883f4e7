//! `tern`: the command-line surface. Each subcommand parses its flags, calls library code and
//! prints; no model logic lives here.
#![forbid(unsafe_code)]

mod bench;
mod chat;
mod common;
mod convert_cmd;
mod hub_cmds;
mod logits;
mod perplexity;
mod run;
mod serve;
mod text_cmds;

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
    /// Convert an HF model directory or a GGUF file to GGUF (tq1_0, tq2_0, i2_s, q8_0, q4_0, q4_k, q6_k, f16, bf16).
    Convert(convert_cmd::Args),
    /// Interactive chat (applies the model's chat template).
    Chat(chat::Args),
    /// Print the logits of every position of a token sequence as JSON.
    Logits(logits::Args),
    /// Perplexity of a text file (llama-perplexity semantics).
    Perplexity(perplexity::Args),
    /// Throughput benchmark, llama-bench style (pp / tg tok/s, bytes per token, GB/s; --synthetic, --bandwidth).
    Bench(bench::Args),
    /// OpenAI-compatible HTTP server with continuous batching (/v1/chat/completions, /v1/completions, ...).
    Serve(serve::Args),
    /// Download a model from the Hugging Face Hub into the local cache.
    Pull(hub_cmds::PullArgs),
    /// List the models in the local Hugging Face cache.
    Ls(hub_cmds::LsArgs),
    /// Delete a cached model (org/name) or one revision of it (org/name@rev).
    Rm(hub_cmds::RmArgs),
    /// Tokenize text; prints a JSON array of ids.
    Tokenize(text_cmds::TokenizeArgs),
    /// Render a conversation through the chat template; prints the prompt text.
    Prompt(text_cmds::PromptArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TERN_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Chat(a) => chat::main(a),
        Cmd::Convert(a) => convert_cmd::main(a),
        Cmd::Logits(a) => logits::main(a),
        Cmd::Perplexity(a) => perplexity::main(a),
        Cmd::Bench(a) => bench::main(a),
        Cmd::Serve(a) => serve::main(a),
        Cmd::Pull(a) => hub_cmds::pull_main(a),
        Cmd::Ls(a) => hub_cmds::ls_main(a),
        Cmd::Rm(a) => hub_cmds::rm_main(a),
        Cmd::Tokenize(a) => text_cmds::tokenize_main(a),
        Cmd::Prompt(a) => text_cmds::prompt_main(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
