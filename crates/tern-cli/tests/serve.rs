//! `tern serve` end to end: runs the Python suite in `tools/server/` (official `openai` client, raw
//! HTTP and sockets) against this build of the `tern` binary on the real SmolLM2 GGUF
//! (`tools/testdata/fetch.sh smollm2`). Needs `python3 -m pip install -r tools/server/requirements.txt`.

use std::path::Path;
use std::process::Command;

#[test]
fn openai_client_suite_against_tern_serve() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let probe = Command::new("python3").args(["-c", "import openai, requests, pytest"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 lacks the test packages: run `python3 -m pip install -r tools/server/requirements.txt`\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 is required for the tern serve tests: {e}"),
    }
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tools/server"])
        .current_dir(&repo)
        .env("TERN_BIN", env!("CARGO_BIN_EXE_tern"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("running pytest");
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tools/server tests failed:\n{so}\n{se}");
    eprintln!("{}", so.lines().last().unwrap_or_default());
}
