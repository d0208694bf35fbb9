#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py, run as `python -m benchmarks.gpu_check`), one prepared
# script for a CUDA machine: under 8 minutes on an H100. It needs python3 with torch and
# transformers (the GPU image has them) and bertclf's sources; pytest for the CUDA tests.
#
#   bash benchmarks/gpu_check.sh prepare     # here, before: .device/ with R8 and the encoder's weights
#                                            # in fp16 (about 50 MB), for a machine with no internet
#   bash benchmarks/gpu_check.sh OUT_DIR     # there: writes OUT_DIR/gpu_check.json
#   bash benchmarks/gpu_check.sh --dry OUT   # anywhere: the same code on the CPU, tiny (a test runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [[ "${1:-}" == "prepare" ]]; then
  mirror=${BERTCLF_MIRROR:-../shared/data}
  mkdir -p .device/r8 .device/encoder
  cp "$mirror"/r8/r8-*-all-terms.tsv .device/r8/
  "$PY" - <<'PY'
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

src, dst = Path("models/encoder"), Path(".device/encoder")
for f in src.iterdir():
    if f.is_file() and f.suffix != ".safetensors":
        (dst / f.name).write_bytes(f.read_bytes())
weights = {k: v.to(torch.float16) for k, v in load_file(src / "model.safetensors").items()}
save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
PY
  du -sh .device
  exit 0
fi

dry=()
if [[ "${1:-}" == "--dry" ]]; then dry=(--dry); shift; fi
out=${1:-${OUT:-.}}
mkdir -p "$out"
encoder=()
if [[ ${#dry[@]} -eq 0 && -f .device/encoder/model.safetensors ]]; then encoder=(--encoder .device/encoder); fi
PYTHONUNBUFFERED=1 PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}" \
  "$PY" -m benchmarks.gpu_check --out "$out/gpu_check.json" "${dry[@]}" "${encoder[@]}" "${@:2}"
