//! End-to-end pulls against the mock hub (tests/common): cache layout, no-op re-pulls, resume, digest
//! verification, auth/404/5xx errors, offline mode, unreachable hub, upstream updates, `ls` and `rm`.
//! The GGUF and safetensors fixtures and their expected header values come from
//! tools/hub/make_fixtures.py (read back with the `gguf` and `safetensors` Python packages).

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use tern_hub::{list_cached, pull, remove, resolve, HubError, HubOptions, RepoSpec};

const ST_REPO: &str = "org/tiny-st";
const GGUF_REPO: &str = "org/tiny-gguf";

fn config_json() -> Vec<u8> {
    br#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8}"#.to_vec()
}

fn shard1() -> Vec<u8> {
    safetensors_u8("model.layers.0.weight", 150_000, 1)
}

fn shard2() -> Vec<u8> {
    safetensors_u8("model.layers.1.weight", 90_000, 2)
}

fn st_files() -> Vec<MockFile> {
    let index = br#"{"metadata":{"total_size":240000},"weight_map":{
        "model.layers.0.weight":"model-00001-of-00002.safetensors",
        "model.layers.1.weight":"model-00002-of-00002.safetensors"}}"#;
    vec![
        MockFile::regular(".gitattributes", "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"),
        MockFile::regular("README.md", "# tiny\n"),
        MockFile::regular("config.json", config_json()),
        MockFile::regular("generation_config.json", r#"{"temperature":0.6}"#),
        MockFile::regular("tokenizer.json", r#"{"version":"1.0","model":{"type":"BPE"}}"#),
        MockFile::regular("tokenizer_config.json", r#"{"chat_template":"{{ messages }}"}"#),
        MockFile::regular("model.safetensors.index.json", index.to_vec()),
        MockFile::lfs("model-00001-of-00002.safetensors", shard1()),
        MockFile::lfs("model-00002-of-00002.safetensors", shard2()),
        MockFile::lfs("original/consolidated.00.pth", noise(5_000, 9)),
    ]
}

fn gguf_files() -> Vec<MockFile> {
    vec![
        MockFile::regular("README.md", "# gguf\n"),
        MockFile::lfs("tiny-Q4_K_M.gguf", fixture("tiny-Q4_K_M.gguf")),
        MockFile::lfs("tiny-Q8_0.gguf", fixture("tiny-Q8_0.gguf")),
        MockFile::lfs("mmproj-tiny-f16.gguf", noise(1000, 3)),
    ]
}

fn hub() -> MockHub {
    MockHub::start(vec![MockRepo::new(ST_REPO, st_files()), MockRepo::new(GGUF_REPO, gguf_files())])
}

fn spec(s: &str) -> RepoSpec {
    RepoSpec::parse(s).unwrap()
}

fn repo_dir(cache: &Path, id: &str) -> PathBuf {
    cache.join(tern_hub::repo_folder_name(id))
}

fn file_by_path(files: &[MockFile], p: &str) -> MockFile {
    files.iter().find(|f| f.path == p).unwrap().clone()
}

#[test]
fn fresh_pull_lays_out_the_cache_like_huggingface_hub() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let p = pull(&spec(ST_REPO), &opts(&hub, &cache)).unwrap();
    let commit = MockRepo::new(ST_REPO, vec![]).main_commit();
    let rd = repo_dir(&cache, ST_REPO);
    assert_eq!(p.commit, commit);
    assert_eq!(p.path, rd.join("snapshots").join(&commit));
    assert_eq!(p.path, p.snapshot);
    assert!(!p.from_cache);
    assert_eq!(fs::read_to_string(rd.join("refs/main")).unwrap(), commit);
    assert_eq!(fs::read_to_string(cache.join("CACHEDIR.TAG")).unwrap(), tern_hub::CACHEDIR_TAG);

    let wanted = [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ];
    assert_eq!(tree(&p.snapshot), wanted, "README, .gitattributes and original/ are not needed");
    let mut downloaded = p.downloaded.clone();
    downloaded.sort();
    assert_eq!(downloaded, wanted);
    let total: u64 = wanted.iter().map(|w| file_by_path(&st_files(), w).data.len() as u64).sum();
    assert_eq!(p.bytes_downloaded, total);

    let mut blobs = Vec::new();
    for w in wanted {
        let f = file_by_path(&st_files(), w);
        let link = p.snapshot.join(w);
        assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("../../blobs").join(f.etag()), "{w}");
        assert_eq!(fs::read(&link).unwrap(), *f.data, "{w}");
        blobs.push(f.etag());
        if f.lfs {
            assert_eq!(f.etag().len(), 64, "LFS blobs are named by sha256");
        } else {
            assert_eq!(f.etag().len(), 40, "regular blobs are named by git blob sha1");
        }
    }
    blobs.sort();
    assert_eq!(tree(&rd.join("blobs")), blobs, "no .incomplete file left");

    // Requests: one API call, one HEAD per file, and the bytes (LFS from the CDN, without the token).
    let log = hub.log();
    assert_eq!(log.iter().filter(|l| l.path.starts_with("/api/")).count(), 1);
    assert_eq!(log.iter().filter(|l| l.method == "HEAD").count(), wanted.len());
    assert_eq!(log.iter().filter(|l| l.cdn && l.method == "GET").count(), 2);
    assert!(log.iter().all(|l| l.auth.is_none()));

    // A second pull is a no-op: the API call only, no file metadata or data requests.
    hub.clear_log();
    let again = pull(&spec(ST_REPO), &opts(&hub, &cache)).unwrap();
    assert_eq!(again.path, p.path);
    assert!(again.downloaded.is_empty());
    assert_eq!(hub.data_requests().len(), 0, "{:?}", hub.data_requests());
    assert_eq!(hub.log().len(), 1);

    // Pinned to the commit and fully cached: not even the API call.
    hub.clear_log();
    let pinned = pull(&spec(&format!("{ST_REPO}@{commit}")), &opts(&hub, &cache)).unwrap();
    assert_eq!(pinned.path, p.path);
    assert!(pinned.from_cache);
    assert!(hub.log().is_empty());
}

#[test]
fn quant_and_file_pick_one_gguf() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&hub, tmp.path());
    o.quant = Some("q8_0".into());
    let p = pull(&spec(GGUF_REPO), &o).unwrap();
    assert_eq!(p.path, p.snapshot.join("tiny-Q8_0.gguf"));
    assert_eq!(fs::read(&p.path).unwrap(), fixture("tiny-Q8_0.gguf"));
    assert_eq!(tree(&p.snapshot), ["tiny-Q8_0.gguf"]);

    let path = resolve(&format!("{GGUF_REPO}:tiny-Q4_K_M.gguf"), &opts(&hub, tmp.path())).unwrap();
    assert_eq!(path, p.snapshot.join("tiny-Q4_K_M.gguf"));
    assert_eq!(tree(&p.snapshot), ["tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"]);

    // Several GGUFs and no choice, an unknown quant, a missing file: errors that list the choices.
    let e = pull(&spec(GGUF_REPO), &opts(&hub, tmp.path())).unwrap_err();
    assert!(matches!(e, HubError::AmbiguousGguf { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("Q4_K_M: tiny-Q4_K_M.gguf") && msg.contains("Q8_0: tiny-Q8_0.gguf"), "{msg}");
    assert!(!msg.contains("mmproj"), "{msg}");
    o.quant = Some("Q5_K_M".into());
    let msg = pull(&spec(GGUF_REPO), &o).unwrap_err().to_string();
    assert!(msg.contains("no GGUF file of org/tiny-gguf matches quant \"Q5_K_M\"") && msg.contains("Q4_K_M"), "{msg}");
    let e = pull(&spec(&format!("{GGUF_REPO}:tiny-Q2_K.gguf")), &opts(&hub, tmp.path())).unwrap_err();
    assert!(matches!(e, HubError::EntryNotFound { .. }), "{e}");
    assert!(e.to_string().contains("tiny-Q2_K.gguf") && e.to_string().contains("Q8_0: tiny-Q8_0.gguf"), "{e}");
}

#[test]
fn dropped_connection_resumes_with_range() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let s1 = file_by_path(&st_files(), "model-00001-of-00002.safetensors");
    hub.drop_after(&s1.sha256(), 50_000, 2);
    let p = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap();
    assert_eq!(fs::read(p.snapshot.join(&s1.path)).unwrap(), *s1.data);
    let gets: Vec<Logged> =
        hub.log().into_iter().filter(|l| l.cdn && l.method == "GET" && l.path.ends_with(&s1.sha256())).collect();
    let ranges: Vec<Option<String>> = gets.iter().map(|l| l.range.clone()).collect();
    assert_eq!(ranges, [None, Some("bytes=50000-".into()), Some("bytes=100000-".into())]);
    assert_eq!(gets[2].status, 206);
    assert_eq!(
        p.bytes_downloaded,
        st_files().iter().filter(|f| p.files.contains(&f.path)).map(|f| f.data.len() as u64).sum::<u64>()
    );
}

#[test]
fn partial_file_from_an_earlier_run_is_resumed() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let s2 = file_by_path(&st_files(), "model-00002-of-00002.safetensors");
    let blobs = repo_dir(tmp.path(), ST_REPO).join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(format!("{}.incomplete", s2.sha256())), &s2.data[..70_000]).unwrap();
    let p = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap();
    assert_eq!(fs::read(p.snapshot.join(&s2.path)).unwrap(), *s2.data);
    let get = hub.log().into_iter().find(|l| l.cdn && l.path.ends_with(&s2.sha256()) && l.method == "GET").unwrap();
    assert_eq!(get.range.as_deref(), Some("bytes=70000-"));
    assert!(!blobs.join(format!("{}.incomplete", s2.sha256())).exists());

    // A server that ignores Range (200) makes the client restart from byte 0, still correct.
    let tmp = tempfile::tempdir().unwrap();
    let blobs = repo_dir(tmp.path(), ST_REPO).join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(format!("{}.incomplete", s2.sha256())), &s2.data[..70_000]).unwrap();
    hub.ignore_range(true);
    let p = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap();
    assert_eq!(fs::read(p.snapshot.join(&s2.path)).unwrap(), *s2.data);
}

#[test]
fn wrong_sha256_is_rejected_and_not_cached() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let s1 = file_by_path(&st_files(), "model-00001-of-00002.safetensors");
    hub.corrupt(&s1.sha256(), true);
    let mut o = opts(&hub, tmp.path());
    o.threads = 1;
    let e = pull(&spec(ST_REPO), &o).unwrap_err();
    let HubError::HashMismatch { algo, expected, found, .. } = &e else { panic!("expected HashMismatch, got {e}") };
    assert_eq!((*algo, expected.as_str()), ("sha256", s1.sha256().as_str()));
    assert_ne!(found, expected);
    assert!(e.to_string().contains("model-00001-of-00002.safetensors"), "{e}");
    let rd = repo_dir(tmp.path(), ST_REPO);
    assert!(!rd.join("blobs").join(s1.sha256()).exists());
    assert!(!rd.join("blobs").join(format!("{}.incomplete", s1.sha256())).exists());
    let commit = MockRepo::new(ST_REPO, vec![]).main_commit();
    assert!(fs::symlink_metadata(rd.join("snapshots").join(&commit).join(&s1.path)).is_err());

    // A corrupt partial file from an earlier run is caught too (the prefix is hashed on resume).
    hub.corrupt(&s1.sha256(), false);
    let mut bad = s1.data[..60_000].to_vec();
    bad[10] ^= 1;
    fs::write(rd.join("blobs").join(format!("{}.incomplete", s1.sha256())), bad).unwrap();
    assert!(matches!(pull(&spec(ST_REPO), &o), Err(HubError::HashMismatch { .. })));
    assert!(!rd.join("blobs").join(format!("{}.incomplete", s1.sha256())).exists());

    // Once the data is right, the pull succeeds.
    let p = pull(&spec(ST_REPO), &o).unwrap();
    assert_eq!(fs::read(p.snapshot.join(&s1.path)).unwrap(), *s1.data);
}

#[test]
fn auth_errors_say_how_to_set_a_token() {
    let mut private = MockRepo::new("org/private", vec![MockFile::lfs("m-Q8_0.gguf", fixture("tiny-Q8_0.gguf"))]);
    private.token = Some("hf_secret".into());
    let mut gated = MockRepo::new("org/gated", vec![MockFile::lfs("m.gguf", noise(100, 1))]);
    gated.gated = true;
    let hub = MockHub::start(vec![private, gated]);
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&hub, tmp.path());
    o.token_path = PathBuf::from("/home/u/.cache/huggingface/token");

    let e = pull(&spec("org/private"), &o).unwrap_err();
    assert!(matches!(e, HubError::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    for want in ["401", "org/private", "no token is set", "export HF_TOKEN=", "/home/u/.cache/huggingface/token"] {
        assert!(msg.contains(want), "{want:?} missing in: {msg}");
    }
    o.token = Some("hf_wrong".into());
    let msg = pull(&spec("org/private"), &o).unwrap_err().to_string();
    assert!(msg.contains("a token was sent"), "{msg}");

    let msg = pull(&spec("org/gated"), &o).unwrap_err().to_string();
    for want in ["403", "gated repo org/gated", &format!("{}/org/gated", hub.endpoint()), "HF_TOKEN"] {
        assert!(msg.contains(want), "{want:?} missing in: {msg}");
    }

    // The right token works; it goes to the Hub, never to the CDN.
    hub.clear_log();
    o.token = Some("hf_secret".into());
    let p = pull(&spec("org/private"), &o).unwrap();
    assert_eq!(fs::read(&p.path).unwrap(), fixture("tiny-Q8_0.gguf"));
    let log = hub.log();
    assert!(log.iter().filter(|l| !l.cdn).all(|l| l.auth.as_deref() == Some("Bearer hf_secret")));
    assert!(log.iter().any(|l| l.cdn));
    assert!(log.iter().filter(|l| l.cdn).all(|l| l.auth.is_none()), "token leaked to the CDN: {log:?}");
}

#[test]
fn not_found_errors() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let e = pull(&spec("org/nope"), &o).unwrap_err();
    assert!(matches!(e, HubError::RepoNotFound { .. }), "{e}");
    assert!(e.to_string().contains("404 repository org/nope not found"), "{e}");
    let e = pull(&spec(&format!("{ST_REPO}@v9")), &o).unwrap_err();
    assert!(matches!(e, HubError::RevisionNotFound { .. }), "{e}");
    assert!(e.to_string().contains("revision \"v9\" not found in repo org/tiny-st"), "{e}");
    let e = resolve("org/tiny-st:nope.safetensors", &o).unwrap_err();
    assert!(e.to_string().contains("file \"nope.safetensors\" not found in repo org/tiny-st"), "{e}");
    assert!(!repo_dir(tmp.path(), "org/nope").exists());
}

#[test]
fn server_errors_are_retried_with_bounded_backoff() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    hub.fail(Some(false), "/api/", 500, 2);
    hub.fail(Some(true), "/lfs/", 503, 1);
    hub.fail(Some(false), "/org/tiny-st/resolve/", 502, 1);
    let p = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap();
    assert_eq!(p.files.len(), 7);
    let log = hub.log();
    let api: Vec<u16> = log.iter().filter(|l| l.path.starts_with("/api/")).map(|l| l.status).collect();
    assert_eq!(api, [500, 500, 200]);
    assert_eq!(log.iter().filter(|l| l.status == 503).count(), 1);
    assert_eq!(log.iter().filter(|l| l.status == 502).count(), 1);

    // A hub that keeps failing: 1 + max_retries attempts, then an error naming the status.
    let tmp = tempfile::tempdir().unwrap();
    hub.clear_log();
    hub.fail(Some(false), "/api/", 500, 1000);
    let t0 = std::time::Instant::now();
    let e = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap_err();
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    assert!(matches!(e, HubError::Http { status: 500, .. }), "{e}");
    assert!(e.to_string().contains("HTTP 500 after 4 attempts"), "{e}");
    assert_eq!(hub.log().len(), 4);
}

#[test]
fn offline_mode_uses_only_the_cache() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&hub, tmp.path());
    o.offline = true;
    let e = pull(&spec(ST_REPO), &o).unwrap_err();
    assert!(matches!(e, HubError::Offline { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("HF_HUB_OFFLINE=1") && msg.contains("Nothing of org/tiny-st is cached"), "{msg}");
    assert!(hub.log().is_empty());

    let online = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap();
    let mut q = opts(&hub, tmp.path());
    q.quant = Some("Q8_0".into());
    let gguf = pull(&spec(GGUF_REPO), &q).unwrap();
    hub.clear_log();
    let p = pull(&spec(ST_REPO), &o).unwrap();
    assert_eq!((p.path.clone(), p.from_cache), (online.path.clone(), true));
    assert_eq!(p.files.len(), 7);
    let mut oq = o.clone();
    oq.quant = Some("q8_0".into());
    assert_eq!(resolve(GGUF_REPO, &oq).unwrap(), gguf.path);
    assert!(hub.log().is_empty(), "offline mode made requests: {:?}", hub.log());

    // Not cached: a quant never pulled, a revision never pulled.
    oq.quant = Some("Q4_K_M".into());
    let msg = pull(&spec(GGUF_REPO), &oq).unwrap_err().to_string();
    assert!(msg.contains("Q4_K_M") && msg.contains("tiny-Q8_0.gguf"), "{msg}");
    let msg = pull(&spec(&format!("{ST_REPO}@v2")), &o).unwrap_err().to_string();
    assert!(msg.contains("revision \"v2\" of org/tiny-st is not cached") && msg.contains("(main)"), "{msg}");

    // An interrupted pull leaves an incomplete snapshot: offline mode says what is missing.
    let shard = online.snapshot.join("model-00002-of-00002.safetensors");
    fs::remove_file(&shard).unwrap();
    let msg = pull(&spec(ST_REPO), &o).unwrap_err().to_string();
    assert!(msg.contains("lacks model-00002-of-00002.safetensors"), "{msg}");
    assert!(hub.log().is_empty());
}

#[test]
fn unreachable_hub_falls_back_to_the_cache_or_says_what_is_cached() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let mut q = opts(&hub, tmp.path());
    q.quant = Some("Q8_0".into());
    let gguf = pull(&spec(GGUF_REPO), &q).unwrap();

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut o = HubOptions { endpoint: dead_endpoint.clone(), ..q.clone() };
    o.max_retries = 5;
    o.retry_base_delay = std::time::Duration::from_millis(300);
    let t0 = std::time::Instant::now();
    let p = pull(&spec(GGUF_REPO), &o).unwrap();
    // A hub never reached is retried once, not max_retries times: the cache fallback is quick.
    assert!(t0.elapsed() < std::time::Duration::from_millis(1500), "{:?}", t0.elapsed());
    assert_eq!((p.path, p.from_cache), (gguf.path, true));

    o.quant = Some("Q4_K_M".into());
    let e = pull(&spec(GGUF_REPO), &o).unwrap_err();
    assert!(matches!(e, HubError::Network { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("cannot reach {dead_endpoint}/api/models/org/tiny-gguf")), "{msg}");
    assert!(msg.contains("(after 2 attempts)"), "{msg}");
    assert!(msg.contains("Cached for org/tiny-gguf") && msg.contains("(main): [tiny-Q8_0.gguf]"), "{msg}");
    let msg = pull(&spec(ST_REPO), &o).unwrap_err().to_string();
    assert!(msg.contains("Nothing of org/tiny-st is cached"), "{msg}");
}

#[test]
fn upstream_update_fetches_only_changed_files_and_rm_revision_keeps_shared_blobs() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let old = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap();
    let mut files = st_files();
    files.iter_mut().find(|f| f.path == "config.json").unwrap().data =
        std::sync::Arc::new(br#"{"model_type":"llama","hidden_size":16}"#.to_vec());
    let mut new_commit = String::new();
    hub.update_repo(|r| new_commit = r.push("main", "2", files), ST_REPO);
    hub.clear_log();
    let new = pull(&spec(ST_REPO), &opts(&hub, tmp.path())).unwrap();
    assert_eq!(new.commit, new_commit);
    assert_eq!(new.downloaded, ["config.json"]);
    let data: Vec<Logged> = hub.data_requests();
    assert_eq!(data.len(), 2, "HEAD + GET of config.json only: {data:?}");
    let rd = repo_dir(tmp.path(), ST_REPO);
    assert_eq!(fs::read_to_string(rd.join("refs/main")).unwrap(), new_commit);

    let repos = list_cached(tmp.path()).unwrap();
    assert_eq!(repos[0].revisions.len(), 2);
    let blob_count = tree(&rd.join("blobs")).len();
    assert_eq!(blob_count, 8);

    // Removing the old revision deletes its snapshot and only the blob no other snapshot uses.
    let removed = remove(&format!("{ST_REPO}@{}", old.commit), tmp.path()).unwrap();
    assert_eq!(removed.bytes_freed, config_json().len() as u64);
    assert!(!old.snapshot.exists() && new.snapshot.exists());
    assert_eq!(tree(&rd.join("blobs")).len(), 7);
    let p = pull(&spec(ST_REPO), &HubOptions { offline: true, ..opts(&hub, tmp.path()) }).unwrap();
    assert_eq!(p.path, new.path);
}

#[test]
fn ls_reports_format_quant_and_architecture_from_headers() {
    let mut st = MockRepo::new(
        "org/st-fixture",
        vec![
            MockFile::regular("config.json", config_json()),
            MockFile::lfs("model.safetensors", fixture("model.safetensors")),
        ],
    );
    st.refs.insert("v1".into(), st.main_commit());
    let hub = MockHub::start(vec![st, MockRepo::new(GGUF_REPO, gguf_files())]);
    let tmp = tempfile::tempdir().unwrap();
    pull(&spec("org/st-fixture"), &opts(&hub, tmp.path())).unwrap();
    pull(&spec("org/st-fixture@v1"), &opts(&hub, tmp.path())).unwrap();
    for q in ["Q4_K_M", "Q8_0"] {
        pull(&spec(GGUF_REPO), &HubOptions { quant: Some(q.into()), ..opts(&hub, tmp.path()) }).unwrap();
    }
    let expected: serde_json::Value =
        serde_json::from_slice(&fs::read(fixtures_dir().join("expected.json")).unwrap()).unwrap();
    let repos = list_cached(tmp.path()).unwrap();
    assert_eq!(repos.iter().map(|r| r.repo_id.as_str()).collect::<Vec<_>>(), ["org/st-fixture", GGUF_REPO]);

    let g = &repos[1].revisions[0];
    assert_eq!(g.formats, ["gguf"]);
    let want_q: Vec<String> = ["tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"]
        .iter()
        .map(|f| expected[f]["file_type_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(g.quants, want_q);
    assert_eq!(g.architecture.as_deref(), expected["tiny-Q4_K_M.gguf"]["architecture"].as_str());
    assert!(g.warnings.is_empty(), "{:?}", g.warnings);
    let gsize: u64 = ["tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"].iter().map(|f| expected[f]["size"].as_u64().unwrap()).sum();
    assert_eq!((g.size_on_disk, repos[1].size_on_disk), (gsize, gsize));

    let s = &repos[0].revisions[0];
    assert_eq!(s.refs, ["main", "v1"]);
    assert_eq!(s.formats, ["safetensors"]);
    let dtypes: Vec<String> = expected["model.safetensors"]["dtypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().into())
        .collect();
    assert_eq!(s.quants, dtypes);
    assert_eq!(s.architecture.as_deref(), Some("llama"));
    assert_eq!(s.size_on_disk, expected["model.safetensors"]["size"].as_u64().unwrap() + config_json().len() as u64);

    // Headers agree with the gguf package for each fixture file, directly too.
    for f in ["tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"] {
        let sum = tern_hub::gguf_summary(&fixtures_dir().join(f)).unwrap();
        assert_eq!(sum.architecture.as_deref(), expected[f]["architecture"].as_str());
        assert_eq!(sum.file_type.map(u64::from), expected[f]["file_type"].as_u64());
        let sha = tern_hub::sha256_file(&fixtures_dir().join(f)).unwrap();
        assert_eq!(Some(sha.as_str()), expected[f]["sha256"].as_str());
    }
}

#[test]
fn rm_removes_the_repo_and_refuses_paths_outside_the_cache() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    pull(&spec(ST_REPO), &opts(&hub, &cache)).unwrap();
    let rd = repo_dir(&cache, ST_REPO);
    let removed = remove(ST_REPO, &cache).unwrap();
    assert!(!rd.exists());
    assert!(!cache.join(".locks").join(tern_hub::repo_folder_name(ST_REPO)).exists());
    let total: u64 = st_files()
        .iter()
        .filter(|f| !f.path.starts_with("original/") && f.path != "README.md" && f.path != ".gitattributes")
        .map(|f| f.data.len() as u64)
        .sum();
    assert_eq!(removed.bytes_freed, total);
    assert!(matches!(remove(ST_REPO, &cache), Err(HubError::NotCached { .. })));

    // A repo folder that is a symlink to somewhere else is refused, and the target is untouched.
    let outside = tmp.path().join("precious");
    fs::create_dir_all(outside.join("snapshots")).unwrap();
    fs::write(outside.join("keep.txt"), "x").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, cache.join("models--org--evil")).unwrap();
    #[cfg(unix)]
    {
        let e = remove("org/evil", &cache).unwrap_err();
        assert!(matches!(e, HubError::OutsideCache { .. }), "{e}");
        assert!(outside.join("keep.txt").exists());
    }
    for bad in ["../hub", "org/../../x", "org/name:file.gguf", "/etc"] {
        assert!(remove(bad, &cache).is_err(), "{bad}");
    }
}

#[test]
fn resolve_passes_local_paths_through_and_rejects_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("model.gguf");
    fs::write(&local, b"GGUF").unwrap();
    let o = HubOptions::new("http://127.0.0.1:9", tmp.path().join("hub"));
    assert_eq!(resolve(local.to_str().unwrap(), &o).unwrap(), local);
    let e = resolve("./no/such/dir/model", &o).unwrap_err().to_string();
    assert!(e.contains("not an existing local path"), "{e}");
}

#[test]
fn concurrent_pulls_of_the_same_repo_share_the_cache_safely() {
    let hub = hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| pull(&spec(ST_REPO), &o).unwrap().path)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    for f in st_files().iter().filter(|f| f.lfs && !f.path.starts_with("original/")) {
        assert_eq!(fs::read(paths[0].join(&f.path)).unwrap(), *f.data);
    }
    assert!(tree(&repo_dir(tmp.path(), ST_REPO).join("blobs")).iter().all(|b| !b.ends_with(".incomplete")));
}
