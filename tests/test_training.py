"""The training recipe on a tiny setup: it learns, resumes exactly (and only its own run), fails
clearly; evaluate agrees with scikit-learn."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score

import bertclf.training.checkpoints as checkpoints
from bertclf.data.stores import Inputs
from bertclf.evaluation import evaluate, load_predictions
from bertclf.model_dir import ModelDir
from bertclf.training.loop import TrainingError
from tests.conftest import make_config, run_train
from tests.featurefixtures import write_features

REPO = Path(__file__).resolve().parents[1]
SIZES = {"train": 240, "val": 60, "test": 60}
RUN_FACTS = ("train_seconds", "train_docs_per_s", "resumed_from_epoch", "key_seconds", "epoch_seconds")


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_features(tmp_path_factory.mktemp("features"), SIZES)


def run(features: Path, out: Path, **train: Any) -> dict:
    arch = train.get("arch", "han")
    knobs = {"hidden": 8, "attention_dim": 8, **train.pop("knobs", {})}
    params = {"batch_size": 16, "epochs": 4, "patience": 10, "lr": 0.01, **train}
    return run_train(Inputs(features, features, features), out, train=params, **{arch: knobs},
                     runtime={"log_every": 5})


def kill_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """The process dies right after it has written epoch `epoch`'s checkpoint."""
    real_save = checkpoints.save_checkpoint

    def save_then_die(path: Path, *args: object, **kw: object) -> None:
        real_save(path, *args, **kw)
        if path.name == f"epoch_{epoch}":
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die)


def interrupted(features: Path, out: Path, monkeypatch: pytest.MonkeyPatch, epoch: int, **train: Any) -> None:
    with monkeypatch.context() as m:
        kill_after_epoch(m, epoch)
        with pytest.raises(KeyboardInterrupt):
            run(features, out, **train)
    assert not (out / "model").exists()
    assert not (out / "ckpt" / checkpoints.COMPLETE).exists()


@pytest.mark.parametrize("arch", ["han", "bigru"])
def test_learns_and_writes_model_metrics_and_plots(features: Path, tmp_path: Path, arch: str) -> None:
    report = run(features, tmp_path, arch=arch, lr_decay="cosine", warmup_ratio=0.1)
    assert report["best_val_acc"] > 0.8  # chance is 1/3
    for f in ("model/model.safetensors", "model/bertclf.json", "model/labels.json", "train.json",
              "plots/loss.png", "ckpt/epoch_1", "ckpt/epoch_4", f"ckpt/{checkpoints.COMPLETE}"):
        assert (tmp_path / f).exists(), f
    series = tmp_path / "plots" / "metrics"
    for name in ("train/loss", "val/loss", "val/acc"):
        rows = (series / f"{name}.tsv").read_text().splitlines()
        assert rows[0] == f"step\t{name.split('/')[1]}" and [r.split("\t")[0] for r in rows[1:]] == [
            "1", "2", "3", "4"], name
    steps = (series / "steps" / "loss.tsv").read_text().splitlines()
    assert [int(r.split("\t")[0]) for r in steps[1:]][:3] == [5, 10, 15]  # runtime.log_every
    lrs = [float(r.split("\t")[1]) for r in (series / "steps" / "lr.tsv").read_text().splitlines()[1:]]
    assert lrs[-1] < max(lrs)  # cosine decay
    summary = json.loads((tmp_path / "train.json").read_text())
    assert set(summary) == {"best_epoch", "train", "val"}
    assert summary["val"]["loss"] == report["final_val_loss"]
    saved = ModelDir.read(tmp_path / "model")
    assert saved.arch == arch and saved.data["encoder"] == "synthetic"


def test_resume_after_a_kill_equals_an_uninterrupted_run(features: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    whole = run(features, tmp_path / "whole", knobs={"dropout": 0.3}, lr_decay="linear")
    interrupted(features, tmp_path / "killed", monkeypatch, 2, knobs={"dropout": 0.3}, lr_decay="linear")
    first_epochs = {f: (tmp_path / "killed/ckpt/epoch_1" / f).read_bytes() for f in ("model.safetensors",)}
    resumed = run(features, tmp_path / "killed", knobs={"dropout": 0.3}, lr_decay="linear")

    assert resumed["resumed_from_epoch"] == 2 and whole["resumed_from_epoch"] == 0
    assert {k: (tmp_path / "killed/ckpt/epoch_1" / k).read_bytes() for k in first_epochs} == first_epochs
    assert {k: v for k, v in resumed.items() if k not in RUN_FACTS} == {
        k: v for k, v in whole.items() if k not in RUN_FACTS}
    a, b = (load_file(tmp_path / d / "model/model.safetensors") for d in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for d in ("train.json", "plots/metrics/val/loss.tsv", "plots/metrics/steps/loss.tsv",
              "plots/metrics/steps/lr.tsv"):
        assert (tmp_path / "whole" / d).read_bytes() == (tmp_path / "killed" / d).read_bytes(), d
    # the checkpoints too, byte for byte (`dvc.lock` records their hash: a resumed run must not differ)
    def ckpt_files(run: str) -> dict[str, bytes]:
        root = tmp_path / run / "ckpt"
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert ckpt_files("whole") == ckpt_files("killed")


def test_a_finished_run_is_never_resumed(features: Path, tmp_path: Path) -> None:
    first = run(features, tmp_path, epochs=2)
    again = run(features, tmp_path, epochs=2)  # `dvc repro -f`: the same run, recomputed
    assert first["resumed_from_epoch"] == 0 and again["resumed_from_epoch"] == 0
    assert again["epochs_run"] == 2


def test_changed_config_does_not_resume_foreign_checkpoints(features: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    interrupted(features, tmp_path, monkeypatch, 1, epochs=3)
    report = run(features, tmp_path, epochs=3, knobs={"dropout": 0.2})
    assert report["resumed_from_epoch"] == 0 and report["epochs_run"] == 3


def test_changed_feature_contents_are_not_resumed(features: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Same index, same config, other vectors (a pretrain change upstream): start from epoch 1."""
    mine = tmp_path / "features"
    shutil.copytree(features, mine)
    interrupted(mine, tmp_path / "out", monkeypatch, 2, epochs=3)
    vectors = np.load(mine / "train.npy")
    np.save(mine / "train.npy", (vectors * 1.01).astype(vectors.dtype))
    report = run(mine, tmp_path / "out", epochs=3)
    assert report["resumed_from_epoch"] == 0

    interrupted(mine, tmp_path / "same", monkeypatch, 2, epochs=3)  # control: unchanged inputs resume
    assert run(mine, tmp_path / "same", epochs=3)["resumed_from_epoch"] == 2


def test_a_changed_encoder_is_not_resumed(features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          tiny_bert_dir: Path) -> None:
    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_bert_dir, encoder)
    inputs = Inputs(features, features, encoder)
    config = make_config(train={"epochs": 2})
    before = checkpoints.resume_key(config, [features, encoder])
    (encoder / "config.json").write_text((encoder / "config.json").read_text() + "\n")
    assert checkpoints.resume_key(config, [features, encoder]) != before
    assert checkpoints.resume_key(config, [inputs.features, inputs.encoder]) == checkpoints.resume_key(
        config, [features, encoder])


def key_with_sources(src: Path, features: Path) -> str:
    """The resume key computed by the package in `src` (a copy of src/bertclf's tree)."""
    code = ("from pathlib import Path; from bertclf.training.checkpoints import resume_key; "
            "from bertclf.config import Config; "
            f"print(resume_key(Config(), [Path({str(features)!r})]))")
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_change_to_the_model_code_changes_the_resume_key(features: Path, tmp_path: Path) -> None:
    for name in ("same", "edited"):
        shutil.copytree(REPO / "src" / "bertclf", tmp_path / name / "bertclf",
                        ignore=shutil.ignore_patterns("__pycache__"))
    models = tmp_path / "edited" / "bertclf" / "models" / "han.py"
    models.write_text(models.read_text() + "\n# a change to the model code\n")
    original = key_with_sources(REPO / "src", features)
    assert key_with_sources(tmp_path / "same", features) == original
    assert key_with_sources(tmp_path / "edited", features) != original


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _damage_best_of_epoch_2(ckpt: Path) -> int:
    best = checkpoints.load_state(ckpt / "epoch_2")["state"]["best_epoch"]
    _truncate(ckpt / f"epoch_{best}" / checkpoints.WEIGHTS)
    return 1 if best == 2 else 0  # epoch 1 is resumable only if its own weights are intact


DAMAGE = {  # what is done to the checkpoints of a run killed after epoch 2 -> the epoch resumed
    "empty state": lambda c: (c / "epoch_2" / checkpoints.STATE).write_bytes(b"") or 1,
    "state of another kind": lambda c: torch.save({"n": 1}, c / "epoch_2" / checkpoints.STATE) or 1,
    "truncated weights": lambda c: _truncate(c / "epoch_2" / checkpoints.WEIGHTS) or 1,
    "missing weights": lambda c: (c / "epoch_2" / checkpoints.WEIGHTS).unlink() or 1,
    "damaged best epoch": _damage_best_of_epoch_2,
    "every epoch damaged": lambda c: [_truncate(p) for p in c.glob("epoch_*/" + checkpoints.WEIGHTS)] and 0,
    "stray entries": lambda c: ((c / "epoch_final").mkdir(), (c / "epoch_9").write_text("a file"),
                                (c / ".epoch_3.x1.tmp").mkdir(), (c / "notes.txt").write_text("x")) and 2,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_falls_back_to_an_intact_one_or_starts_fresh(
        features: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    run(features, tmp_path / "whole", epochs=3)
    interrupted(features, tmp_path / "killed", monkeypatch, 2, epochs=3)
    expected = DAMAGE[damage](tmp_path / "killed/ckpt")
    resumed = run(features, tmp_path / "killed", epochs=3)
    assert resumed["resumed_from_epoch"] == expected
    a, b = (load_file(tmp_path / d / "model/model.safetensors") for d in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((tmp_path / "killed/ckpt").glob(".*.tmp"))  # a killed save's temporary is gone


def test_every_saved_checkpoint_is_resumable_the_moment_it_appears(features: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The best epoch a state points to is on disk before that state is (no separate `best/` that
    a kill could leave out of step)."""
    real_save = checkpoints.save_checkpoint
    seen = []

    def save_and_check(path: Path, *args: object, **kw: object) -> None:
        real_save(path, *args, **kw)
        best = checkpoints.load_state(path)["state"]["best_epoch"]
        seen.append(checkpoints.weights_intact(path.parent / f"epoch_{best}" / checkpoints.WEIGHTS))

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_and_check)
    run(features, tmp_path, epochs=4)
    assert seen == [True] * 4


def test_the_gpu_random_state_is_checkpointed_and_restored(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_state = [torch.arange(16, dtype=torch.uint8)]
    restored: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoints.save_checkpoint(tmp_path / "epoch_1", model, optimizer, scheduler, {"epoch": 1}, "key")
    saved = checkpoints.load_state(tmp_path / "epoch_1")
    found = checkpoints.Checkpoint(tmp_path / "epoch_1", saved)
    assert checkpoints.restore(found, model, optimizer, scheduler, torch.device("cpu")) == {"epoch": 1}
    assert len(restored) == 1 and torch.equal(restored[0][0], gpu_state[0])


def test_train_deterministic_turns_on_deterministic_algorithms(features: Path, tmp_path: Path) -> None:
    try:
        plain = run(features, tmp_path / "plain", epochs=2)
        assert not torch.are_deterministic_algorithms_enabled()
        strict = run(features, tmp_path / "strict", epochs=2, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert strict["best_val_acc"] == plain["best_val_acc"]  # on a CPU the numbers were deterministic already


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
    inputs = Inputs(features, features, features)
    report = evaluate(tmp_path / "model", inputs, tmp_path / "eval.json", tmp_path / "eval",
                      tmp_path / "predictions")
    predictions = load_predictions(tmp_path / "predictions")
    assert len(predictions) == SIZES["test"]
    assert report["test_acc"] == round(accuracy_score(predictions["actual"], predictions["predicted"]), 5)
    assert set(report["test_per_class"]) == {"class0", "class1", "class2"}
    assert (tmp_path / "eval/confusion_test.png").stat().st_size > 0
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert scores == {"val": {"acc": report["val_acc"], "macro_f1": report["val_macro_f1"]},
                      "test": {"acc": report["test_acc"], "macro_f1": report["test_macro_f1"],
                               "subsampled": False}}
    assert (predictions["prediction"] == np.stack(predictions["logits"]).argmax(1)).all()
    assert load_predictions(tmp_path / "predictions", "val").shape[0] == SIZES["val"]
    confusion = json.loads((tmp_path / "eval/sklearn/confusion_test.json").read_text())
    assert [(c["actual"], c["predicted"]) for c in confusion] == list(
        zip(predictions["actual"], predictions["predicted"], strict=True))
    per_class = json.loads((tmp_path / "eval/custom/per_class_f1.json").read_text())
    assert {r["class"]: r["f1"] for r in per_class} == {
        k: v["f1"] for k, v in report["test_per_class"].items()}
