//! tern's Hugging Face Hub client.
//!
//! Models named `org/name`, `org/name@rev`, `org/name:file.gguf` (or with a `--quant`) are pulled into
//! the cache huggingface_hub uses, in its exact layout (`models--org--name/{blobs,refs,snapshots}`), so
//! files downloaded by Python's `huggingface_hub` are reused by tern and the other way round. Downloads
//! are parallel, resumable (`.incomplete` + HTTP `Range`), verified (sha256 of LFS files, git blob sha1
//! of regular files) and retried with bounded backoff; `HF_TOKEN`/token file, `HF_ENDPOINT`,
//! `HF_HUB_CACHE`/`HF_HOME` and `HF_HUB_OFFLINE` behave as in huggingface_hub.
//!
//! The entry point for model-taking commands is [`resolve`]: a local path is returned as-is, a repo
//! spec becomes a snapshot folder (safetensors) or a GGUF file path, pulled on demand.
//!
//! References: huggingface_hub `file_download.py`, `_snapshot_download.py`, `constants.py`,
//! `utils/_http.py`, `utils/_cache_manager.py` (the version pinned in `tools/hub/requirements.txt`).
#![forbid(unsafe_code)]

mod api;
mod cache;
mod download;
mod error;
mod headers;
mod http;
mod options;
mod pull;
mod scan;
mod select;
mod spec;

pub use api::{normalize_etag, parse_repo_info, FileMeta, RemoteFile, RepoInfo};
pub use cache::{repo_folder_name, repo_id_from_folder, RepoCache, CACHEDIR_TAG};
pub use download::{sha256_file, Fetched};
pub use error::{HubError, Result};
pub use headers::{config_model_type, file_type_name, gguf_summary, safetensors_dtypes, GgufSummary};
pub use options::{HubOptions, DEFAULT_ENDPOINT};
pub use pull::{pull, resolve, Pulled};
pub use scan::{human_size, list_cached, remove, scan_repo, CachedFile, CachedRepo, CachedRevision, Removed};
pub use select::{quant_from_name, select, shards_from_index, Selection, Target, SUPPORT_FILES};
pub use spec::{is_commit_hash, validate_repo_id, validate_repo_path, validate_revision, RepoSpec, DEFAULT_REVISION};
