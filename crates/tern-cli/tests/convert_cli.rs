//! `tern convert` through the binary: an HF fixture → GGUF for each kind of target, then `tern logits`
//! on the result against transformers' float32 logits of the fixture; refusals exit non-zero with the
//! reason. (The conversion itself is tested in depth by tern-convert's tests; this checks the command.)

use std::path::{Path, PathBuf};
use std::process::Command;
use tern_formats::SafetensorsSet;

fn tern() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tern"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf").join(name)
}

fn logits(model: &Path, ids: &[String]) -> Vec<f32> {
    let out = tern().args(["logits", "-m"]).arg(model).args(["--tokens", &ids.join(","), "-t", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32))
        .collect()
}

#[test]
fn convert_then_logits() {
    let tmp = tempfile::tempdir().unwrap();
    // (fixture, type, worst per-position relative L2 allowed vs transformers): tolerances of
    // tern-convert's roundtrip tests.
    for (name, ty, tol) in [
        ("qwen2_bias", "f16", 4e-3),
        ("llama_rope_linear", "q8_0", 5e-2),
        ("bitnet_autobitlinear_packed", "tq2_0", 5e-2),
    ] {
        let src = fixture(name);
        let out = tmp.path().join(format!("{name}.{ty}.gguf"));
        let o = tern().arg("convert").arg(&src).arg(&out).args(["--type", ty]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name} {ty}: {err}");
        assert!(err.contains("tensors") && err.contains("MiB"), "{name} {ty}: summary missing: {err}");
        // Refuses to overwrite without --force.
        let again = tern().arg("convert").arg(&src).arg(&out).args(["--type", ty]).output().unwrap();
        assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"));

        let set = SafetensorsSet::open_files(&[src.join("reference.safetensors")]).unwrap();
        let ids: Vec<String> = set.get("input_ids").unwrap().to_i64().unwrap().iter().map(|x| x.to_string()).collect();
        let want = set.get("logits").unwrap().to_f32().unwrap();
        let v = want.len() / ids.len();
        let got = logits(&out, &ids);
        assert_eq!(got.len(), want.len());
        let worst = got
            .chunks(v)
            .zip(want.chunks(v))
            .map(|(a, b)| {
                let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
                let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
                (num / den).sqrt()
            })
            .fold(0.0, f64::max);
        eprintln!("{name} {ty}: worst rel L2 {worst:.2e} vs transformers");
        assert!(worst <= tol, "{name} {ty}: {worst} > {tol}");
    }
    // A dense model cannot become ternary: non-zero exit naming the tensor.
    let o = tern()
        .arg("convert")
        .arg(fixture("qwen2_bias"))
        .arg(tmp.path().join("x.gguf"))
        .args(["--type", "tq1_0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("q_proj.weight") && e.contains("ternary"), "{e}");
    assert!(!tmp.path().join("x.gguf").exists());
}
