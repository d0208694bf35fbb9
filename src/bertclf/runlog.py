"""Stage reports, split by whether a re-run reproduces them.

A stage's report holds counts and settings (rows per split, tokens, padding, epochs run…) and
run facts (seconds, throughput, threads, device, the CPU). The first kind is a DVC output, cached
like the data (``reports/pipeline/<stage>.json``): the same params on the same machine give the
same bytes.
The second changes on every run, so it is written to an untracked run log (``logs/<stage>.json``,
git-ignored): were it a DVC output, every `dvc repro -f` would rewrite dvc.lock and leave git
dirty.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

from bertclf.atomic import write_json

# Keys (at any depth) whose values differ between runs of the same computation.
RUN_KEYS = frozenset({
    "seconds", "docs_per_s", "tokens_per_s", "threads", "train_seconds", "train_docs_per_s",
    "test_docs_per_s", "device", "resumed_from_epoch", "key_seconds", "epoch_seconds",
})


def partition(report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(reproducible facts, run facts) of a nested report."""
    facts: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for key, value in report.items():
        if key in RUN_KEYS:
            run[key] = value
        elif isinstance(value, dict):
            sub_facts, sub_run = partition(value)
            facts[key] = sub_facts
            if sub_run:
                run[key] = sub_run
        else:
            facts[key] = value
    return facts, run


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The matrix-relevant CPU flags (AVX2, AVX-512, bf16, VNNI, AMX)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def machine() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
                             "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                             "python": platform.python_version()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def write_report(report: dict[str, Any], path: Path | None, stage: str, log_dir: Path | None) -> None:
    """Write the reproducible part of `report` to `path` and the run facts to ``<log_dir>/<stage>.json``."""
    facts, run = partition(report)
    if path is not None:
        write_json(path, facts)
    if log_dir is not None:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        write_json(Path(log_dir) / f"{stage}.json",
                   {"stage": stage, "finished": now, "machine": machine(), **run})
