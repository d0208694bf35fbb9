"""Multi-label data (data.task: multi_label) end to end on the tiny BERT: files of each shape, the
stratified split, every arch trained and scored, thresholds from validation applied by evaluate,
predict, serve, ONNX and `transformers.pipeline()`, the TF-IDF floor and `combine`."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import bertclf
from bertclf import tasks
from bertclf.baseline import tfidf_baseline
from bertclf.cli import app
from bertclf.combine import combine
from bertclf.config import TfidfConfig
from bertclf.data.splitting import multilabel_take
from bertclf.data.stores import Inputs
from bertclf.errors import DataError
from bertclf.evaluation import evaluate, load_predictions
from bertclf.model_dir import CONFIG, ModelDir
from tests.conftest import TINY_ARCHS, run_split_stage, run_train, tiny_inputs

LABELS = ["good", "bad", "sound"]  # a praising word, a damning word, the word "music"
CUES = {"good": ["great", "wonderful", "excellent", "loved"], "bad": ["awful", "boring", "terrible", "worst"],
        "sound": ["music"]}
FILLER = ["the", "movie", "film", "story", "plot", "acting", "scene", "camera", "cast", "script", "ending"]


def tweet(rng: random.Random, labels: tuple[str, ...]) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 10))]
    for label in labels:
        words.insert(rng.randrange(len(words)), rng.choice(CUES[label]))
    return " ".join(words) + "."


def sample(rng: random.Random, n: int) -> list[tuple[str, tuple[str, ...]]]:
    """`n` documents with 0-3 labels each (every combination)."""
    out = []
    for i in range(n):
        labels = tuple(name for bit, name in enumerate(LABELS) if (i >> bit) & 1)
        out.append((tweet(rng, labels), labels))
    return out


def write_indicator_csv(path: Path, rows: list[tuple[str, tuple[str, ...]]]) -> Path:
    columns = {name: [int(name in ls) for _, ls in rows] for name in LABELS}
    pd.DataFrame({"text": [t for t, _ in rows], **columns}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Inputs:
    """A user's indicator-column csv through download and split, tokenized and featurized."""
    root = tmp_path_factory.mktemp("multi-label")
    src = write_indicator_csv(root / "tweets.csv", sample(random.Random(3), 480))
    report = run_split_stage(root, {"name": "file", "path": str(src), "task": "multi_label",
                                    "label_columns": ["*"]})
    assert report["task"] == "multi_label"
    return tiny_inputs(root, tiny_bert_dir)


ARCHS = TINY_ARCHS  # train settings and the arch's knobs


@pytest.fixture(scope="module", params=list(ARCHS))
def trained(request: pytest.FixtureRequest, data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch = request.param
    out = tmp_path_factory.mktemp(f"multi-{arch}")
    recipe, knobs = ARCHS[arch]
    report = run_train(data, out, train={"arch": arch, "batch_size": 16, "patience": 10, **recipe},
                       **({arch: knobs} if knobs else {}))
    assert set(report) >= {"best_val_jaccard", "thresholds"}, report
    return out


def test_every_arch_learns_and_is_scored_by_the_task_s_metrics(trained: Path, data: Inputs) -> None:
    report = evaluate(trained / "model", data, trained / "eval.json", trained / "plots", trained / "pred")
    metrics = json.loads((trained / "eval.json").read_text())
    assert list(metrics["val"]) == ["jaccard", "micro_f1", "macro_f1"]  # narrow: dvc exp show
    # each label has a word that decides it; answering every label scores 0.5, none 0.125
    assert report["test_jaccard"] > 0.6, report
    assert {"test_subset_acc", "test_hamming_loss"} <= set(report)
    assert set(report["test_per_class"]) == set(LABELS)
    assert (trained / "plots" / "precision_recall_test.png").is_file()
    predictions = load_predictions(trained / "pred")
    first = predictions.iloc[0]
    assert list(first["predicted"]) == [LABELS[j] for j in np.flatnonzero(first["prediction"])]


def test_the_thresholds_chosen_on_validation_are_the_ones_predict_applies(trained: Path) -> None:
    """Predict answers every label whose sigmoid probability reaches its stored threshold."""
    md = ModelDir.read(trained / "model")
    assert md.task == "multi_label" and md.thresholds is not None and len(md.thresholds) == len(LABELS)
    texts = ["the great movie with music.", "an awful boring plot.", "the camera and the cast.",
             "loved the music but the ending was terrible."]
    clf = bertclf.load(trained / "model")
    logits = clf.logits(texts)
    probs = clf.predict_proba(texts)
    np.testing.assert_allclose(probs, torch.sigmoid(torch.from_numpy(logits)).numpy(), atol=1e-6)
    strict = tmp_copy(trained / "model", trained / "strict", thresholds=[0.999] * len(LABELS))
    for model, cuts in ((trained / "model", md.thresholds), (strict, (0.999,) * len(LABELS))):
        answers = bertclf.load(model).predict(texts)
        for answer, row in zip(answers, probs, strict=True):
            above = tuple(name for name, p, t in zip(LABELS, row, cuts, strict=True) if p >= t)
            assert answer.labels == above
    result = CliRunner().invoke(app, ["predict", "-m", str(strict), *texts[:2]])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines() if not line.startswith("\t")] == [
        ",".join(a.labels) or "-" for a in bertclf.load(strict).predict(texts[:2])]


def tmp_copy(model: Path, out: Path, thresholds: list[float]) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model, out)
    saved = json.loads((out / CONFIG).read_text())
    (out / CONFIG).write_text(json.dumps({**saved, "thresholds": thresholds}))
    return out


@pytest.fixture(scope="module")
def finetuned(data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi-finetuned")
    run_train(data, out, train={"arch": "finetune", "batch_size": 16, "epochs": 8, "lr": 2e-3,
                                "thresholds": "per_label"})
    return out / "model"


def test_a_fine_tuned_multi_label_model_is_a_hugging_face_multi_label_model(finetuned: Path) -> None:
    """`pipeline()` applies a sigmoid per label (problem_type); the labels it scores at or above
    the stored thresholds are bertclf's answer."""
    from transformers import pipeline

    md = ModelDir.read(finetuned)
    assert json.loads((finetuned / "config.json").read_text())["problem_type"] == "multi_label_classification"
    assert md.thresholds is not None
    texts = ["the great movie with music.", "an awful boring plot.", "the camera and the cast."]
    hf = pipeline("text-classification", model=str(finetuned), truncation=True, device="cpu")
    ours = bertclf.load(finetuned).predict(texts)
    cut = dict(zip(LABELS, md.thresholds, strict=True))
    for answer, mine in zip(hf(texts, top_k=None), ours, strict=True):
        assert {a["label"] for a in answer if a["score"] >= cut[a["label"]]} == set(mine.labels)
        for a in answer:
            assert a["score"] == pytest.approx(mine.probabilities[a["label"]], abs=1e-4)


def test_onnx_export_and_serve_answer_the_same_labels(finetuned: Path, data: Inputs, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bertclf.serving.server import create_app

    out = tmp_path / "onnx"
    test_file = data.tokens.parent / "data" / "split" / "test.parquet"
    args = ["export", "-m", str(finetuned), "-o", str(out), "--data", str(test_file)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "parity.json").read_text())
    assert parity["agreement"] == 1.0 and "pytorch_jaccard" in parity, parity
    texts = ["the great movie with music.", "an awful boring plot."]
    expected = [list(p.labels) for p in bertclf.load(finetuned).predict(texts)]
    assert [list(p.labels) for p in bertclf.load(out).predict(texts)] == expected
    with TestClient(create_app(bertclf.load(finetuned))) as client:
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
    assert [a["labels"] for a in answer] == expected and set(answer[0]["probabilities"]) == set(LABELS)


def test_tfidf_and_combine_score_multi_label_data(data: Inputs, finetuned: Path, tmp_path: Path) -> None:
    split = data.tokens.parent / "data" / "split"
    floor = tfidf_baseline(split, TfidfConfig(min_df=1), tmp_path / "tfidf")["tfidf"]
    assert 0 <= floor["threshold"] <= 1 and floor["test_jaccard"] > 0.5, floor
    evaluate(finetuned, data, tmp_path / "eval.json", tmp_path / "plots", tmp_path / "pred")
    result, curve = combine(tmp_path / "pred", tmp_path / "tfidf")
    assert {"jaccard", "model_jaccard", "tfidf_jaccard", "macro_f1"} <= set(result["test"])
    best = max(curve, key=lambda r: (r["jaccard"], -r["log_loss"]))
    assert result["lambda"] == best["lambda"]
    assert result["val"]["jaccard"] >= result["val"]["model_jaccard"] - 1e-9


def test_label_shapes_a_user_may_bring(tmp_path: Path) -> None:
    """Indicator columns, a separated list, a JSON list in jsonl and parquet; a document may have
    no label; a bad value is one line naming the file, line and value."""
    from bertclf.data.labels import read_multi_label

    rows = [("great music.", ("good", "sound")), ("the cast.", ()), ("awful plot.", ("bad",))]
    expected = [labels for _, labels in rows]
    csv = write_indicator_csv(tmp_path / "a.csv", rows)
    df, names = read_multi_label(csv, None, None, ["*"], None)
    assert names == LABELS and [tuple(sorted(x)) for x in df["label"]] == [tuple(sorted(x)) for x in expected]
    sep = tmp_path / "b.csv"
    tags = [";".join(ls) for _, ls in rows]
    pd.DataFrame({"text": [t for t, _ in rows], "tags": tags}).to_csv(sep, index=False)
    assert list(read_multi_label(sep, None, "tags", None, ";")[0]["label"]) == expected
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": list(ls)}) + "\n" for t, ls in rows))
    assert list(read_multi_label(jsonl, None, None, None, None)[0]["label"]) == expected
    parquet = tmp_path / "d.parquet"
    pd.DataFrame({"text": [t for t, _ in rows], "label": [list(ls) for _, ls in rows]}).to_parquet(parquet)
    assert list(read_multi_label(parquet, None, None, None, None)[0]["label"]) == expected
    (tmp_path / "bad.csv").write_text("text,good,bad\ngreat.,1,0\nawful.,0,2\n")
    with pytest.raises(DataError, match=r"bad.csv, line 3: column 'bad' holds '2', not 0 or 1"):
        read_multi_label(tmp_path / "bad.csv", None, None, ["*"], None)
    with pytest.raises(DataError, match=r"c.jsonl, line 1: .*not a list of labels: set data.label_separator"):
        jsonl.write_text(json.dumps({"text": "x", "label": "good;bad"}) + "\n")
        read_multi_label(jsonl, None, None, None, None)


def test_a_label_test_never_saw_in_train_is_one_line(tmp_path: Path) -> None:
    rows = sample(random.Random(1), 40)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": list(ls)}) + "\n" for t, ls in rows))
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"text": "x", "label": ["good", "ugly"]}) + "\n")
    with pytest.raises(DataError, match=r"test.jsonl, line 1: a label that train never has: 'ugly'"):
        run_split_stage(tmp_path, {"name": "file", "path": str(train), "test_path": str(test),
                                   "task": "multi_label"})


def test_iterative_stratification_keeps_every_label_s_share() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((2000, 6)) < [0.5, 0.2, 0.05, 0.02, 0.3, 0.01]).astype(np.int8)
    taken = multilabel_take(labels, 200, np.random.default_rng(1))
    assert taken.sum() == 200
    expected = labels.sum(0) * 200 / 2000
    got = labels[taken].sum(0)
    assert np.all(np.abs(got - expected) <= 1), (got, expected)  # the rare labels too
    assert np.array_equal(taken, multilabel_take(labels, 200, np.random.default_rng(1)))  # seeded


def test_semeval_2018_ec_splits_from_the_mirror(mirror: Path, tmp_path: Path) -> None:
    report = run_split_stage(tmp_path, {"name": "semeval2018_ec", "task": "multi_label"}, mirror=mirror)
    rows = {name: r["rows"] for name, r in report["splits"].items()}
    assert report["source_rows"]["train"] == 6838 and sum(rows.values()) <= 6838
    assert report["num_labels"] == 11 and report["task"] == "multi_label"
    train, test = report["splits"]["train"], report["splits"]["test"]
    for label in ("trust", "surprise", "anger"):  # the rarest and a common one keep their share
        assert abs(test["labels"][label] / rows["test"] - train["labels"][label] / rows["train"]) < 0.01
    with pytest.raises(Exception, match="semeval2018_ec is multi-label"):
        run_split_stage(tmp_path / "single", {"name": "semeval2018_ec"}, mirror=mirror)


def test_scores_follow_semeval_s_jaccard() -> None:
    gold = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    pred = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert tasks.jaccard(gold, pred) == pytest.approx((1 / 3 + 1 + 0) / 3)  # both empty counts 1


def test_init_recognises_each_multi_label_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0/1 columns, a column of labels joined by a separator, a JSON list: `init` says what it
    guessed and how to override it, and sets params that read the file."""
    from bertclf.config import load_config
    from bertclf.data.own_file import init_file

    monkeypatch.chdir(tmp_path)
    rows = sample(random.Random(2), 60)
    write_indicator_csv(tmp_path / "flags.csv", rows)
    pd.DataFrame({"tweet": [t for t, _ in rows], "tags": ["|".join(ls) for _, ls in rows]}).to_csv(
        tmp_path / "joined.csv", index=False)
    (tmp_path / "lists.jsonl").write_text("".join(json.dumps({"text": t, "labels": list(ls)}) + "\n"
                                                  for t, ls in rows))
    expected = {"flags.csv": {"label_columns": tuple(LABELS), "label_separator": None},
                "joined.csv": {"label_column": "tags", "label_separator": "|"},
                "lists.jsonl": {"label_column": "labels", "label_separator": None}}
    for name, settings in expected.items():
        shutil.copyfile(Path(__file__).parents[1] / "params.yaml", tmp_path / "params.yaml")
        said: list[str] = []
        init_file(tmp_path / name, params=tmp_path / "params.yaml", dvc=False, echo=said.append)
        data = load_config(tmp_path / "params.yaml").data
        assert data.task == "multi_label", said
        assert {k: getattr(data, k) for k in settings} == settings, said
        assert any("multi-label, 3 labels" in line and "--label-column" in line for line in said), said
        assert any(line.strip().startswith("good") for line in said), said  # per-label counts


def test_the_prompt_loop_answers_the_labels_then_the_probabilities(finetuned: Path) -> None:
    from bertclf.serving.predict_io import interactive

    clf = bertclf.load(finetuned)
    shown: list[str] = []
    interactive(clf, ["the great movie with music.", "the camera and the cast."], shown.append, top_k=2)
    for line, answer in zip(shown, clf.predict(["the great movie with music.", "the camera and the cast."]),
                            strict=True):
        assert line.startswith(f"[{', '.join(answer.labels) or '-'}]  "), line


def test_the_stage_scripts_run_on_multi_label_data(finetuned: Path, data: Inputs, tmp_path: Path) -> None:
    """evaluate, tfidf and combine as dvc.yaml runs them, each saying its headline score in one line."""
    import subprocess
    import sys

    repo = Path(__file__).parents[1]
    split = data.tokens.parent / "data" / "split"
    o = tmp_path
    commands = {
        "evaluate": [str(finetuned), str(data.features), str(data.tokens), str(data.encoder),
                     str(o / "eval.json"), str(o / "plots"), str(o / "pred"), str(o / "eval-report.json"),
                     "--runlog-dir", str(o / "logs")],
        "tfidf": [str(split), str(o / "tfidf.json"), str(o / "tfidf")],
        "combine": [str(o / "pred"), str(o / "tfidf"), str(o / "combine.json"), str(o / "curve.json"),
                    str(o / "combine-report.json")],
    }
    for stage, args in commands.items():
        done = subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=repo, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "jaccard" in done.stderr, done.stderr[-500:]
    mixed = json.loads((o / "combine.json").read_text())["combine"]
    assert set(mixed) == {"lambda", "val_jaccard", "test_jaccard"}
