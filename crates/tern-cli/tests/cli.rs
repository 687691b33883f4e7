//! End-to-end tests of the `tern` binary: HF fixtures (no downloads) and the real SmolLM2 GGUF
//! fetched by `tools/testdata/fetch.sh smollm2`.

use std::path::{Path, PathBuf};
use std::process::Command;
use tern_formats::SafetensorsSet;

fn tern() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tern"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/hf").join(name)
}

pub fn smollm2() -> PathBuf {
    let root = std::env::var_os("TERN_TESTDATA").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache/testdata"));
    let p = root.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run tools/testdata/fetch.sh smollm2", p.display());
    p
}

fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("failed to start tern");
    let (so, se) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "tern failed ({}):\nstdout: {so}\nstderr: {se}", out.status);
    (so, se)
}

#[test]
fn logits_json_matches_transformers() {
    let dir = fixture("bitnet_autobitlinear_packed");
    let set = SafetensorsSet::open_files(&[dir.join("reference.safetensors")]).unwrap();
    let ids: Vec<String> = set.get("input_ids").unwrap().to_i64().unwrap().iter().map(|x| x.to_string()).collect();
    let want = set.get("logits").unwrap().to_f32().unwrap();
    let (so, _) = run_ok(tern().args(["logits", "-m"]).arg(&dir).args(["--tokens", &ids.join(","), "-t", "2"]));
    let v: serde_json::Value = serde_json::from_str(&so).unwrap();
    let rows = v["logits"].as_array().unwrap();
    assert_eq!(rows.len(), ids.len());
    let got: Vec<f32> =
        rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32)).collect();
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(&want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    assert!((num / den).sqrt() < 1e-3);
}

#[test]
fn logits_rejects_bad_ids() {
    let out = tern().args(["logits", "-m"]).arg(fixture("qwen2_bias")).args(["--tokens", "1,99999"]).output().unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("token id 99999") && e.contains("outside the vocabulary"), "{e}");
    let out = tern().args(["logits", "-m", "/nonexistent/model", "--tokens", "1"]).output().unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("/nonexistent/model") && e.contains("not an existing local path"), "{e}");
}

#[test]
fn device_flag() {
    let m = fixture("qwen2_bias");
    let (so, _) = run_ok(tern().args(["logits", "-m"]).arg(&m).args(["--tokens", "1,2", "--device", "cpu"]));
    assert!(so.starts_with("{\"logits\""));
    let out = tern().args(["logits", "-m"]).arg(&m).args(["--tokens", "1", "--device", "tpu"]).output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("--device tpu: expected auto, cpu, cuda or cuda:N"), "{e}");
    let out = tern().args(["logits", "-m"]).arg(&m).args(["--tokens", "1", "--device", "cuda:x"]).output().unwrap();
    assert!(!out.status.success());
    // Without a GPU (CI), an explicit CUDA device is a clear error and `auto` falls back with a notice.
    if std::env::var_os("TERN_TEST_HAS_GPU").is_none() {
        let out = tern().args(["logits", "-m"]).arg(&m).args(["--tokens", "1", "--device", "cuda"]).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && e.contains("--device cuda:0"), "{e}");
        let out = tern().args(["logits", "-m"]).arg(&m).args(["--tokens", "1"]).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && e.contains("[tern] device: cpu ("), "{e}");
    }
}

#[test]
fn run_streams_a_completion_on_a_fixture() {
    let (so, se) = run_ok(tern().args(["run", "-m"]).arg(fixture("bitnet_autobitlinear_packed")).args([
        "-p",
        "Hello world",
        "-n",
        "6",
        "--temp",
        "0",
        "-t",
        "2",
    ]));
    assert!(so.starts_with("Hello world"), "{so}");
    assert!(se.contains("generated:") && se.contains("tok/s"), "{se}");
}

#[test]
fn smollm2_gguf_completes_paris() {
    let (so, se) = run_ok(tern().args(["run", "-m"]).arg(smollm2()).args([
        "-p",
        "The capital of France is",
        "-n",
        "8",
        "--temp",
        "0",
        "-t",
        "2",
    ]));
    assert!(so.contains("Paris"), "{so}\n{se}");
}

#[test]
fn smollm2_tokenize_and_prompt() {
    let m = smollm2();
    // user text never forges a special token unless asked
    let (plain, _) = run_ok(tern().args(["tokenize", "-m"]).arg(&m).args(["--text", "<|im_start|>"]));
    let (special, _) =
        run_ok(tern().args(["tokenize", "-m"]).arg(&m).args(["--text", "<|im_start|>", "--parse-special"]));
    assert_eq!(special.trim(), "[1]");
    assert_ne!(plain.trim(), "[1]");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (prompt, _) =
        run_ok(tern().args(["prompt", "-m"]).arg(&m).arg("--messages").arg(data.join("smollm2_messages.json")));
    let golden = std::fs::read_to_string(data.join("smollm2_prompt.golden.txt")).unwrap();
    assert_eq!(prompt, golden);
}

#[test]
fn perplexity_runs_on_smollm2() {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("t.txt");
    std::fs::write(&f, text).unwrap();
    let (so, _) = run_ok(
        tern()
            .args(["perplexity", "-m"])
            .arg(smollm2())
            .arg("-f")
            .arg(&f)
            .args(["--ctx", "64", "--chunks", "3", "-t", "2"]),
    );
    let ppl: f64 = so.split("PPL = ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    // A repeated sentence is very predictable for a real model.
    assert!(ppl > 1.0 && ppl < 3.0, "{so}");
}

fn gemma3() -> PathBuf {
    let root = std::env::var_os("TERN_TESTDATA").map(PathBuf::from).unwrap_or_else(|| repo().join(".cache/testdata"));
    let p = root.join("gemma3/gemma-3-270m-Q4_K_M.gguf");
    assert!(p.is_file(), "{} is missing: run tools/testdata/fetch.sh gemma3", p.display());
    p
}

/// tern's perplexity must match llama.cpp's on the same file, model and window (goldens from
/// tools/llamacpp/ppl_goldens.sh). Both quantize activations to 8 bits for the block dot products, with
/// different scale precision and rounding, so allow 2%. A broken norm, RoPE, sliding window or quant
/// kernel moves it far more.
fn check_ppl_vs_llamacpp(model: PathBuf, key: &str) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("llamacpp_ppl.json")).unwrap()).unwrap();
    let want = golden[key]["ppl"].as_f64().unwrap();
    let (so, _) = run_ok(
        tern()
            .args(["perplexity", "-m"])
            .arg(model)
            .arg("-f")
            .arg(data.join("english.txt"))
            .args(["--ctx", "128", "-t", "2"]),
    );
    let ppl: f64 = so.split("PPL = ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((ppl / want - 1.0).abs() < 0.02, "tern PPL {ppl} vs llama.cpp {want}\n{so}");
}

#[test]
fn gemma3_gguf_perplexity_matches_llamacpp() {
    check_ppl_vs_llamacpp(gemma3(), "gemma3/gemma-3-270m-Q4_K_M.gguf");
}

#[test]
fn smollm2_gguf_perplexity_matches_llamacpp() {
    check_ppl_vs_llamacpp(smollm2(), "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
}
