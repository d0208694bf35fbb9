"""Ordinal labels (data.task: ordinal) end to end on the tiny BERT: ratings through download and
split in numeric order, every arch trained with both losses and scored by QWK and MAE, the median
class as the answer of predict, serve and ONNX, the TF-IDF floor and `combine`, `init` on a rating
file, IMDB's ratings from its file names."""

from __future__ import annotations

import io
import json
import random
import tarfile
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
from bertclf.config import DataConfig, TfidfConfig
from bertclf.data.stores import Inputs
from bertclf.errors import DataError
from bertclf.evaluation import evaluate, load_predictions
from bertclf.model_dir import ModelDir
from tests.conftest import TINY_ARCHS, run_split_stage, run_train, tiny_inputs

STARS = ["1", "2", "3", "4", "10"]  # numeric order; as text "10" would sort second
CUES = {"1": ["terrible", "awful"], "2": ["poor", "weak"], "3": ["okay", "fine"], "4": ["good", "nice"],
        "10": ["superb", "masterpiece"]}
FILLER = ["the", "movie", "film", "story", "plot", "acting", "scene", "camera", "cast", "script", "ending"]


def review(rng: random.Random, stars: str) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 10))]
    words.insert(rng.randrange(len(words)), rng.choice(CUES[stars]))
    return " ".join(words) + "."


def write_ratings_csv(path: Path, n: int, seed: int = 3) -> Path:
    rng = random.Random(seed)
    stars = [STARS[i % len(STARS)] for i in range(n)]
    pd.DataFrame({"review": [review(rng, s) for s in stars], "stars": stars}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Inputs:
    root = tmp_path_factory.mktemp("ordinal")
    src = write_ratings_csv(root / "ratings.csv", 400)
    report = run_split_stage(root, {"name": "file", "path": str(src), "text_column": "review",
                                    "label_column": "stars", "task": "ordinal"})
    assert report["task"] == "ordinal"
    split = root / "data" / "split"
    assert json.loads((split / "labels.json").read_text())["labels"] == STARS
    return tiny_inputs(root, tiny_bert_dir)


ARCHS = {**TINY_ARCHS, "finetune": ({"lr": 3e-3, "epochs": 12}, {})}  # 5 ratings need more
RUNS = [(arch, "cross_entropy") for arch in ARCHS] + [("han", "emd"), ("finetune", "emd")]


@pytest.fixture(scope="module", params=RUNS, ids=[f"{a}-{loss}" for a, loss in RUNS])
def trained(request: pytest.FixtureRequest, data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch, loss = request.param
    out = tmp_path_factory.mktemp(f"ordinal-{arch}-{loss}")
    recipe, knobs = ARCHS[arch]
    report = run_train(data, out, train={"arch": arch, "batch_size": 16, "patience": 10, "ordinal_loss": loss,
                                         **recipe}, **({arch: knobs} if knobs else {}))
    assert "best_val_qwk" in report, report
    return out


def test_every_arch_and_loss_learns_ratings_scored_by_qwk_and_mae(trained: Path, data: Inputs) -> None:
    report = evaluate(trained / "model", data, trained / "eval.json", trained / "plots", trained / "pred")
    metrics = json.loads((trained / "eval.json").read_text())
    assert list(metrics["val"]) == ["qwk", "mae", "acc"]  # narrow: dvc exp show
    # one cue word decides the rating: answering the middle class always scores QWK 0, MAE 2.4
    # (in stars: a miss at 10 costs 6); a slip of a seed's worth moves MAE more than QWK
    assert report["test_qwk"] > 0.7 and report["test_mae"] < 2.0, report
    assert {"test_within_1", "test_spearman", "test_off_by_over_2", "test_macro_f1"} <= set(report)
    assert (trained / "plots" / "confusion_test.png").is_file()
    predictions = load_predictions(trained / "pred")
    stars = np.array(STARS, dtype=float)
    mae = np.abs(stars[predictions["label"]] - stars[predictions["prediction"]])
    assert report["test_mae"] == pytest.approx(mae.mean(), abs=1e-5)  # in stars: 4 -> 10 is 6, not 1


def test_the_answer_is_the_median_of_the_distribution() -> None:
    probs = np.array([[0.40, 0.0, 0.0, 0.0, 0.60],   # most probable 10, median 10
                      [0.45, 0.10, 0.0, 0.0, 0.45],  # most probable 1 (first), median 2
                      [0.30, 0.05, 0.30, 0.05, 0.30]])
    assert tasks.decide(tasks.ORDINAL, probs).tolist() == [4, 1, 2]
    assert tasks.decide(tasks.SINGLE, probs).tolist() == [4, 0, 0]


def test_emd_charges_mass_far_from_the_true_rating_more() -> None:
    near = torch.log(torch.tensor([[0.01, 0.01, 0.96, 0.01, 0.01], [0.01, 0.96, 0.01, 0.01, 0.01]]))
    far = torch.log(torch.tensor([[0.01, 0.01, 0.96, 0.01, 0.01], [0.96, 0.01, 0.01, 0.01, 0.01]]))
    truth = torch.tensor([2, 2])
    near_loss, far_loss = (tasks.loss(tasks.ORDINAL, x, truth, ordinal_loss="emd") for x in (near, far))
    assert near_loss[0] == pytest.approx(far_loss[0]) and near_loss[0] < 0.01
    assert far_loss[1] > 1.5 * near_loss[1] > 0  # cross-entropy would charge both the same
    ce = torch.nn.functional.cross_entropy(torch.cat([near, far]), torch.cat([truth, truth]),
                                           reduction="none")
    assert ce[1] == pytest.approx(ce[3])


@pytest.fixture(scope="module")
def finetuned(data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ordinal-finetuned")
    run_train(data, out, train={"arch": "finetune", "batch_size": 16, "epochs": 8, "lr": 2e-3,
                                "ordinal_loss": "emd"})
    return out / "model"


def test_predict_serve_and_onnx_answer_the_median_rating(finetuned: Path, data: Inputs,
                                                         tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bertclf.serving.server import create_app

    md = ModelDir.read(finetuned)
    assert md.task == "ordinal" and list(md.labels) == STARS
    texts = ["the superb movie.", "an awful plot.", "the okay cast.", "the camera."]
    clf = bertclf.load(finetuned)
    probs = clf.predict_proba(texts)
    medians = [STARS[i] for i in tasks.decide(tasks.ORDINAL, probs)]
    assert [p.label for p in clf.predict(texts)] == medians
    result = CliRunner().invoke(app, ["predict", "-m", str(finetuned), *texts])
    assert result.exit_code == 0, result.output
    heads = [line.split("\t")[0] for line in result.stdout.splitlines() if not line.startswith("\t")]
    assert heads == medians
    with TestClient(create_app(clf)) as client:
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
    assert [a["label"] for a in answer] == medians and list(answer[0]["probabilities"]) == STARS
    out = tmp_path / "onnx"
    test_file = data.tokens.parent / "data" / "split" / "test.parquet"
    result = CliRunner().invoke(app, ["export", "-m", str(finetuned), "-o", str(out),
                                      "--data", str(test_file)])
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "parity.json").read_text())
    assert parity["agreement"] == 1.0 and "pytorch_qwk" in parity, parity
    assert [p.label for p in bertclf.load(out).predict(texts)] == medians


def test_tfidf_and_combine_score_ordinal_data(data: Inputs, finetuned: Path, tmp_path: Path) -> None:
    split = data.tokens.parent / "data" / "split"
    floor = tfidf_baseline(split, TfidfConfig(min_df=1), tmp_path / "tfidf")["tfidf"]
    assert set(floor) == {f"{s}_{m}" for s in ("val", "test") for m in ("qwk", "mae", "acc")}, floor
    assert floor["test_qwk"] > 0.5, floor
    evaluate(finetuned, data, tmp_path / "eval.json", tmp_path / "plots", tmp_path / "pred")
    result, curve = combine(tmp_path / "pred", tmp_path / "tfidf")
    assert {"qwk", "mae", "acc", "model_qwk", "tfidf_qwk", "model_mae", "tfidf_mae"} <= set(result["test"])
    best = max(curve, key=lambda r: (r["qwk"], -r["log_loss"]))
    assert result["lambda"] == best["lambda"]
    assert result["val"]["qwk"] >= result["val"]["model_qwk"] - 1e-9


def test_ratings_sort_as_numbers_and_names_follow_label_order(tmp_path: Path) -> None:
    numbers = write_ratings_csv(tmp_path / "stars.csv", 60)
    report = run_split_stage(tmp_path / "n", {"name": "file", "path": str(numbers), "text_column": "review",
                                              "label_column": "stars", "task": "ordinal"})
    assert list(report["splits"]["train"]["labels"]) == STARS
    rows = [("great.", "good"), ("meh.", "ok"), ("awful.", "bad")] * 10
    path = tmp_path / "named.csv"
    texts = [f"{t} {i}" for i, (t, _) in enumerate(rows)]
    pd.DataFrame({"text": texts, "label": [r for _, r in rows]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"named.csv, line 2: label 'good' is not a number.*data.label_order"):
        run_split_stage(tmp_path / "a", {"name": "file", "path": str(path), "task": "ordinal"})
    report = run_split_stage(tmp_path / "b", {"name": "file", "path": str(path), "task": "ordinal",
                                              "label_order": ["bad", "ok", "good"]})
    assert list(report["splits"]["train"]["labels"]) == ["bad", "ok", "good"]
    with pytest.raises(DataError, match=r"line 2: label 'good' is not in data.label_order"):
        run_split_stage(tmp_path / "c", {"name": "file", "path": str(path), "task": "ordinal",
                                         "label_order": ["bad", "ok"]})
    with pytest.raises(Exception, match=r"data\.label_order is for data\.task: ordinal"):
        DataConfig(task="single_label", label_order=("bad", "ok")).check()


def test_init_takes_a_rating_column_for_ordinal_and_codes_for_classes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bertclf.config import load_config
    from bertclf.data.own_file import init_file

    monkeypatch.chdir(tmp_path)
    write_ratings_csv(tmp_path / "ratings.csv", 60)
    said: list[str] = []
    shutil.copyfile(Path(__file__).parents[1] / "params.yaml", tmp_path / "params.yaml")
    init_file(tmp_path / "ratings.csv", params=tmp_path / "params.yaml", dvc=False, echo=said.append)
    assert load_config(tmp_path / "params.yaml").data.task == "ordinal", said
    assert any("ordinal ratings 1 to 10" in line and "data.task: single_label" in line for line in said), said
    frame = pd.read_csv(tmp_path / "ratings.csv").rename(columns={"stars": "category"})
    frame.to_csv(tmp_path / "codes.csv", index=False)
    said.clear()
    init_file(tmp_path / "codes.csv", params=tmp_path / "params.yaml", dvc=False, echo=said.append)
    assert load_config(tmp_path / "params.yaml").data.task == "single_label", said
    assert any("if these numbers are ratings, set data.task: ordinal" in line for line in said), said


def test_imdb_ratings_come_from_the_file_names(tmp_path: Path) -> None:
    from bertclf.data.datasets import _load_imdb

    archive = tmp_path / "aclImdb_v1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("train/pos/0_9.txt", "train/neg/1_2.txt", "train/pos/2_10.txt", "test/neg/0_4.txt",
                     "test/pos/1_7.txt"):
            body = f"review {name}".encode()
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    raw = _load_imdb(tmp_path, {"archive": archive}, DataConfig(name="imdb", task="ordinal"))
    assert sorted(raw.train["label"]) == [2, 9, 10] and sorted(raw.test["label"]) == [4, 7]
    assert raw.labels == [1, 2, 3, 4, 7, 8, 9, 10]
    polar = _load_imdb(tmp_path, {"archive": archive}, DataConfig(name="imdb"))
    assert sorted(polar.train["label"]) == ["neg", "pos", "pos"]


def test_coded_labels_get_their_names_everywhere_a_label_is_shown(tmp_path: Path) -> None:
    """AG News's classes are codes 1-4: data.label_names names them from split on, in the codes'
    order (2 before 10); a code without a name is one line naming the row."""
    path = tmp_path / "news.csv"
    rows = [(f"story {i} about {topic}", code) for i in range(12) for code, topic in
            ((1, "world"), (2, "sports"), (10, "tech"))]
    pd.DataFrame({"text": [t for t, _ in rows], "label": [c for _, c in rows]}).to_csv(path, index=False)
    names = ["1=World", "2=Sports", "10=Sci/Tech"]
    report = run_split_stage(tmp_path / "a", {"name": "file", "path": str(path), "label_names": names})
    assert list(report["splits"]["train"]["labels"]) == ["World", "Sports", "Sci/Tech"]
    ordinal = run_split_stage(tmp_path / "b", {"name": "file", "path": str(path), "task": "ordinal",
                                               "label_names": ["1=low", "2=mid", "10=high"]})
    assert list(ordinal["splits"]["train"]["labels"]) == ["low", "mid", "high"]
    with pytest.raises(DataError, match=r"news.csv, line 4: label '10' has no name in data.label_names"):
        run_split_stage(tmp_path / "c", {"name": "file", "path": str(path), "label_names": names[:2]})


def test_compare_never_ranks_ratings_with_polarity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IMDB's polarity (accuracy) and ratings (QWK) experiments are different questions: compare
    asks which, and reports each apart, the ordinal one ranked by QWK."""
    from bertclf.experiments import compare as module

    def exp(name: str, task: str, arch: str, seed: int, val: float, test: float) -> dict:
        key = tasks.HEADLINE[task]
        return {"name": name, "rev": name, "kind": "experiment", "state": "success", "inputs": {"c": "1"},
                "params": {"data": {"name": "imdb", "task": task}, "train": {"arch": arch, "seed": seed}},
                "metrics": {"eval": {"val": {key: val}, "test": {key: test}}}}

    runs = [exp("polar", "single_label", "han", 42, 0.93, 0.92),
            exp("ce", "ordinal", "finetune", 42, 0.80, 0.79), exp("emd", "ordinal", "han", 42, 0.81, 0.80)]
    monkeypatch.setattr(module, "experiments", lambda all_commits=False: runs)
    with pytest.raises(Exception, match=r"2 kinds of label \(ordinal, single_label\).*--task"):
        module.write_compare("imdb", tmp_path)
    out = module.write_compare("imdb", tmp_path, task="ordinal")
    assert out.name == "compare_imdb_ordinal.md"
    rows = module.compare_rows("imdb", "ordinal")
    assert {r["experiment"] for r in rows} == {"ce", "emd"} and {r["metric"] for r in rows} == {"qwk"}
