#!/usr/bin/env bash
# Run make_llamacpp_goldens.py where torch + transformers + sentencepiece exist (the device machine).
# Needs (carried, ignored paths): the llama.cpp python converter from tools/testdata/fetch.sh llamacpp
# (convert_hf_to_gguf.py, conversion/, gguf-py/) and the tokenizers from fetch.sh tokenizers.
#   bash tools/convert/run_goldens_on_device.sh OUTDIR
set -o pipefail
OUTDIR=${1:-${OUT:-/tmp/out}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
python3 -c 'import torch, transformers, sentencepiece, numpy, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__, "sentencepiece", sentencepiece.__version__)' 2>&1 | tee "$OUTDIR/log.txt"
python3 tools/convert/make_llamacpp_goldens.py "$OUTDIR/llamacpp_goldens.json" 2>&1 | grep -v -e '^INFO:hf-to-gguf:gguf: ' | tail -200 | tee -a "$OUTDIR/log.txt"
rc=${PIPESTATUS[0]}
echo "rc=$rc" | tee -a "$OUTDIR/log.txt"
exit $rc
