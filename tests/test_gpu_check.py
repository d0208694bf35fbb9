"""benchmarks/gpu_check.sh in its CPU dry mode: the script a GPU machine runs works end to end and
writes every figure it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path: Path, tiny_bert_dir: Path) -> None:
    r8 = tmp_path / "r8"
    r8.mkdir()
    for name, n in (("train", 48), ("test", 12)):
        lines = [
            f"{('earn', 'acq', 'crude')[i % 3]}\tshares of the company rose {i} pct in trade"
            for i in range(n)
        ]
        (r8 / f"r8-{name}-all-terms.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        [
            "bash",
            "benchmarks/gpu_check.sh",
            "--dry",
            str(tmp_path / "out"),
            "--r8",
            str(r8),
            "--tokenizer",
            str(tiny_bert_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["dry"] is True and result["machine"]["device"] == "cpu"
    assert result["matmul_peak"]["bf16_tflops"] > 0 and result["matmul_peak"]["fp32_tflops"] > 0
    assert "skipped" in result["cuda_tests"]["summary"] and result["cuda_tests"]["exit_code"] == 0
    tiny = result["encoders"]["tiny"]
    assert tiny["inference"]["seq_per_s"] > 0 and tiny["training"]["samples_per_s"] > 0
    assert tiny["inference"]["fraction_of_peak"] > 0
    ft = result["finetune_r8"]
    assert ft["docs"] == 48 and ft["test_docs"] == 12 and ft["samples_per_s"] > 0 and 0 <= ft["test_acc"] <= 1
