"""`runtime.processes: 2` on CPUs (gloo): featurize, train and evaluate start torchrun themselves,
as `dvc repro` runs them, and give what one process gives: the same feature store byte for byte,
the same training (gradients averaged over the split global batch) and the same scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import load_file

from bertclf.config import FeaturizeConfig
from bertclf.data.stores import Inputs
from bertclf.data.tokenization import TokenizeConfig, tokenize_splits
from bertclf.distributed import process_count
from bertclf.evaluation import evaluate
from bertclf.features import featurize
from tests.conftest import run_split_stage, run_train
from tests.test_ordinal import write_ratings_csv

REPO = Path(__file__).resolve().parents[1]
PARAMS = {
    "featurize": {"precision": "fp32", "max_batch_tokens": 160},
    "train": {
        "arch": "han",
        "batch_size": 16,
        "epochs": 2,
        "patience": 5,
        "lr": 0.01,
        "class_weights": "balanced",
    },
    "han": {"hidden": 8, "attention_dim": 8, "dropout": 0.0},
    "runtime": {"log_every": 3, "threads": 1, "device": "cpu"},
}


def stage(name: str, *args: Path, params: Path, logs: Path) -> None:
    """`python -m stages.<name> ARGS`, as dvc.yaml runs it (no torchrun typed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "OMP_NUM_THREADS")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            f"stages.{name}",
            *map(str, args),
            "--params",
            str(params),
            "--runlog-dir",
            str(logs),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_gloo_processes_from_the_stages_match_one_process(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = write_ratings_csv(tmp_path / "reviews.csv", 160)
    run_split_stage(
        tmp_path, {"name": "file", "path": str(src), "text_column": "review", "label_column": "stars"}
    )
    tokens = tmp_path / "tokens"
    tokenize_splits(tmp_path / "data" / "split", tiny_bert_dir, tokens, TokenizeConfig(max_length=24))

    # one process, in this one
    torch.set_num_threads(1)
    one = tmp_path / "one"
    featurize(tokens, tiny_bert_dir, one / "features", FeaturizeConfig(**PARAMS["featurize"]))
    inputs = Inputs(one / "features", tokens, tiny_bert_dir)
    single = run_train(inputs, one, **{k: v for k, v in PARAMS.items() if k != "featurize"})
    single_eval = evaluate(
        one / "model", inputs, one / "eval.json", one / "eval_plots", one / "predictions", device="cpu"
    )

    # two processes: each stage starts them itself
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**PARAMS, "runtime": {**PARAMS["runtime"], "processes": 2}}))
    two, logs = tmp_path / "two", tmp_path / "logs"
    stage(
        "featurize", tokens, tiny_bert_dir, two / "features", two / "featurize.json", params=params, logs=logs
    )
    stage(
        "train",
        two / "features",
        tokens,
        tiny_bert_dir,
        two / "model",
        two / "ckpt",
        two / "train.json",
        two / "plots",
        two / "train_report.json",
        params=params,
        logs=logs,
    )
    stage(
        "evaluate",
        two / "model",
        two / "features",
        tokens,
        tiny_bert_dir,
        two / "eval.json",
        two / "eval_plots",
        two / "predictions",
        two / "eval_report.json",
        params=params,
        logs=logs,
    )

    assert json.loads((two / "featurize.json").read_text())["processes"] == 2
    for split in ("train", "val", "test"):  # the same store, byte for byte
        assert (two / "features" / f"{split}.npy").read_bytes() == (
            one / "features" / f"{split}.npy"
        ).read_bytes()
        assert pq.read_table(two / "features" / f"{split}.index.parquet").equals(
            pq.read_table(one / "features" / f"{split}.index.parquet")
        )

    multi = json.loads((two / "train_report.json").read_text())
    assert multi["processes"] == 2 and single["processes"] == 1
    assert multi["best_val_acc"] == single["best_val_acc"]
    assert abs(multi["final_train_loss"] - single["final_train_loss"]) < 1e-4
    assert abs(multi["final_val_loss"] - single["final_val_loss"]) < 1e-4
    a, b = load_file(two / "model/model.safetensors"), load_file(one / "model/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)

    multi_eval = json.loads((two / "eval_report.json").read_text())
    assert multi_eval["processes"] == 2
    assert json.loads((two / "eval.json").read_text()) == json.loads((one / "eval.json").read_text())
    assert multi_eval["test_acc"] == single_eval["test_acc"]
    logits = [
        np.stack(pq.read_table(d / "predictions" / "test.parquet")["logits"].to_numpy(zero_copy_only=False))
        for d in (one, two)
    ]
    assert np.allclose(*logits, atol=1e-4)
    # only rank 0 wrote: one set of outputs, no stray temporaries
    assert sorted(p.name for p in two.iterdir()) == [
        "ckpt",
        "eval.json",
        "eval_plots",
        "eval_report.json",
        "features",
        "featurize.json",
        "model",
        "plots",
        "predictions",
        "train.json",
        "train_report.json",
    ]
    assert not [p for p in (two / "features").iterdir() if p.name.startswith(".")]
    assert json.loads((logs / "train.json").read_text())["stage"] == "train"


def test_a_failure_under_two_processes_is_one_line(tmp_path: Path, tiny_bert_dir: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"runtime": {"processes": 2, "device": "cpu"}}))
    (tmp_path / "tokens").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    done = subprocess.run(
        [sys.executable, "-m", "stages.featurize", str(tmp_path / "tokens"), str(tiny_bert_dir),
         str(tmp_path / "features"), str(tmp_path / "report.json"), "--params", str(params)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'tokens'}: no tokenized splits (*.parquet) there: run the tokenize stage "
        "first (dvc repro tokenize)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "tokens"]


def test_processes_auto_is_one_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert process_count("auto") == 1 and process_count(3) == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert process_count("auto") == 4
