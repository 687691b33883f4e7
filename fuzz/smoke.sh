#!/usr/bin/env bash
# Short libFuzzer run of the GGUF reader target (tools/test.sh calls it; budget ≈ 2–3 min on 2 cores:
# ~1.5 min to build with AddressSanitizer + coverage, FUZZ_SECONDS of fuzzing, 30 by default).
#
# The machine has only a stable toolchain. cargo-fuzz passes nightly-only `-Z` flags
# (`-Zsanitizer=address`, `-Cpasses=sancov-module` options); RUSTC_BOOTSTRAP=1 makes stable rustc accept
# them. cargo-fuzz itself is installed once at a pinned version (kept in ~/.cargo/bin).
#
# Seeds: fuzz/seeds/gguf_reader (a file with every block type incl. I2_S, nested arrays; kept current
# by `cargo test -p tern-gguf --test fuzz`) plus tern-gguf's golden GGUF files. Any crash, panic,
# sanitizer report, >64 MiB allocation or >10 s input fails this script; libFuzzer leaves the input
# under fuzz/artifacts/gguf_reader/ and prints the command that replays it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
CARGO_FUZZ_VERSION=0.13.2
secs=${FUZZ_SECONDS:-30}

if ! cargo fuzz --version 2>/dev/null | grep -qF "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp seeds/gguf_reader/* ../crates/tern-gguf/tests/data/*.gguf "$corpus"/

export RUSTC_BOOTSTRAP=1
cargo fuzz build gguf_reader
if ! cargo fuzz run gguf_reader "$corpus" -- \
    -max_total_time="$secs" -max_len=65536 -malloc_limit_mb=64 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1; then
  echo "FUZZ FAILURE: the GGUF reader crashed or misbehaved; reproducer(s):" >&2
  ls -l artifacts/gguf_reader/ >&2 || true
  exit 1
fi
