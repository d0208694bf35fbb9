"""`train` under torchrun: 2 CPU processes (gloo) match one process on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from bertclf.data.stores import Inputs
from tests.conftest import run_train
from tests.featurefixtures import write_features

REPO = Path(__file__).resolve().parents[1]
PARAMS = {
    "train": {"arch": "han", "batch_size": 16, "epochs": 2, "patience": 5, "lr": 0.01,
              "class_weights": "balanced"},
    "han": {"hidden": 8, "attention_dim": 8, "dropout": 0.0},
    "runtime": {"log_every": 3, "threads": 1},
}


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    feats = write_features(tmp_path / "features", {"train": 101, "val": 33, "test": 10})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "stages.train", str(feats), str(feats), str(feats), str(ddp / "model"), str(ddp / "ckpt"),
         str(ddp / "train.json"), str(ddp / "plots"), str(ddp / "report.json"),
         "--params", str(tmp_path / "params.yaml"), "--runlog-dir", str(tmp_path / "logs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    single = run_train(Inputs(feats, feats, feats), tmp_path / "one", **PARAMS)
    multi = json.loads((ddp / "report.json").read_text())
    assert multi["processes"] == 2 and single["processes"] == 1
    assert multi["best_val_acc"] == single["best_val_acc"]
    assert abs(multi["final_train_loss"] - single["final_train_loss"]) < 1e-4
    assert abs(multi["final_val_loss"] - single["final_val_loss"]) < 1e-4
    a, b = load_file(ddp / "model/model.safetensors"), load_file(tmp_path / "one/model/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
    # only rank 0 wrote: one set of outputs, no stray temporary files
    assert sorted(p.name for p in ddp.iterdir()) == ["ckpt", "model", "plots", "report.json", "train.json"]
    assert json.loads((tmp_path / "logs" / "train.json").read_text())["stage"] == "train"
