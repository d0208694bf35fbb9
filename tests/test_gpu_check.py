"""benchmarks/gpu_check.sh in its dry mode: the script a GPU machine runs, on the CPU at tiny sizes,
in an imitation of the GPU image (its transformers first on the path, dvc, dvclive, fastapi and
uvicorn unimportable), runs every phase through the pipeline's own stages and writes every figure
it promises; `prepare` on a clone without the encoder says what to do and leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_TRANSFORMERS = "5.17.0"  # benchmarks/gpu_image/requirements.txt


def write_r8(folder: Path) -> Path:
    folder.mkdir()
    cues = {"earn": "profit", "acq": "shares", "crude": "oil"}
    for name, n in (("train", 60), ("test", 16)):
        lines = [
            f"{label}\tthe company said {cues[label]} rose {i} pct in trade"
            for i, label in ((i, ("earn", "acq", "crude")[i % 3]) for i in range(n))
        ]
        (folder / f"r8-{name}-all-terms.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_the_gpu_check_runs_dry_in_the_image_imitation(tmp_path: Path, tiny_bert_dir: Path) -> None:
    assert (ROOT / ".cache/gpu-image/transformers").is_dir(), (
        "run `make test`: it fetches the image's transformers"
    )
    r8 = write_r8(tmp_path / "r8")
    done = subprocess.run(
        [
            "bash",
            "benchmarks/gpu_check.sh",
            "--dry",
            str(tmp_path / "out"),
            "--r8",
            str(r8),
            "--encoder",
            str(tiny_bert_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert result["dry"] is True
    facts = result["machine"]
    assert facts["transformers"] == IMAGE_TRANSFORMERS and facts["device"] == "cpu" and facts["date"]
    phases = result["phases"]
    failed = {name: p.get("error") for name, p in phases.items() if not p.get("ok")}
    assert not failed, failed
    assert set(phases) == {
        "matmul_peak",
        "pipeline_han",
        "pipeline_finetune",
        "predict",
        "trainer",
        "encoders",
        "cuda_tests",
    }
    han = phases["pipeline_han"]
    assert han["featurize"]["device"] == "cpu" and han["featurize"]["tokens_per_s"] > 0
    assert han["train"]["epochs_run"] == 2 and 0 <= han["eval"]["test_acc"] <= 1
    ft = phases["pipeline_finetune"]
    assert ft["docs"] == 40 and ft["samples_per_s"] > 0 and len(ft["epoch_seconds"]) == 2
    assert phases["predict"]["best_bertclf"] > 0 and phases["predict"]["best_pipeline"] > 0
    assert phases["trainer"]["samples_per_s"] > 0 and result["finetune_vs_trainer"] > 0
    assert phases["encoders"]["tiny"]["inference"]["fraction_of_peak"] > 0
    tests = phases["cuda_tests"]["tests"]  # run on the CPU in the dry mode: every one must pass
    assert len(tests) >= 10 and set(tests.values()) == {"passed"}, tests
    # the image lacks dvclive: training said so once and wrote its metrics file anyway
    assert "dvclive is not installed" in done.stderr


def test_prepare_on_a_fresh_clone_says_what_it_needs_and_leaves_nothing(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    (clone / "benchmarks").mkdir(parents=True)
    (clone / "benchmarks" / "gpu_check.sh").write_bytes((ROOT / "benchmarks" / "gpu_check.sh").read_bytes())
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "prepare"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "gpu_check prepare: models/encoder/model.safetensors not found: run `make repro` (or "
        "`dvc repro download@encoder`) first"
    ]
    assert sorted(p.name for p in clone.iterdir()) == ["benchmarks"]


def test_the_check_without_its_inputs_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.gpu_check",
            "--dry",
            "--out",
            str(tmp_path / "x.json"),
            "--r8",
            str(tmp_path / "none"),
            "--encoder",
            str(tmp_path / "none"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
    )
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "run `bash benchmarks/gpu_check.sh prepare`" in done.stderr
