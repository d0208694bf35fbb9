"""The whole pipeline, timed: `dvc repro --force` on the current params, every stage's run log kept.

Each stage writes its timings and throughput to the untracked run log `logs/<stage>.json` (tokens/s
of featurize, docs/s of train per epoch, …). This runs the pipeline from scratch, measures the
wall time of the whole repro, and gathers those logs with the machine facts into one committed
result, which is where the README's pipeline speed figures come from.

    python -m benchmarks.pipeline_run --out benchmarks/results/pipeline_rotten_tomatoes.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.benchlib import finish
from bertclf.config import load_config, to_dict

STAGES = ("download", "split", "tokenize", "pretrain", "featurize", "tfidf", "train", "eval")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=Path("logs"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    load_before = os.getloadavg()
    dvc = Path(sys.executable).with_name("dvc")
    t0 = time.perf_counter()
    done = subprocess.run([str(dvc), "repro", "--force"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"dvc repro failed:\n{done.stderr[-3000:]}")
    logs = {}
    for stage in STAGES:
        path = args.logs / f"{stage}.json"
        if path.is_file():
            log = json.loads(path.read_text())
            log.pop("machine", None)
            logs[stage] = log
    params = to_dict(load_config())
    scores = {name: json.loads(Path(f"metrics/{name}.json").read_text())
              for name in ("eval", "tfidf", "combine")}
    result = {"data": params["data"]["name"], "arch": params["train"]["arch"], "wall_seconds": round(wall, 1),
              "stages": logs, "scores": scores}
    finish(result, args.out, load_before)


if __name__ == "__main__":
    main()
