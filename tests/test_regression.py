"""Regression targets (data.task: regression) end to end on the tiny BERT: values in the
thousands through split (stratified by decile, the training mean and spread recorded), every arch
trained on standardized targets and saved outputting the value itself, scored by RMSE (lower is
better for early stopping, combine and compare), predict, serve, ONNX and `pipeline()` answering
the value, the ridge floor and `combine`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import bertclf
from bertclf import tasks
from bertclf.baseline import tfidf_baseline
from bertclf.cli import app
from bertclf.combine import combine
from bertclf.config import TfidfConfig
from bertclf.data.stores import Inputs
from bertclf.errors import DataError
from bertclf.evaluation import evaluate, load_predictions
from bertclf.model_dir import ModelDir
from tests.conftest import TINY_ARCHS, run_split_stage, run_train, tiny_inputs

CUES = {"terrible": 1, "poor": 2, "okay": 3, "good": 4, "superb": 5}
FILLER = ["the", "movie", "film", "story", "plot", "acting", "scene", "camera", "cast", "script", "ending"]


def write_prices_csv(path: Path, n: int, seed: int = 3) -> Path:
    """Texts whose one cue word sets the target: 1000 + 100 x its grade, plus noise of sd 10."""
    rng = random.Random(seed)
    texts, values = [], []
    for i in range(n):
        cue = list(CUES)[i % len(CUES)]
        words = [rng.choice(FILLER) for _ in range(rng.randint(4, 10))]
        words.insert(rng.randrange(len(words)), cue)
        texts.append(" ".join(words) + ".")
        values.append(round(1000 + 100 * CUES[cue] + rng.gauss(0, 10), 2))
    pd.DataFrame({"text": texts, "price": values}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Inputs:
    root = tmp_path_factory.mktemp("regression")
    src = write_prices_csv(root / "prices.csv", 400)
    report = run_split_stage(root, {"name": "file", "path": str(src), "label_column": "price",
                                    "task": "regression"})
    assert report["task"] == "regression"
    split = root / "data" / "split"
    meta = json.loads((split / "labels.json").read_text())
    assert meta["labels"] == ["value"] and 1250 < meta["target"]["mean"] < 1350
    assert meta["target"]["std"] > 100
    return tiny_inputs(root, tiny_bert_dir)


ARCHS = {**TINY_ARCHS, "finetune": ({"lr": 3e-3, "epochs": 12}, {})}  # as for ratings


@pytest.fixture(scope="module", params=list(ARCHS))
def trained(request: pytest.FixtureRequest, data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch = request.param
    out = tmp_path_factory.mktemp(f"regression-{arch}")
    recipe, knobs = ARCHS[arch]
    report = run_train(data, out, train={"arch": arch, "batch_size": 16, "patience": 10, **recipe},
                       **({arch: knobs} if knobs else {}))
    assert "best_val_rmse" in report, report
    return out


def test_every_arch_learns_values_and_outputs_them_unscaled(trained: Path, data: Inputs) -> None:
    report = evaluate(trained / "model", data, trained / "eval.json", trained / "plots", trained / "pred")
    metrics = json.loads((trained / "eval.json").read_text())
    assert list(metrics["val"]) == ["rmse", "mae", "r2"]  # narrow: dvc exp show
    # the cue decides the value to within its noise; predicting the mean scores RMSE ~141, R² 0
    assert report["test_rmse"] < 90 and report["test_r2"] > 0.6, report
    assert "test_spearman" in report
    assert (trained / "plots" / "predicted_vs_true_test.png").is_file()
    predictions = load_predictions(trained / "pred")
    errors = np.asarray(predictions["prediction"], float) - np.asarray(predictions["label"], float)
    assert report["test_rmse"] == pytest.approx(float(np.sqrt(np.mean(errors**2))), abs=1e-3)
    texts = ["the superb movie.", "a terrible plot."]
    values = [p.value for p in bertclf.load(trained / "model").predict(texts)]
    assert values[0] > values[1] + 150 and 900 < values[1] < 1600, values  # in the targets' units


def test_lower_rmse_is_better_for_early_stopping_and_combine() -> None:
    assert tasks.better("rmse", 1.0, 2.0) and not tasks.better("rmse", 2.0, 1.0)
    assert tasks.better("acc", 0.9, 0.8) and tasks.better("qwk", -0.5, None)


@pytest.fixture(scope="module")
def finetuned(data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regression-finetuned")
    run_train(data, out, train={"arch": "finetune", "batch_size": 16, "epochs": 12, "lr": 3e-3})
    return out / "model"


def test_predict_serve_onnx_and_pipeline_answer_the_value(finetuned: Path, data: Inputs,
                                                          tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from transformers import pipeline

    from bertclf.serving.server import create_app

    assert ModelDir.read(finetuned).task == "regression"
    texts = ["the superb movie.", "an awful poor plot.", "the okay cast."]
    clf = bertclf.load(finetuned)
    values = [p.value for p in clf.predict(texts)]
    np.testing.assert_allclose(values, clf.logits(texts)[:, 0], rtol=1e-6)  # the output is the value
    result = CliRunner().invoke(app, ["predict", "-m", str(finetuned), *texts])
    assert result.exit_code == 0, result.output
    shown = [float(line.split("\t")[0]) for line in result.stdout.splitlines()]
    assert shown == pytest.approx(values, rel=1e-3)
    with TestClient(create_app(clf)) as client:
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
        documented = client.get("/openapi.json").json()["components"]["schemas"]["Answer"]["properties"]
    assert [a["value"] for a in answer] == pytest.approx(values, abs=1e-4)
    assert set(answer[0]) == {"value"}  # no empty fields of other tasks
    assert {"label", "probability", "labels", "value", "probabilities"} <= set(documented)
    config = json.loads((finetuned / "config.json").read_text())
    assert config["problem_type"] == "regression"
    hf = pipeline("text-classification", model=str(finetuned), truncation=True, device="cpu")
    assert [a["score"] for a in hf(texts, function_to_apply="none")] == pytest.approx(values, rel=1e-4)
    out = tmp_path / "onnx"
    test_file = data.tokens.parent / "data" / "split" / "test.parquet"
    result = CliRunner().invoke(app, ["export", "-m", str(finetuned), "-o", str(out),
                                      "--data", str(test_file)])
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "parity.json").read_text())
    assert parity["agreement"] == 1.0 and "pytorch_rmse" in parity, parity
    assert [p.value for p in bertclf.load(out).predict(texts)] == pytest.approx(values, rel=1e-3)


def test_ridge_floor_and_combine_score_regression(data: Inputs, finetuned: Path, tmp_path: Path) -> None:
    split = data.tokens.parent / "data" / "split"
    floor = tfidf_baseline(split, TfidfConfig(min_df=1), tmp_path / "tfidf")["tfidf"]
    assert set(floor) == {f"{s}_{m}" for s in ("val", "test") for m in ("rmse", "mae", "r2")}, floor
    assert floor["test_rmse"] < 120, floor
    evaluate(finetuned, data, tmp_path / "eval.json", tmp_path / "plots", tmp_path / "pred")
    result, curve = combine(tmp_path / "pred", tmp_path / "tfidf")
    assert {"rmse", "mae", "r2", "model_rmse", "tfidf_rmse"} <= set(result["test"])
    assert result["lambda"] == min(curve, key=lambda r: r["rmse"])["lambda"]
    assert result["val"]["rmse"] <= result["val"]["model_rmse"] + 1e-9


def test_a_value_that_is_not_a_number_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,price\nthe good film.,1400\nthe poor film.,cheap\n")
    with pytest.raises(DataError, match=r"bad.csv, line 3: the label 'cheap' is not a finite number"):
        run_split_stage(tmp_path, {"name": "file", "path": str(path), "label_column": "price",
                                   "task": "regression"})


def test_init_takes_a_column_of_numbers_for_regression(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bertclf.config import load_config
    from bertclf.data.own_file import init_file

    monkeypatch.chdir(tmp_path)
    write_prices_csv(tmp_path / "prices.csv", 60)
    shutil.copyfile(Path(__file__).parents[1] / "params.yaml", tmp_path / "params.yaml")
    said: list[str] = []
    init_file(tmp_path / "prices.csv", label="price", params=tmp_path / "params.yaml", dvc=False,
              echo=said.append)
    assert load_config(tmp_path / "params.yaml").data.task == "regression", said
    assert any("regression. Classes after all? set data.task: single_label" in line for line in said), said
    assert not [line for line in said if line.startswith("  ")], said  # no per-value counts
