"""Interpolating a model's class probabilities with the TF-IDF model's (the `combine` stage).

``p = (1 - λ) · p_model + λ · p_tfidf``, with λ picked on validation from a grid of 0, 0.05, …, 1
(λ = 0 is the model alone, λ = 1 TF-IDF alone), as BertGCN interpolates BERT with its graph model.
The lexical model carries what a WordPiece encoder loses on stemmed corpora (webkb, r8, r52).
The validation accuracy picks λ; among equally accurate λ the lower validation log-loss wins,
so the choice does not hinge on one document. Test labels are read only to score the choice.
Multi-label models mix per-label probabilities; at each λ the threshold that is best on
validation decides, and validation Jaccard picks λ. Ordinal models mix class probabilities, the
median class decides, and validation QWK picks λ. Regression mixes the two models' values, and
the lowest validation RMSE picks λ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.metrics import accuracy_score, f1_score

from bertclf import tasks
from bertclf.errors import BertclfError

GRID = np.round(np.linspace(0.0, 1.0, 21), 2)
SPLITS = ("val", "test")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def load_split(predictions: Path, tfidf: Path, split: str,
               task: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, the model's probabilities and TF-IDF's of one split, aligned on document id
    (multi-label: 0/1 label rows, and a sigmoid per label; regression: the values)."""
    model = pd.read_parquet(predictions / f"{split}.parquet", columns=["id", "label", "logits"])
    lexical = pd.read_parquet(tfidf / f"{split}.parquet", columns=["id", "probabilities"])
    joined = model.merge(lexical, on="id", how="left", validate="one_to_one")
    missing = joined["probabilities"].isna()
    if missing.any():
        raise BertclfError(f"{tfidf / f'{split}.parquet'}: no TF-IDF probabilities for {int(missing.sum())} "
                           f"of the {len(model)} documents of {predictions / f'{split}.parquet'} (first: "
                           f"{joined['id'][missing].iloc[0]!r}): they come from different splits; "
                           "run dvc repro")
    labels = joined["label"].to_numpy()
    multi = len(labels) > 0 and isinstance(labels[0], np.ndarray)
    logits = np.stack(joined["logits"].to_numpy()).astype(np.float64)
    p_model = (logits[:, :1] if task == tasks.REGRESSION else 1 / (1 + np.exp(-logits)) if multi
               else softmax(logits))
    p_tfidf = np.stack(joined["probabilities"].to_numpy()).astype(np.float64)
    if p_model.shape != p_tfidf.shape:
        raise BertclfError(f"{tfidf}: {p_tfidf.shape[1]} classes against the model's {p_model.shape[1]}; "
                           "run dvc repro")
    return (np.stack(labels) if multi else labels), p_model, p_tfidf


def predictions_meta(predictions: Path) -> tuple[str, list[str]]:
    """The task and label names `evaluate` wrote with its predictions (single-label, when the table
    predates them)."""
    meta = pq.read_schema(predictions / "val.parquet").metadata or {}
    found = json.loads(meta.get(b"bertclf", b"{}"))
    return found.get("task", tasks.SINGLE), [str(n) for n in found.get("labels", [])]


def _task(labels: np.ndarray, task: str | None = None) -> str:
    return task if task is not None else tasks.MULTI if labels.ndim == 2 else tasks.SINGLE


def _score(labels: np.ndarray, p: np.ndarray, cut: float | None = None,
           task: str | None = None) -> dict[str, float]:
    """The headline score of probabilities `p` and their log-loss (multi-label: at threshold `cut`,
    the best one on these documents when None)."""
    task = _task(labels, task)
    if task == tasks.REGRESSION:
        return {"rmse": tasks.headline_score(task, labels, p)}
    if task != tasks.MULTI:
        rows = np.arange(len(labels))
        key = tasks.HEADLINE[task]
        score = (tasks.qwk(labels, tasks.decide(task, p)) if task == tasks.ORDINAL
                 else float(accuracy_score(labels, p.argmax(1))))
        return {key: score, "log_loss": float(-np.log(np.maximum(p[rows, labels], 1e-12)).mean())}
    cut = tasks.choose_thresholds(labels, p, "global")[0] if cut is None else cut
    q = np.clip(p, 1e-12, 1 - 1e-12)
    return {"jaccard": tasks.jaccard(labels, (p >= cut).astype(np.int8)), "threshold": cut,
            "log_loss": float(-(labels * np.log(q) + (1 - labels) * np.log(1 - q)).mean())}


def pick_lambda(labels: np.ndarray, p_model: np.ndarray, p_tfidf: np.ndarray,
                task: str | None = None) -> tuple[float, list[dict]]:
    """The λ of the grid with the best headline score on these (validation) documents, ties broken
    by log-loss; and the whole curve."""
    key = tasks.HEADLINE[_task(labels, task)]
    curve = [{"lambda": float(lam), **_score(labels, (1 - lam) * p_model + lam * p_tfidf, task=task)}
             for lam in GRID]
    best = max(curve, key=lambda r: (tasks.ranked(key, r[key]), -r.get("log_loss", 0.0)))
    return best["lambda"], curve


def combine(predictions: Path, tfidf: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """λ from validation, then the headline score and macro-F1 of the interpolation, the model
    alone and TF-IDF alone on validation and test; and the validation score and log-loss at every
    λ. Multi-label: each at the threshold that is best on validation."""
    task, names = predictions_meta(predictions)
    data = {split: load_split(predictions, tfidf, split, task) for split in SPLITS}
    lam, curve = pick_lambda(*data["val"], task=task)
    result: dict[str, Any] = {"lambda": lam}
    if task == tasks.MULTI:
        return _combine_multi(data, lam, result), [{k: round(v, 5) for k, v in r.items()} for r in curve]
    if task in (tasks.ORDINAL, tasks.REGRESSION):
        return _combine_scored(task, data, lam, names, result), [{k: round(v, 5) for k, v in r.items()}
                                                                 for r in curve]
    for split, (labels, p_model, p_tfidf) in data.items():
        mixed = ((1 - lam) * p_model + lam * p_tfidf).argmax(1)
        result[split] = {
            "acc": round(float(accuracy_score(labels, mixed)), 5),
            "macro_f1": round(float(f1_score(labels, mixed, average="macro")), 5),
            "model_acc": round(float(accuracy_score(labels, p_model.argmax(1))), 5),
            "tfidf_acc": round(float(accuracy_score(labels, p_tfidf.argmax(1))), 5),
        }
    return result, [{k: round(v, 5) for k, v in r.items()} for r in curve]


def _combine_scored(task: str, data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], lam: float,
                    names: list[str], result: dict[str, Any]) -> dict[str, Any]:
    """The task's scores of the mix at λ (ordinal: QWK, MAE, accuracy of the median class;
    regression: RMSE, MAE, R² of the mixed values), and its headline and MAE for each part alone."""
    for split, (labels, p_model, p_tfidf) in data.items():
        parts = {"": (1 - lam) * p_model + lam * p_tfidf, "model_": p_model, "tfidf_": p_tfidf}
        scored = {name: tasks.scores(task, labels, tasks.decide(task, p), names) for name, p in parts.items()}
        result[split] = {k: scored[""][k] for k in tasks.METRICS[task]}
        result[split].update({f"{name}{k}": scored[name][k]
                              for name in ("model_", "tfidf_") for k in (tasks.HEADLINE[task], "mae")})
    return result


def _combine_multi(data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], lam: float,
                   result: dict[str, Any]) -> dict[str, Any]:
    """The mix at λ and each part alone, every one at its own threshold chosen on validation."""
    labels, p_model, p_tfidf = data["val"]
    parts = {"": (1 - lam) * p_model + lam * p_tfidf, "model_": p_model, "tfidf_": p_tfidf}
    cuts = {name: _score(labels, p)["threshold"] for name, p in parts.items()}
    result["threshold"] = cuts[""]
    for split, (labels, p_model, p_tfidf) in data.items():
        mixed = {"": (1 - lam) * p_model + lam * p_tfidf, "model_": p_model, "tfidf_": p_tfidf}
        result[split] = {f"{name}jaccard": round(_score(labels, p, cuts[name])["jaccard"], 5)
                         for name, p in mixed.items()}
        result[split]["macro_f1"] = round(float(f1_score(labels, mixed[""] >= cuts[""], average="macro",
                                                         zero_division=0.0)), 5)
    return result


def headline(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The scores `dvc exp show` lists (as ``tfidf.json``'s): λ and the mix's headline score (accuracy,
    Jaccard); the parts alone are in ``eval.json`` and ``tfidf.json`` already."""
    key = tasks.headline_in(result["val"])
    return {"combine": {"lambda": result["lambda"], f"val_{key}": result["val"][key],
                        f"test_{key}": result["test"][key]}}
