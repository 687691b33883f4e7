#!/usr/bin/env python3
"""huggingface_hub side of the tern-hub interop test (crates/tern-hub/tests/interop.rs).

The Rust test starts a mock hub and runs this script with HF_ENDPOINT and HF_HUB_CACHE set; every
command prints one JSON object on stdout.

  interop.py check                         → {"version": huggingface_hub.__version__}
  interop.py snapshot REPO [PATTERN...]    → snapshot_download(REPO, allow_patterns=PATTERNS) into the cache
  interop.py scan                          → scan_cache_dir() of HF_HUB_CACHE: repos, revisions, refs, files, sizes
  interop.py offline REPO FILE...          → hf_hub_download(REPO, FILE, local_files_only=True) for each file,
                                             and snapshot_download(REPO, local_files_only=True)

Exit status 3 with a message on stderr when huggingface_hub is not installed.
"""
import hashlib
import json
import os
import sys

try:
    import huggingface_hub
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
except ImportError as e:  # pragma: no cover - reported by the Rust test
    print(f"huggingface_hub is not installed ({e}); run: pip install -r tools/hub/requirements.txt", file=sys.stderr)
    sys.exit(3)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "check":
        out = {"version": huggingface_hub.__version__, "endpoint": os.environ.get("HF_ENDPOINT")}
    elif cmd == "snapshot":
        repo, patterns = args[0], args[1:] or None
        path = snapshot_download(repo, allow_patterns=patterns)
        out = {"path": path}
    elif cmd == "scan":
        info = scan_cache_dir()
        out = {
            "size_on_disk": info.size_on_disk,
            "warnings": [str(w) for w in info.warnings],
            "repos": [
                {
                    "repo_id": r.repo_id,
                    "repo_type": r.repo_type,
                    "size_on_disk": r.size_on_disk,
                    "nb_files": r.nb_files,
                    "refs": sorted(r.refs),
                    "revisions": [
                        {
                            "commit_hash": rev.commit_hash,
                            "refs": sorted(rev.refs),
                            "size_on_disk": rev.size_on_disk,
                            "snapshot_path": str(rev.snapshot_path),
                            "files": sorted(
                                [
                                    {
                                        "file_name": str(f.file_path.relative_to(rev.snapshot_path)),
                                        "size_on_disk": f.size_on_disk,
                                        "blob_name": f.blob_path.name,
                                        "sha256": sha256(f.file_path),
                                    }
                                    for f in rev.files
                                ],
                                key=lambda f: f["file_name"],
                            ),
                        }
                        for rev in sorted(r.revisions, key=lambda x: x.commit_hash)
                    ],
                }
                for r in sorted(info.repos, key=lambda x: x.repo_id)
            ],
        }
    elif cmd == "offline":
        repo, files = args[0], args[1:]
        out = {
            "files": {f: hf_hub_download(repo, f, local_files_only=True) for f in files},
            "snapshot": snapshot_download(repo, local_files_only=True),
        }
    else:
        raise SystemExit(f"unknown command {cmd}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
