#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): bertclf's own stages on a CUDA machine against HF Trainer
# and pipeline() on the same GPU, one JSON. Made for the lent GPU machines: bare, about 15 minutes
# in all, 10 a command, 64 MiB sent along, no internet, their own torch and transformers, no dvc,
# dvclive, fastapi or uvicorn. The check itself stays under 8 minutes (--minutes), each phase under
# its budget, and rewrites its JSON after every phase.
#
#   1. here, once:  bash benchmarks/gpu_check.sh prepare
#        needs models/encoder (`make repro`, or `dvc repro download@encoder`) and the mirror's R8
#        (../shared/data or BERTCLF_MIRROR); writes .device/ (about 50 MB, git-ignored): R8, the
#        encoder's weights in fp16 (config.json says so; bertclf loads them as fp32), the wheels the
#        image lacks (ruamel.yaml) and the commit.
#   2. there:       bash benchmarks/gpu_check.sh "$OUT"
#        with the device tool: run(command='bash benchmarks/gpu_check.sh $OUT', carry=['.device'],
#        timeout_s=560); it writes $OUT/gpu_check.json.
#   3. here:        commit it as benchmarks/results/gpu_check_<gpu>.json (e.g. gpu_check_h100.json).
#
#   bash benchmarks/gpu_check.sh --dry OUT [--r8 DIR --encoder DIR]
#        the same code on the CPU at tiny sizes, in an imitation of the image: the packages it lacks
#        are unimportable (gpu_image/sitecustomize.py) and its transformers (.cache/gpu-image, which
#        `make test` fetches) comes first; tests/test_gpu_check.py runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
IMAGE_LACKS="dvc dvclive fastapi uvicorn starlette pydantic iterstrat"

if [[ "${1:-}" == "prepare" ]]; then
  mirror=${BERTCLF_MIRROR:-../shared/data}
  if [[ ! -f models/encoder/model.safetensors ]]; then
    echo "gpu_check prepare: models/encoder/model.safetensors not found: run \`make repro\` (or \`dvc repro download@encoder\`) first" >&2
    exit 1
  fi
  if [[ ! -f "$mirror/r8/r8-train-all-terms.tsv" ]]; then
    echo "gpu_check prepare: $mirror/r8/r8-train-all-terms.tsv not found: put the mirror at ../shared/data or set BERTCLF_MIRROR" >&2
    exit 1
  fi
  tmp=$(mktemp -d .device.prepare.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT  # nothing half-made is left
  mkdir -p "$tmp/r8" "$tmp/encoder" "$tmp/wheels"
  cp "$mirror"/r8/r8-*-all-terms.tsv "$tmp/r8/"
  "$PY" - "$tmp/encoder" <<'PY'
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

src, dst = Path("models/encoder"), Path(sys.argv[1])
for f in src.iterdir():
    if f.is_file() and f.suffix != ".safetensors" and f.name != "config.json":
        (dst / f.name).write_bytes(f.read_bytes())
config = json.loads((src / "config.json").read_text())
config.pop("torch_dtype", None)
(dst / "config.json").write_text(json.dumps({**config, "dtype": "float16"}, indent=2))
weights = {k: v.to(torch.float16) for k, v in load_file(src / "model.safetensors").items()}
save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
PY
  ruamel=$("$PY" -c "import importlib.metadata as m; print(m.version('ruamel.yaml'))")
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$tmp/wheels" "ruamel.yaml==$ruamel"
  git rev-parse HEAD > "$tmp/commit.txt"
  rm -rf .device
  mv "$tmp" .device
  trap - EXIT
  du -sh .device
  exit 0
fi

args=()
if [[ "${1:-}" == "--dry" ]]; then
  args=(--dry)
  shift
  export BERTCLF_IMAGE_LACKS="$IMAGE_LACKS"
  site="benchmarks/gpu_image"
  if [[ -d .cache/gpu-image ]]; then site="$site:.cache/gpu-image"; fi
else
  site=""
  if compgen -G ".device/wheels/*.whl" > /dev/null; then  # what the image lacks, carried along
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site .device/wheels/*.whl
    site="/tmp/gpu-check-site"
  fi
fi
out=${1:?usage: gpu_check.sh prepare | [--dry] OUT_DIR [--r8 DIR --encoder DIR]}
shift
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1
export PYTHONPATH="${site:+$site:}src:.${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m benchmarks.gpu_check --out "$out/gpu_check.json" "${args[@]}" "$@"
