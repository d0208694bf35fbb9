"""What every benchmark here shares: the machine it ran on, interleaved repeats, the result file.

Timing protocol: one untimed warm-up of every method, then `repeats` rounds in which every method
runs once, in the same order each round (interleaved, so a slow spell of the machine hits all of
them alike). A method's figure is the median of its rounds; the spread (min, max) is kept beside
it, and the load average before and after tells whether the machine was idle.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def cpu() -> dict[str, Any]:
    """The CPU's model and the flags that decide matmul speed (AVX2, AVX-512, bf16, VNNI, AMX)."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    model = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info:
        model += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    flags = set(info.get("flags", "").split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
    return {"model": model, "flags": [f for f in wanted if f in flags], "cores": os.cpu_count()}


def machine() -> dict[str, Any]:
    import torch

    facts = {"cpu": cpu(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
             "python": platform.python_version(), "load_average": os.getloadavg()}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def interleaved(methods: dict[str, Callable[[], Any]], repeats: int = 3,
                warmup: bool = True) -> dict[str, dict[str, Any]]:
    """Seconds of each method: a warm-up call each, then `repeats` rounds of one call each."""
    if warmup:
        for fn in methods.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return {name: {"median_s": round(statistics.median(s), 4), "min_s": round(min(s), 4),
                   "max_s": round(max(s), 4), "runs_s": [round(x, 4) for x in s]}
            for name, s in seconds.items()}


def per_second(timing: dict[str, Any], count: int) -> dict[str, Any]:
    """`count` items per second at the median, with the range over the rounds."""
    return {"per_s": round(count / timing["median_s"], 1),
            "per_s_range": [round(count / timing["max_s"], 1), round(count / timing["min_s"], 1)]}


def finish(result: dict[str, Any], out: Path | None, load_before: tuple[float, ...]) -> None:
    """Add the machine, date and command; print; write `out`."""
    result["machine"] = {**machine(), "load_average_before": load_before}
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["command"] = "python " + " ".join(sys.argv)
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
