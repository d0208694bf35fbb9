"""What every benchmark here shares: the machine it ran on, interleaved repeats, the result file.
Benchmarks import it as `benchmarks.benchlib` and run as `python -m benchmarks.<name>` from the
project root; bf16 detection and the machine's facts come from the library (`bertclf.inference`,
`bertclf.runlog`).

Timing protocol: one untimed warm-up of every method, then `repeats` rounds in which every method
runs once, in the same order each round (interleaved, so a slow spell of the machine hits all of
them alike). A method's figure is the median of its rounds; the spread (min, max) is kept beside
it, and the load average before and after tells whether the machine was idle.

Speed against the hardware: `matmul_peak` measures what this CPU's matrix units give on a
transformer's own shapes (fp32 and bf16), `encoder_flops` counts a BERT encoder's matmul FLOPs
(`useful_work`: both for one encoder and its documents), and `against_peak` turns a timing into
GFLOP/s and its fraction of the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def cpu_id() -> str | None:
    """The CPU's family and model numbers (``/proc/cpuinfo``), which name a generation where the
    model name does not (a virtual machine's "AMD EPYC"); `bertclf.runlog` has the rest."""
    facts: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            key, _, value = line.partition(":")
            facts[key.strip()] = value.strip()
    except OSError:
        return None
    return f"family {facts['cpu family']}, model {facts.get('model', '?')}" if "cpu family" in facts else None


def machine() -> dict[str, Any]:
    """The stage logs' machine facts (`bertclf.runlog.machine`: CPU model, its matrix flags, cores,
    torch and its threads, the GPU if any), the CPU's family and model, and the load average."""
    from bertclf.runlog import machine as run_machine

    return {**run_machine(), "cpu_id": cpu_id(), "load_average": os.getloadavg()}


def encoder_flops(config: Any, seq: int) -> float:
    """Forward FLOPs of one sequence of `seq` tokens through a BERT encoder (matmuls only:
    projections, attention scores and values, FFN); training is about 3x."""
    h, layers, ffn = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    per_layer = 2 * seq * (4 * h * h + 2 * h * ffn) + 2 * 2 * seq * seq * h
    return float(layers * per_layer)


def matmul_peak(hidden: int = 384, ffn: int = 1536, tokens: int = 2048,
                repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of this CPU on the encoder's FFN matmul (`tokens` x `hidden` @ `hidden` x `ffn`,
    MiniLM's shape by default), fp32 and, where the CPU has bf16 units, bf16; best of `repeats`."""
    import torch

    from bertclf.inference import has_bf16_units

    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype == torch.bfloat16 and not has_bf16_units(torch.device("cpu")):
            continue
        a = torch.randn(tokens, hidden, dtype=dtype)
        b = torch.randn(hidden, ffn, dtype=dtype)
        for _ in range(2):
            a @ b
        best = min(rounds({"matmul": lambda a=a, b=b: a @ b}, repeats)["matmul"])
        peak[f"{name}_gflops"] = round(2 * tokens * hidden * ffn / best / 1e9, 1)
    peak["shape"] = f"{tokens}x{hidden} @ {hidden}x{ffn}"  # type: ignore[assignment]
    return peak


def useful_work(config: Any, lengths: Any, passes: int = 1) -> tuple[dict[str, float], float]:
    """This CPU's `matmul_peak` on `config`'s FFN shape, and the matmul FLOPs of `passes` forward
    passes (3 for a training step) over sequences of `lengths` tokens."""
    peak = matmul_peak(config.hidden_size, config.intermediate_size)
    return peak, passes * sum(encoder_flops(config, int(n)) for n in lengths)


def against_peak(flops: float, seconds: float, peak: dict[str, Any], precision: str) -> dict[str, float]:
    """Achieved GFLOP/s of `flops` done in `seconds`, and its fraction of the `precision` peak."""
    gflops = flops / seconds / 1e9
    top = peak.get(f"{precision}_gflops")
    return {"gflops": round(gflops, 1), **({"fraction_of_peak": round(gflops / top, 3)} if top else {})}


def rounds(methods: dict[str, Callable[[], Any]], repeats: int = 3, warmup: bool = True,
           self_timed: bool = False,
           on_run: Callable[[str, float], None] | None = None) -> dict[str, list[float]]:
    """Seconds of each method in each round: a warm-up call each, then `repeats` rounds of one call
    each, in the same order. `self_timed`: a method returns the seconds it measured itself (its
    loop without its set-up), taken in place of the call's; `on_run(name, seconds)` after each."""
    if warmup:
        for fn in methods.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            if self_timed:
                seconds[name].append(float(fn()))
            else:
                fn()
                seconds[name].append(time.perf_counter() - t0)
            if on_run:
                on_run(name, seconds[name][-1])
    return seconds


def interleaved(methods: dict[str, Callable[[], Any]], repeats: int = 3, warmup: bool = True,
                **kwargs: Any) -> dict[str, dict[str, Any]]:
    """The median, range and runs of each method's seconds over `rounds(methods, repeats, …)`."""
    return {name: {"median_s": round(statistics.median(s), 4), "min_s": round(min(s), 4),
                   "max_s": round(max(s), 4), "runs_s": [round(x, 4) for x in s]}
            for name, s in rounds(methods, repeats, warmup, **kwargs).items()}


def per_second(timing: dict[str, Any], count: int, digits: int = 1) -> dict[str, Any]:
    """`count` items per second at the median, with the range over the rounds."""
    return {"per_s": round(count / timing["median_s"], digits),
            "per_s_range": [round(count / timing["max_s"], digits), round(count / timing["min_s"], digits)]}


def figures(timing: dict[str, Any], count: int, unit: str = "", digits: int = 1, flops: float = 0.0,
            peak: dict[str, Any] | None = None, precision: str = "fp32") -> dict[str, Any]:
    """A method's `timing` (`interleaved`) with `count` items per second (`<unit>_per_s` and its
    range) and, given the `flops` it did, `against_peak` at `precision`."""
    rate = {f"{unit}_{k}" if unit else k: v for k, v in per_second(timing, count, digits).items()}
    work = against_peak(flops, timing["median_s"], peak or {}, precision) if flops else {}
    return {**timing, **rate, **work}


def sample_parser(doc: str, docs: int, max_length: int) -> argparse.ArgumentParser:
    """The options of a benchmark over a seeded sample of a tokenized split (add its own to them)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=Path("data/tokens/train.parquet"))
    parser.add_argument("--encoder", type=Path, default=Path("models/encoder"))
    parser.add_argument("--docs", type=int, default=docs)
    parser.add_argument("--max-length", type=int, default=max_length)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    return parser


def sample(args: argparse.Namespace, columns: list[str]) -> dict[str, list[Any]]:
    """`columns` of `args.docs` documents of the tokenized split `args.tokens`, a sample seeded by
    `args.seed`, in file order; exits when the split or `args.encoder` is missing."""
    import pyarrow.parquet as pq

    if not args.tokens.exists() or not args.encoder.exists():
        sys.exit(f"{args.tokens} or {args.encoder} missing: run `dvc repro tokenize` first")
    table = pq.read_table(args.tokens, columns=columns)
    rows = table.num_rows
    pick = np.sort(np.random.default_rng(args.seed).choice(rows, size=min(args.docs, rows), replace=False))
    return {column: table.column(column).take(pick).to_pylist() for column in columns}


def stage_commands(dvc_yaml: Path) -> dict[str, list[str]]:
    """Each stage's command in `dvc_yaml` (foreach expanded: ``download@data``) as
    ``[module, *args]``, to run as ``python -m module args`` exactly as `dvc repro` does."""
    import re

    import yaml

    stages = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]
    commands: dict[str, list[str]] = {}
    for name, stage in stages.items():
        if "foreach" in stage:
            for key, item in stage["foreach"].items():
                cmd = stage["do"]["cmd"].replace("${key}", key)
                cmd = re.sub(r"\$\{item\.(\w+)\}", lambda m, item=item: str(item[m.group(1)]), cmd)
                commands[f"{name}@{key}"] = shlex.split(cmd)[2:]
        else:
            commands[name] = shlex.split(stage["cmd"])[2:]  # after "python -m"
    return commands


def command() -> str:
    """This run's command line, as `python -m benchmarks.<name> …` when run so."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["-m", spec.name] if spec and spec.name != "__main__" else [os.path.relpath(sys.argv[0])]
    return shlex.join(["python", *program, *sys.argv[1:]])


def finish(result: dict[str, Any], out: Path | None, load_before: tuple[float, ...],
           facts: dict[str, Any] | None = None) -> None:
    """Add the machine (with `facts`), date and command; print; write `out`."""
    result["machine"] = {**machine(), **(facts or {}), "load_average_before": load_before}
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["command"] = command()
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
