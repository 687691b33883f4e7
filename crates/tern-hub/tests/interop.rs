//! Interop with Python's huggingface_hub (the version pinned in tools/hub/requirements.txt), both
//! directions, through the mock hub: a cache filled by `snapshot_download` is used by tern offline
//! without any request (and online with no data request), and what tern pulls is listed by
//! `scan_cache_dir()` — same repos, commits, refs, files, sizes, no warnings — and opened by
//! `hf_hub_download(local_files_only=True)`. The Python side is tools/hub/interop.py.
//!
//! Needs python3 with huggingface_hub: `pip install -r tools/hub/requirements.txt` (CI does that).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tern_hub::{list_cached, pull, HubOptions, RepoSpec};

const SETUP: &str = "python3 with huggingface_hub is required for this test: pip install -r tools/hub/requirements.txt";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/hub/interop.py")
}

/// Runs tools/hub/interop.py against the mock and parses its JSON (60 s limit).
fn python(hub: &MockHub, cache: &Path, args: &[&str]) -> serde_json::Value {
    let home = cache.parent().unwrap().join("hf_home");
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .args(args)
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", &home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_DISABLE_XET", "1")
        .env("HF_HUB_ETAG_TIMEOUT", "5")
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "5")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("TRANSFORMERS_OFFLINE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run python3 ({e}). {SETUP}"));
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("interop.py {args:?} timed out after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if status.code() == Some(3) {
        panic!("{stderr}\n{SETUP}");
    }
    assert!(status.success(), "interop.py {args:?} failed ({status}):\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("interop.py {args:?}: bad JSON ({e}): {stderr}"))
}

fn repos() -> Vec<MockRepo> {
    let index = br#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
    let st = MockRepo::new(
        "org/st",
        vec![
            MockFile::regular("README.md", "# st\n"),
            MockFile::regular("config.json", r#"{"model_type":"qwen2"}"#),
            MockFile::regular("tokenizer.json", r#"{"model":{}}"#),
            MockFile::regular("model.safetensors.index.json", index.to_vec()),
            MockFile::lfs("model-00001-of-00002.safetensors", safetensors_u8("a", 120_000, 5)),
            MockFile::lfs("model-00002-of-00002.safetensors", safetensors_u8("b", 80_000, 6)),
            MockFile::lfs("original/params.bin", noise(3_000, 7)),
        ],
    );
    let gguf = MockRepo::new(
        "org/gguf",
        vec![
            MockFile::regular("README.md", "# gguf\n"),
            MockFile::lfs("tiny-Q4_K_M.gguf", fixture("tiny-Q4_K_M.gguf")),
            MockFile::lfs("tiny-Q8_0.gguf", fixture("tiny-Q8_0.gguf")),
        ],
    );
    vec![st, gguf]
}

fn canon(p: impl AsRef<Path>) -> PathBuf {
    p.as_ref().canonicalize().unwrap()
}

#[test]
fn python_cache_is_used_by_tern_without_downloading() {
    let hub = MockHub::start(repos());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let v = python(&hub, &cache, &["check"]);
    assert!(v["version"].is_string());

    let st = python(&hub, &cache, &["snapshot", "org/st"]);
    let gg = python(&hub, &cache, &["snapshot", "org/gguf", "*Q8_0.gguf"]);
    assert!(!hub.data_requests().is_empty(), "python downloaded through the mock");

    // Offline: no request at all, the same snapshot folder / GGUF file Python returned.
    hub.clear_log();
    let mut o = HubOptions::new(hub.endpoint(), &cache);
    o.progress = false;
    o.offline = true;
    let p = pull(&RepoSpec::parse("org/st").unwrap(), &o).unwrap();
    assert_eq!(canon(&p.path), canon(st["path"].as_str().unwrap()));
    assert_eq!(p.files.len(), 5, "{:?}", p.files);
    let g = tern_hub::resolve("org/gguf", &HubOptions { quant: Some("Q8_0".into()), ..o.clone() }).unwrap();
    assert_eq!(canon(&g), canon(Path::new(gg["path"].as_str().unwrap()).join("tiny-Q8_0.gguf")));
    assert!(hub.log().is_empty(), "{:?}", hub.log());

    // Online: the API call only; every file is already in Python's snapshot.
    o.offline = false;
    let p2 = pull(&RepoSpec::parse("org/st").unwrap(), &o).unwrap();
    assert_eq!(p2.path, p.path);
    assert!(p2.downloaded.is_empty());
    assert_eq!(hub.data_requests().len(), 0, "{:?}", hub.data_requests());

    // tern ls sees the same sizes as Python's scan.
    let scan = python(&hub, &cache, &["scan"]);
    let ours = list_cached(&cache).unwrap();
    for (r, py) in ours.iter().zip(scan["repos"].as_array().unwrap()) {
        assert_eq!(r.repo_id, py["repo_id"].as_str().unwrap());
        assert_eq!(r.size_on_disk, py["size_on_disk"].as_u64().unwrap(), "{}", r.repo_id);
    }
}

#[test]
fn tern_cache_is_listed_and_opened_by_huggingface_hub() {
    let hub = MockHub::start(repos());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let mut o = HubOptions::new(hub.endpoint(), &cache);
    o.progress = false;
    let st_old = pull(&RepoSpec::parse("org/st").unwrap(), &o).unwrap();
    // A second revision of org/st (only the config changes) and a tag on it.
    let mut files: Vec<MockFile> = repos()[0].commits.values().next().unwrap().clone();
    files.iter_mut().find(|f| f.path == "config.json").unwrap().data =
        std::sync::Arc::new(br#"{"model_type":"qwen2","v":2}"#.to_vec());
    let mut new_commit = String::new();
    hub.update_repo(
        |r| {
            new_commit = r.push("main", "2", files);
            r.refs.insert("v2.0".into(), new_commit.clone());
        },
        "org/st",
    );
    let st_new = pull(&RepoSpec::parse("org/st@v2.0").unwrap(), &o).unwrap();
    let st_main = pull(&RepoSpec::parse("org/st").unwrap(), &o).unwrap();
    assert_eq!(st_new.commit, st_main.commit);
    let gg = pull(&RepoSpec::parse("org/gguf:tiny-Q4_K_M.gguf").unwrap(), &o).unwrap();

    let scan = python(&hub, &cache, &["scan"]);
    assert_eq!(scan["warnings"].as_array().unwrap().len(), 0, "{scan}");
    let ours = list_cached(&cache).unwrap();
    let py_repos = scan["repos"].as_array().unwrap();
    assert_eq!(py_repos.len(), ours.len());
    let mut total = 0;
    for (r, py) in ours.iter().zip(py_repos) {
        assert_eq!(py["repo_id"].as_str().unwrap(), r.repo_id);
        assert_eq!(py["repo_type"].as_str().unwrap(), "model");
        assert_eq!(py["size_on_disk"].as_u64().unwrap(), r.size_on_disk, "{}", r.repo_id);
        total += r.size_on_disk;
        let py_revs = py["revisions"].as_array().unwrap();
        assert_eq!(py_revs.len(), r.revisions.len());
        for (rev, pr) in r.revisions.iter().zip(py_revs) {
            assert_eq!(pr["commit_hash"].as_str().unwrap(), rev.commit);
            let refs: Vec<&str> = pr["refs"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
            assert_eq!(refs, rev.refs.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(pr["size_on_disk"].as_u64().unwrap(), rev.size_on_disk);
            assert_eq!(canon(pr["snapshot_path"].as_str().unwrap()), canon(&rev.snapshot));
            let py_files = pr["files"].as_array().unwrap();
            assert_eq!(py_files.len(), rev.files.len());
            for (f, pf) in rev.files.iter().zip(py_files) {
                assert_eq!(pf["file_name"].as_str().unwrap(), f.path);
                assert_eq!(pf["size_on_disk"].as_u64().unwrap(), f.size);
                // Python sees the bytes the mock served, under the blob name huggingface_hub would use.
                let mf = hub_file(&r.repo_id, &rev.commit, &f.path);
                assert_eq!(pf["sha256"].as_str().unwrap(), mf.sha256());
                assert_eq!(pf["blob_name"].as_str().unwrap(), mf.etag());
            }
        }
    }
    assert_eq!(scan["size_on_disk"].as_u64().unwrap(), total);
    let refs: Vec<&str> = py_repos[1]["refs"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert_eq!(refs, ["main", "v2.0"]);
    assert_ne!(st_old.commit, st_main.commit);

    // huggingface_hub opens tern's files offline, at the same paths.
    hub.clear_log();
    let off = python(&hub, &cache, &["offline", "org/st", "config.json", "model-00002-of-00002.safetensors"]);
    assert_eq!(canon(off["snapshot"].as_str().unwrap()), canon(&st_main.snapshot));
    assert_eq!(canon(off["files"]["config.json"].as_str().unwrap()), canon(st_main.snapshot.join("config.json")));
    let off = python(&hub, &cache, &["offline", "org/gguf", "tiny-Q4_K_M.gguf"]);
    assert_eq!(canon(off["files"]["tiny-Q4_K_M.gguf"].as_str().unwrap()), canon(&gg.path));
    assert!(hub.log().is_empty(), "python offline made requests: {:?}", hub.log());
}

/// The mock's file of `repo` at `commit`.
fn hub_file(repo: &str, commit: &str, path: &str) -> MockFile {
    let mut all = repos();
    // The second org/st commit differs only by config.json.
    let base = all.iter_mut().find(|r| r.id == repo).unwrap();
    let files = base.commits.values().next().unwrap().clone();
    let f = files.into_iter().find(|f| f.path == path).unwrap();
    if repo == "org/st" && path == "config.json" && commit != base.main_commit() {
        return MockFile::regular("config.json", br#"{"model_type":"qwen2","v":2}"#.to_vec());
    }
    f
}
