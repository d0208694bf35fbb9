"""How the cost grows: each stage's wall time and peak memory, and the feature store's size, for
IMDB cut to N documents (half train, half test), on this machine.

Every stage runs as `dvc.yaml` runs it (`python -m stages.<name> …`, one process each, so its
peak resident memory is its own: `os.wait4`), in a fresh project directory per N, on the
default params with `data.name: imdb`, `split.max_train` / `split.max_test` = N / 2 and
`train.epochs: 1` (the cost per epoch; the default trains 6). Then a least-squares slope per stage
on log(seconds) against log(N) (and of peak memory), and a linear fit (fixed + per document) for
the projection to Yelp 2013's 335,018 reviews and to a million documents (time, store bytes).

    python -m benchmarks.scaling --sizes 1000 5000 25000 50000 --out benchmarks/results/scaling_imdb.json \\
        --plot reports/scaling_imdb.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.benchlib import finish, stage_commands

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("download@data", "download@encoder", "split", "tokenize", "pretrain", "featurize", "train",
          "evaluate")
TARGETS = {"yelp2013": 335_018, "a million": 1_000_000}


def run_stage(work: Path, command: list[str]) -> dict[str, float]:
    """One stage in `work` as its own process: wall seconds and peak resident memory (GiB)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", *command], cwd=work, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{command[0]} failed for {work}:\n{err[-2000:]}")
    return {"seconds": round(seconds, 2), "peak_gib": round(usage.ru_maxrss / 2**20, 3)}


def one_size(n: int, keep: bool) -> dict[str, Any]:
    from bertclf.config import Config, to_dict

    work = Path(tempfile.mkdtemp(prefix=f"bertclf-scaling-{n}-"))
    params = Config().replace({"data.name": "imdb", "split.max_train": n // 2, "split.max_test": n - n // 2,
                               "train.epochs": 1})
    (work / "params.yaml").write_text(json.dumps(to_dict(params), indent=1))  # JSON is YAML 1.2
    commands = stage_commands(ROOT / "dvc.yaml")
    stages = {}
    for name in STAGES:
        stages[name] = run_stage(work, commands[name])
        print(n, name, stages[name], flush=True)
    store = sum(p.stat().st_size for p in (work / "data" / "features").glob("*.npy"))
    tokens = json.loads((work / "data" / "features" / "meta.json").read_text()).get("dim")
    result = {"docs": n, "stages": stages, "store_bytes": store, "dim": tokens,
              "test_acc": json.loads((work / "metrics" / "eval.json").read_text())["test"]["acc"]}
    if not keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return result


def fit(sizes: list[int], values: list[float]) -> dict[str, float]:
    """log(value) = a + slope * log(size), least squares."""
    slope, intercept = np.polyfit(np.log(sizes), np.log(values), 1)
    return {"slope": round(float(slope), 3), "intercept": float(intercept)}


def linear(sizes: list[int], values: list[float]) -> dict[str, float]:
    """value = fixed + per_doc * size, least squares: the projection (a log-log slope below 1 at
    small sizes is the fixed cost of loading models, not sub-linear work)."""
    per_doc, fixed = np.polyfit(np.asarray(sizes, dtype=float), np.asarray(values, dtype=float), 1)
    return {"fixed": round(float(fixed), 3), "per_doc": float(per_doc)}


def project(model: dict[str, float], n: int) -> float:
    return model["fixed"] + model["per_doc"] * n


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    sizes = [r["docs"] for r in runs]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ("tokenize", "featurize", "train", "evaluate"):
        ax.plot(sizes, [r["stages"][name]["seconds"] for r in runs], marker="o",
                label=f"{name} (slope {result['slopes'][name]['slope']:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("IMDB documents (half train, half test)")
    ax.set_ylabel("seconds")
    facts = result.get("measured", result)["machine"]
    ax.set_title(f"Stage time against data size ({facts['cpu']} {facts.get('cpu_id') or ''}, "
                 f"{facts.get('cores')} cores; train: one epoch)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 25000, 50000])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep each size's project directory")
    parser.add_argument("--runs-from", type=Path, default=None,
                        help="take the runs of an earlier result instead of running (re-analysis)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    earlier = json.loads(args.runs_from.read_text()) if args.runs_from else None
    runs = earlier["runs"] if earlier else [one_size(n, args.keep) for n in args.sizes]
    sizes = [r["docs"] for r in runs]
    slopes = {name: fit(sizes, [max(r["stages"][name]["seconds"], 1e-3) for r in runs]) for name in STAGES}
    memory = {name: fit(sizes, [r["stages"][name]["peak_gib"] for r in runs]) for name in STAGES}
    lines = {name: linear(sizes, [r["stages"][name]["seconds"] for r in runs]) for name in STAGES}
    store = linear(sizes, [r["store_bytes"] for r in runs])
    projections = {
        target: {"docs": n,
                 "stage_hours": {name: round(project(lines[name], n) / 3600, 2) for name in STAGES},
                 "train_epoch_hours": round(project(lines["train"], n) / 3600, 2),
                 "store_gb": round(project(store, n) / 1e9, 1)}
        for target, n in TARGETS.items()}
    result: dict[str, Any] = {"runs": runs, "slopes": slopes, "memory_slopes": memory, "linear": lines,
                              "store_linear": store, "projections": projections}
    if earlier:  # the machine and command the runs were measured with
        result["measured"] = {k: earlier[k] for k in ("machine", "date", "command") if k in earlier}
    finish(result, args.out, load_before)
    if args.plot:
        plot(result, args.plot)


if __name__ == "__main__":
    main()
