"""`combine`: a model's probabilities interpolated with TF-IDF's, the weight picked on validation only.

Two synthetic "models" that are each right on a different part of the documents: the
interpolation must beat both on validation, its λ must not move when the test labels change,
and documents that do not line up are one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertclf.cli_support import run_stage
from bertclf.combine import combine, pick_lambda

N, K = 200, 3


def write(root: Path, seed: int, test_labels: np.ndarray | None = None) -> tuple[Path, Path]:
    """data/predictions (logits) and data/tfidf (probabilities) for val and test: the model is
    confidently right on 60 % of documents and unsure elsewhere; TF-IDF is mildly right on the
    first 80 %, so together they are right more often than either."""
    rng = np.random.default_rng(seed)
    preds, tfidf = root / "predictions", root / "tfidf"
    preds.mkdir(parents=True, exist_ok=True)
    tfidf.mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        labels = rng.integers(0, K, N) if split == "val" or test_labels is None else test_labels
        logits = rng.normal(0, 0.3, (N, K))
        model_right = rng.random(N) < 0.6
        logits[model_right, labels[model_right]] += 4.0
        proba = np.full((N, K), 1.0 / K)
        lexical_right = np.arange(N) < int(0.8 * N)
        proba[lexical_right] = 0.2
        proba[lexical_right, labels[lexical_right]] = 0.6
        proba[~lexical_right, (labels[~lexical_right] + 1) % K] = 0.5
        proba /= proba.sum(1, keepdims=True)
        ids = [f"{split}{i}" for i in range(N)]
        order = rng.permutation(N)  # the two files need not list documents in the same order
        pd.DataFrame({"id": ids, "label": labels, "logits": list(logits.astype(np.float32))}).to_parquet(
            preds / f"{split}.parquet")
        pd.DataFrame({"id": np.array(ids)[order], "probabilities": list(proba[order].astype(np.float32))}
                     ).to_parquet(tfidf / f"{split}.parquet")
    return preds, tfidf


def test_the_interpolation_beats_both_parts_on_validation_and_reports_all_three(tmp_path: Path) -> None:
    result, curve = combine(*write(tmp_path, seed=0))
    assert 0 < result["lambda"] < 1
    for split in ("val", "test"):
        assert result[split]["acc"] > max(result[split]["model_acc"], result[split]["tfidf_acc"]), result
    ends = {point["lambda"]: point["acc"] for point in curve}
    assert ends[0.0] == result["val"]["model_acc"] and ends[1.0] == result["val"]["tfidf_acc"]
    assert result["val"]["acc"] == max(ends.values())


def test_lambda_is_chosen_on_validation_alone(tmp_path: Path) -> None:
    first, _ = combine(*write(tmp_path / "a", seed=1))
    flipped = np.random.default_rng(99).integers(0, K, N)
    second, _ = combine(*write(tmp_path / "b", seed=1, test_labels=flipped))
    assert first["lambda"] == second["lambda"] and first["val"] == second["val"]
    assert first["test"] != second["test"]


def test_ties_in_accuracy_go_to_the_lower_log_loss() -> None:
    labels = np.array([0, 1])
    p_model = np.array([[0.9, 0.1], [0.2, 0.8]])  # right and confident: every λ is 100 % accurate
    p_tfidf = np.array([[0.6, 0.4], [0.4, 0.6]])
    lam, _ = pick_lambda(labels, p_model, p_tfidf)
    assert lam == 0.0


def test_documents_that_do_not_line_up_are_one_clear_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    preds, tfidf = write(tmp_path, seed=2)
    frame = pd.read_parquet(tfidf / "val.parquet")
    frame["id"] = "other" + frame["id"]
    frame.to_parquet(tfidf / "val.parquet")
    out = tmp_path / "combine.json"

    def stage() -> None:
        combine(preds, tfidf)
        out.write_text(json.dumps({}))

    with pytest.raises(SystemExit):
        run_stage(stage)
    err = capsys.readouterr().err
    assert "tfidf/val.parquet: no TF-IDF probabilities for 200 of the 200 documents" in err
    assert "run dvc repro" in err and "Traceback" not in err and not out.exists()
