"""What every benchmark here shares: the machine it ran on, interleaved repeats, the result file.

Timing protocol: one untimed warm-up of every method, then `repeats` rounds in which every method
runs once, in the same order each round (interleaved, so a slow spell of the machine hits all of
them alike). A method's figure is the median of its rounds; the spread (min, max) is kept beside
it, and the load average before and after tells whether the machine was idle.

Speed against the hardware: `matmul_peak` measures what this CPU's matrix units give on a
transformer's own shapes (fp32 and bf16), `encoder_flops` counts a BERT encoder's matmul FLOPs,
and `against_peak` turns a timing into GFLOP/s and its fraction of the peak.
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


def encoder_flops(config: Any, seq: int) -> float:
    """Forward FLOPs of one sequence of `seq` tokens through a BERT encoder (matmuls only:
    projections, attention scores and values, FFN); training is about 3x."""
    h, layers, ffn = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    per_layer = 2 * seq * (4 * h * h + 2 * h * ffn) + 2 * 2 * seq * seq * h
    return float(layers * per_layer)


def matmul_peak(hidden: int = 384, ffn: int = 1536, tokens: int = 2048,
                repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of this CPU on the encoder's FFN matmul (`tokens` x `hidden` @ `hidden` x `ffn`,
    MiniLM's shape by default), fp32 and, where oneDNN has bf16 kernels, bf16; best of `repeats`."""
    import torch

    peak = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype == torch.bfloat16 and not (torch.backends.mkldnn.is_available()
                                            and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            continue
        a = torch.randn(tokens, hidden, dtype=dtype)
        b = torch.randn(hidden, ffn, dtype=dtype)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        peak[f"{name}_gflops"] = round(2 * tokens * hidden * ffn / best / 1e9, 1)
    peak["shape"] = f"{tokens}x{hidden} @ {hidden}x{ffn}"  # type: ignore[assignment]
    return peak


def against_peak(flops: float, seconds: float, peak: dict[str, Any], precision: str) -> dict[str, float]:
    """Achieved GFLOP/s of `flops` done in `seconds`, and its fraction of the `precision` peak."""
    gflops = flops / seconds / 1e9
    top = peak.get(f"{precision}_gflops")
    return {"gflops": round(gflops, 1), **({"fraction_of_peak": round(gflops / top, 3)} if top else {})}


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
