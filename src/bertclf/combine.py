"""Interpolating a model's class probabilities with the TF-IDF model's (the `combine` stage).

``p = (1 - λ) · p_model + λ · p_tfidf``, with λ picked on validation from a grid of 0, 0.05, …, 1
(λ = 0 is the model alone, λ = 1 TF-IDF alone), as BertGCN interpolates BERT with its graph model.
The lexical model carries what a WordPiece encoder loses on stemmed corpora (webkb, r8, r52).
The validation accuracy picks λ; among equally accurate λ the lower validation log-loss wins,
so the choice does not hinge on one document. Test labels are read only to score the choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from bertclf.errors import BertclfError

GRID = np.round(np.linspace(0.0, 1.0, 21), 2)
SPLITS = ("val", "test")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_split(predictions: Path, tfidf: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, the model's probabilities and TF-IDF's of one split, aligned on document id."""
    model = pd.read_parquet(predictions / f"{split}.parquet", columns=["id", "label", "logits"])
    lexical = pd.read_parquet(tfidf / f"{split}.parquet", columns=["id", "probabilities"])
    joined = model.merge(lexical, on="id", how="left", validate="one_to_one")
    missing = joined["probabilities"].isna()
    if missing.any():
        raise BertclfError(f"{tfidf / f'{split}.parquet'}: no TF-IDF probabilities for {int(missing.sum())} "
                           f"of the {len(model)} documents of {predictions / f'{split}.parquet'} (first: "
                           f"{joined['id'][missing].iloc[0]!r}): they come from different splits; "
                           "run dvc repro")
    p_model = softmax(np.stack(joined["logits"].to_numpy()).astype(np.float64))
    p_tfidf = np.stack(joined["probabilities"].to_numpy()).astype(np.float64)
    if p_model.shape != p_tfidf.shape:
        raise BertclfError(f"{tfidf}: {p_tfidf.shape[1]} classes against the model's {p_model.shape[1]}; "
                           "run dvc repro")
    return joined["label"].to_numpy(), p_model, p_tfidf


def pick_lambda(labels: np.ndarray, p_model: np.ndarray, p_tfidf: np.ndarray) -> tuple[float, list[dict]]:
    """The λ of the grid with the best accuracy on these (validation) documents, ties broken by
    log-loss; and the whole curve."""
    rows = np.arange(len(labels))
    curve = []
    for lam in GRID:
        p = (1 - lam) * p_model + lam * p_tfidf
        curve.append({"lambda": float(lam), "acc": float(accuracy_score(labels, p.argmax(1))),
                      "log_loss": float(-np.log(np.maximum(p[rows, labels], 1e-12)).mean())})
    best = max(curve, key=lambda r: (r["acc"], -r["log_loss"]))
    return best["lambda"], curve


def combine(predictions: Path, tfidf: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """λ from validation, then accuracy and macro-F1 of the interpolation, the model alone and
    TF-IDF alone on validation and test; and the validation accuracy and log-loss at every λ."""
    data = {split: load_split(predictions, tfidf, split) for split in SPLITS}
    lam, curve = pick_lambda(*data["val"])
    result: dict[str, Any] = {"lambda": lam}
    for split, (labels, p_model, p_tfidf) in data.items():
        mixed = ((1 - lam) * p_model + lam * p_tfidf).argmax(1)
        result[split] = {
            "acc": round(float(accuracy_score(labels, mixed)), 5),
            "macro_f1": round(float(f1_score(labels, mixed, average="macro")), 5),
            "model_acc": round(float(accuracy_score(labels, p_model.argmax(1))), 5),
            "tfidf_acc": round(float(accuracy_score(labels, p_tfidf.argmax(1))), 5),
        }
    return result, [{k: round(v, 5) for k, v in r.items()} for r in curve]


def headline(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The scores `dvc exp show` lists (as ``tfidf.json``'s): λ and the mix's accuracy; the parts
    alone are in ``eval.json`` and ``tfidf.json`` already."""
    return {"combine": {"lambda": result["lambda"], "val_acc": result["val"]["acc"],
                        "test_acc": result["test"]["acc"]}}
