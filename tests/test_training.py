"""The training recipe on a tiny setup: it learns, resumes exactly, fails clearly; evaluate agrees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score

import bertclf.training as training
from bertclf.evaluation import evaluate, load_predictions
from bertclf.model_inputs import Inputs
from bertclf.training import TrainConfig, TrainingError, train
from tests.featurefixtures import write_features

SIZES = {"train": 240, "val": 60, "test": 60}


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_features(tmp_path_factory.mktemp("features"), SIZES)


def run(features: Path, out: Path, **kw: object) -> dict:
    cfg = TrainConfig(**{"hidden": 8, "attention_dim": 8, "batch_size": 16, "epochs": 4, "patience": 10,
                         "lr": 0.01, "log_every": 5, **kw})
    inputs = Inputs(features, features, features)
    return train(cfg, inputs, out / "model", out / "ckpt", out / "train.json", out / "plots")


@pytest.mark.parametrize("arch", ["han", "bigru"])
def test_learns_and_writes_model_metrics_and_plots(features: Path, tmp_path: Path, arch: str) -> None:
    report = run(features, tmp_path, arch=arch, lr_decay="cosine", warmup_ratio=0.1)
    assert report["best_val_acc"] > 0.8  # chance is 1/3
    for f in ("model/model.safetensors", "model/bertclf.json", "model/labels.json", "train.json",
              "plots/loss.csv", "plots/steps.csv", "plots/loss.png", "ckpt/epoch_1", "ckpt/epoch_4"):
        assert (tmp_path / f).exists(), f
    rows = (tmp_path / "plots/loss.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,val_acc,lr,seconds" and len(rows) == 5
    config = json.loads((tmp_path / "model/bertclf.json").read_text())
    assert config["model"]["arch"] == arch and config["data"]["encoder"] == "synthetic"


def test_resume_after_a_kill_equals_an_uninterrupted_run(features: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run(features, tmp_path / "whole", dropout=0.3, lr_decay="linear")

    real_save = training.save_checkpoint

    def save_then_die(path: Path, *args: object, **kw: object) -> None:
        real_save(path, *args, **kw)
        if path.name == "epoch_2":
            raise KeyboardInterrupt  # the process is killed right after epoch 2's checkpoint

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(features, tmp_path / "killed", dropout=0.3, lr_decay="linear")
    assert not (tmp_path / "killed/model").exists()
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    resumed = run(features, tmp_path / "killed", dropout=0.3, lr_decay="linear")

    timing = ("train_seconds", "train_docs_per_s")
    assert {k: v for k, v in resumed.items() if k not in timing} == {
        k: v for k, v in whole.items() if k not in timing}
    a, b = (load_file(tmp_path / d / "model/model.safetensors") for d in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    drop_seconds = [[c for c in line.split(",")[:-1]] for line in
                    (tmp_path / "whole/plots/loss.csv").read_text().splitlines()]
    assert drop_seconds == [[c for c in line.split(",")[:-1]] for line in
                            (tmp_path / "killed/plots/loss.csv").read_text().splitlines()]
    steps = [(tmp_path / d / "plots/steps.csv").read_text() for d in ("whole", "killed")]
    assert steps[0] == steps[1]


def test_changed_config_does_not_resume_foreign_checkpoints(features: Path, tmp_path: Path) -> None:
    run(features, tmp_path, epochs=2)
    report = run(features, tmp_path, epochs=2, dropout=0.2)
    assert report["epochs_run"] == 2
    saved = torch.load(tmp_path / "ckpt/epoch_2/trainer_state.pt", weights_only=True)
    assert saved["fingerprint"] == training.fingerprint(
        TrainConfig(hidden=8, attention_dim=8, batch_size=16, epochs=2, patience=10, lr=0.01, log_every=5,
                    dropout=0.2), Inputs(features, features, features))


def test_early_stopping_stops_after_patience(features: Path, tmp_path: Path) -> None:
    report = run(features, tmp_path, epochs=30, patience=1, lr=0.05)
    assert report["stopped_early"] and report["epochs_run"] < 30
    assert report["epochs_run"] == report["best_epoch"] + 1


def test_non_finite_loss_names_epoch_and_step(tmp_path: Path) -> None:
    feats = write_features(tmp_path / "f", {"train": 40, "val": 10, "test": 10})
    vectors = np.load(feats / "train.npy")
    vectors[:] = np.nan
    np.save(feats / "train.npy", vectors)
    with pytest.raises(TrainingError, match=r"epoch 1, step 1"):
        run(feats, tmp_path / "out", epochs=1)


def test_evaluate_agrees_with_sklearn_on_saved_predictions(features: Path, tmp_path: Path) -> None:
    run(features, tmp_path, arch="han", epochs=2)
    splits = tmp_path / "split"
    splits.mkdir()
    import pandas as pd

    words = ["good", "bad", "ugly"]
    rng = np.random.default_rng(0)
    for name, n in SIZES.items():
        labels = rng.integers(0, 3, n)
        pd.DataFrame({"id": [str(i) for i in range(n)],
                      "text": [f"{words[y]} movie {rng.integers(9)}" for y in labels],
                      "label": labels}).to_parquet(splits / f"{name}.parquet")
    inputs = Inputs(features, features, features)
    report = evaluate(tmp_path / "model", inputs, splits, tmp_path / "eval.json", tmp_path / "plots")
    predictions = load_predictions(tmp_path / "plots/confusion_test.csv")
    assert len(predictions) == SIZES["test"]
    assert report["test_acc"] == round(accuracy_score(predictions["actual"], predictions["predicted"]), 5)
    assert report["tfidf_logreg"]["test_acc"] == 1.0  # the words give the label away
    assert set(report["test_per_class"]) == {"class0", "class1", "class2"}
    assert (tmp_path / "plots/confusion_test.png").stat().st_size > 0
    assert json.loads((tmp_path / "eval.json").read_text())["test_subsampled"] is False
