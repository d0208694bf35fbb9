"""The kinds of label (`data.task`) and what each means for training, decisions and scores.

- ``single_label``: one class per document; softmax and cross-entropy; the decision is the most
  probable class; the headline score is accuracy.
- ``multi_label``: any number of labels per document (labels are 0/1 rows); a sigmoid per label
  and binary cross-entropy (``train.class_weights: balanced`` weighs each label's positives by
  its negatives / positives, BCE's ``pos_weight``); a label is predicted when its probability
  reaches its threshold, chosen on validation after training (one for all labels, or one per
  label: ``train.thresholds``); the headline score is Jaccard accuracy (per document
  |predicted ∩ gold| / |predicted ∪ gold|, a document with neither counting 1: SemEval-2018
  E-c's official metric).

Everything that trains, scores or decides asks this module; none of them names a task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

SINGLE, MULTI = "single_label", "multi_label"
TASKS = (SINGLE, MULTI)
HEADLINE = {SINGLE: "acc", MULTI: "jaccard"}  # what early stopping, best epoch and compare select by
METRICS = {SINGLE: ("acc", "macro_f1"), MULTI: ("jaccard", "micro_f1", "macro_f1")}  # metrics/eval.json
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # thresholds tried on validation


def task_of(meta: Mapping[str, Any]) -> str:
    """The task the data was split for (the split's labels.json, carried into every meta.json)."""
    return str(meta.get("task", SINGLE))


def loss(task: str, logits: torch.Tensor, labels: torch.Tensor,
         weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-document loss ``[B]``: cross-entropy (with class weights), or the mean over labels of
    binary cross-entropy (with positive weights)."""
    if task == MULTI:
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights,
                                                              reduction="none").mean(1)
    return nn.functional.cross_entropy(logits, labels, weight=weights, reduction="none")


def mean_loss(task: str, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean loss over documents (validation loss), unweighted."""
    if task == MULTI:
        return float(nn.functional.binary_cross_entropy_with_logits(logits, labels.float()))
    return float(nn.functional.cross_entropy(logits, labels))


def loss_weight(task: str, labels: torch.Tensor, weights: torch.Tensor | None) -> float:
    """What a batch's summed per-document loss is divided by: its size, or (single-label, class
    weights) its summed class weights, as cross-entropy's weighted mean does."""
    if task == SINGLE and weights is not None:
        return float(weights[labels].sum())
    return float(len(labels))


def class_weights(task: str, labels: np.ndarray, num_labels: int, mode: str) -> torch.Tensor | None:
    """``balanced``: per class the inverse of its frequency, or per label negatives / positives."""
    if mode != "balanced":
        return None
    if task == MULTI:
        positives = labels.sum(0).astype(np.float64)
        return torch.tensor((len(labels) - positives) / np.maximum(positives, 1), dtype=torch.float32)
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.ones(num_labels)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.tensor(weights, dtype=torch.float32)


def probabilities(task: str, logits: np.ndarray) -> np.ndarray:
    """Softmax over classes, or a sigmoid per label."""
    scores = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    return (torch.sigmoid(scores) if task == MULTI else torch.softmax(scores, dim=1)).numpy()


def decide(task: str, probs: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """The predictions: class indices ``[N]``, or 0/1 rows ``[N, labels]`` (a label where its
    probability reaches its threshold; 0.5 without thresholds)."""
    if task == MULTI:
        cut = np.asarray(thresholds if thresholds is not None else [0.5] * probs.shape[1], dtype=np.float32)
        return (probs >= cut).astype(np.int8)
    return probs.argmax(1)


def jaccard(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Jaccard accuracy over documents; a document with no gold and no predicted label counts 1."""
    from sklearn.metrics import jaccard_score

    return float(jaccard_score(labels, predicted, average="samples", zero_division=1.0))


def decide_logits(task: str, logits: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """`decide` on raw scores: the largest logit is the most probable class, with no softmax."""
    return decide(task, probabilities(task, logits), thresholds) if task == MULTI else logits.argmax(1)


def headline_score(task: str, labels: np.ndarray, logits: np.ndarray,
                   thresholds: Sequence[float] | None = None) -> float:
    """The task's headline score of `logits` against `labels` (accuracy, Jaccard)."""
    predicted = decide_logits(task, logits, thresholds)
    return jaccard(labels, predicted) if task == MULTI else float((predicted == labels).mean())


def choose_thresholds(labels: np.ndarray, probs: np.ndarray, mode: str) -> list[float]:
    """Multi-label thresholds from validation: the one that maximizes Jaccard for all labels
    (``global``), then (``per_label``) each label's own, the one that maximizes its F1."""
    from sklearn.metrics import f1_score

    best = max(GRID, key=lambda t: (jaccard(labels, (probs >= t).astype(np.int8)), -abs(t - 0.5)))
    cuts = [float(best)] * labels.shape[1]
    if mode == "per_label":
        for j in range(labels.shape[1]):
            scored = [(f1_score(labels[:, j], probs[:, j] >= t, zero_division=0.0), -abs(t - best), t)
                      for t in GRID]
            cuts[j] = float(max(scored)[2])
    return cuts


def scores(task: str, labels: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """The task's scores (scikit-learn), rounded: the headline and the others for metrics, and
    per-class (or per-label) precision, recall, F1 and support."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

    order = range(len(names))
    if task == MULTI:
        out: dict[str, Any] = {
            "jaccard": jaccard(labels, predicted),
            "micro_f1": float(f1_score(labels, predicted, average="micro", zero_division=0.0)),
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0.0)),
            "subset_acc": float(accuracy_score(labels, predicted)),
            "hamming_loss": float(hamming_loss(labels, predicted)),
        }
        p, r, f, support = precision_recall_fscore_support(labels, predicted, zero_division=0.0)
    else:
        out = {"acc": float(accuracy_score(labels, predicted)),
               "macro_f1": float(f1_score(labels, predicted, average="macro", labels=order,
                                          zero_division=0))}
        p, r, f, support = precision_recall_fscore_support(labels, predicted, labels=order, zero_division=0)
    out = {k: round(v, 5) for k, v in out.items()}
    out["per_class"] = {name: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                               "f1": round(float(f[i]), 4), "support": int(support[i])}
                        for i, name in enumerate(names)}
    return out
