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
- ``ordinal``: one class per document, the classes in order (ratings, stars); a softmax over the
  classes trained with cross-entropy or with the squared earth mover's distance between the
  predicted and the true cumulative distributions (``train.ordinal_loss: emd``, Hou et al. 2016,
  which charges a prediction by how far its mass lies from the true rating); the decision is the
  median of the predicted distribution (the class that minimizes the expected absolute error,
  where the most probable class minimizes only the error rate); the headline score is quadratic
  weighted kappa; MAE, accuracy within one class and Spearman's rho are measured in the labels' own
  units when they are numbers (IMDB's 1-4 and 7-10), else in class steps.
- ``regression``: one number per document; one output trained with mean squared error against the
  target standardized by the training split's mean and standard deviation (so a target in the
  thousands trains as one near 0 does); the model saved folds them back into its output layer,
  so what it outputs is the value itself; the headline score is RMSE, lower is better.

Everything that trains, scores or decides asks this module; none of them names a task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

SINGLE, MULTI, ORDINAL, REGRESSION = "single_label", "multi_label", "ordinal", "regression"
TASKS = (SINGLE, MULTI, ORDINAL, REGRESSION)
# what early stopping, the best epoch, study and compare select by
HEADLINE = {SINGLE: "acc", MULTI: "jaccard", ORDINAL: "qwk", REGRESSION: "rmse"}
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
NAMES = {"acc": "accuracy", "jaccard": "Jaccard accuracy", "qwk": "quadratic weighted kappa",
         "rmse": "RMSE"}  # in words
METRICS = {SINGLE: ("acc", "macro_f1"), MULTI: ("jaccard", "micro_f1", "macro_f1"),
           ORDINAL: ("qwk", "mae", "acc"), REGRESSION: ("rmse", "mae", "r2")}  # metrics/eval.json
Scale = tuple[float, float]  # regression: the training targets' mean and standard deviation


def ranked(metric: str, score: float) -> float:
    """`score` on `metric` as a number to maximize: itself, or negated where lower is better (RMSE)."""
    return -score if metric in LOWER_IS_BETTER else score


def better(metric: str, score: float, than: float | None) -> bool:
    """Whether `score` beats `than` (None: nothing yet) on `metric` (RMSE: lower is better)."""
    return than is None or ranked(metric, score) > ranked(metric, than)


def target_scale(meta: Mapping[str, Any]) -> Scale | None:
    """Regression: the (mean, standard deviation) of the training targets `split` recorded."""
    target = meta.get("target")
    return None if not target else (float(target["mean"]), float(target["std"]))


def headline_in(scores: Mapping[str, Any], prefix: str = "") -> str:
    """Which task's headline score a dict of scores holds (``val_acc``, ``val_jaccard``, …: the key
    without `prefix`), for code that reads a stage's scores without the task at hand."""
    # accuracy last: an ordinal task's scores hold accuracy too
    order = (MULTI, ORDINAL, REGRESSION, SINGLE)
    return next((HEADLINE[t] for t in order if f"{prefix}{HEADLINE[t]}" in scores),
                HEADLINE[SINGLE])
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # thresholds tried on validation


def task_of(meta: Mapping[str, Any]) -> str:
    """The task the data was split for (the split's labels.json, carried into every meta.json)."""
    return str(meta.get("task", SINGLE))


def loss(task: str, logits: torch.Tensor, labels: torch.Tensor,
         weights: torch.Tensor | None = None, ordinal_loss: str = "cross_entropy",
         scale: Scale | None = None) -> torch.Tensor:
    """Per-document loss ``[B]``: cross-entropy (with class weights), the mean over labels of
    binary cross-entropy (with positive weights), (ordinal, ``emd``) the squared earth mover's
    distance (with the true class's weight), or (regression) the squared error of the output
    against the target standardized by `scale`."""
    if task == REGRESSION:
        mean, std = scale or (0.0, 1.0)
        return (logits[:, 0] - (labels.to(logits.dtype) - mean) / std) ** 2
    if task == MULTI:
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weights,
                                                              reduction="none").mean(1)
    if task == ORDINAL and ordinal_loss == "emd":
        return emd_loss(logits, labels) * (1.0 if weights is None else weights[labels])
    return nn.functional.cross_entropy(logits, labels, weight=weights, reduction="none")


def emd_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared EMD between the softmax's cumulative distribution and the true one's (a step at the
    true class), summed over the classes' cut points: 0 only for all mass on the true class, and
    mass k classes away costs more than mass 1 class away."""
    cdf = torch.softmax(logits, dim=1).cumsum(1)[:, :-1]
    cuts = torch.arange(logits.shape[1] - 1, device=labels.device)
    truth = (cuts[None, :] >= labels[:, None]).to(cdf.dtype)
    return ((cdf - truth) ** 2).sum(1)


def mean_loss(task: str, logits: torch.Tensor, labels: torch.Tensor,
              ordinal_loss: str = "cross_entropy", scale: Scale | None = None) -> float:
    """The mean loss over documents (validation loss), unweighted."""
    return float(loss(task, logits, labels, None, ordinal_loss, scale).mean())


def loss_weight(task: str, labels: torch.Tensor, weights: torch.Tensor | None) -> float:
    """What a batch's summed per-document loss is divided by: its size, or (single-label and
    ordinal, class weights) its summed class weights, as cross-entropy's weighted mean does."""
    if task in (SINGLE, ORDINAL) and weights is not None:
        return float(weights[labels].sum())
    return float(len(labels))


def class_weights(task: str, labels: np.ndarray, num_labels: int, mode: str) -> torch.Tensor | None:
    """``balanced``: per class the inverse of its frequency, or per label negatives / positives."""
    if mode != "balanced" or task == REGRESSION:  # a value has no class to weigh
        return None
    if task == MULTI:
        positives = labels.sum(0).astype(np.float64)
        return torch.tensor((len(labels) - positives) / np.maximum(positives, 1), dtype=torch.float32)
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.ones(num_labels)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.tensor(weights, dtype=torch.float32)


def probabilities(task: str, logits: np.ndarray, scale: Scale | None = None) -> np.ndarray:
    """Softmax over classes, a sigmoid per label, or (regression) the values ``[N, 1]``: the output
    unstandardized by `scale` (a saved model's output is the value already)."""
    if task == REGRESSION:
        mean, std = scale or (0.0, 1.0)
        return np.asarray(logits, dtype=np.float64)[:, :1] * std + mean
    scores = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    return (torch.sigmoid(scores) if task == MULTI else torch.softmax(scores, dim=1)).numpy()


def decide(task: str, probs: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """The predictions: class indices ``[N]`` (ordinal: each distribution's median), or 0/1 rows
    ``[N, labels]`` (a label where its probability reaches its threshold; 0.5 without thresholds)."""
    if task == MULTI:
        cut = np.asarray(thresholds if thresholds is not None else [0.5] * probs.shape[1], dtype=np.float32)
        return (probs >= cut).astype(np.int8)
    if task == REGRESSION:  # the value
        return np.asarray(probs)[:, 0]
    if task == ORDINAL:  # the first class where the cumulative probability reaches one half
        cdf = np.cumsum(np.asarray(probs, dtype=np.float64), axis=1)
        return np.minimum((cdf < 0.5 * cdf[:, -1:]).sum(1), probs.shape[1] - 1)
    return probs.argmax(1)


def jaccard(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Jaccard accuracy over documents; a document with no gold and no predicted label counts 1."""
    from sklearn.metrics import jaccard_score

    return float(jaccard_score(labels, predicted, average="samples", zero_division=1.0))


def decide_logits(task: str, logits: np.ndarray, thresholds: Sequence[float] | None = None,
                  scale: Scale | None = None) -> np.ndarray:
    """`decide` on raw scores: the largest logit is the most probable class, with no softmax."""
    if task == SINGLE:
        return logits.argmax(1)
    return decide(task, probabilities(task, logits, scale), thresholds)


def qwk(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Quadratic weighted kappa over class indices (1 perfect, 0 chance)."""
    from sklearn.metrics import cohen_kappa_score

    if len(np.union1d(labels, predicted)) < 2:  # one class in all: kappa is undefined, agreement total
        return 1.0
    return float(cohen_kappa_score(labels, predicted, weights="quadratic"))


def headline_score(task: str, labels: np.ndarray, logits: np.ndarray,
                   thresholds: Sequence[float] | None = None, scale: Scale | None = None) -> float:
    """The task's headline score of `logits` against `labels` (accuracy, Jaccard, QWK, RMSE)."""
    predicted = decide_logits(task, logits, thresholds, scale)
    if task == REGRESSION:
        return float(np.sqrt(np.mean((predicted - labels) ** 2)))
    if task == MULTI:
        return jaccard(labels, predicted)
    return qwk(labels, predicted) if task == ORDINAL else float((predicted == labels).mean())


def ordinal_values(names: Sequence[str]) -> np.ndarray:
    """The classes' values, for distances between ratings: the names as numbers when every one is,
    else the class steps 0, 1, 2, …"""
    try:
        return np.array([float(name) for name in names])
    except ValueError:
        return np.arange(len(names), dtype=np.float64)


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
    elif task == REGRESSION:
        from scipy.stats import spearmanr
        from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

        spread = np.std(labels) and np.std(predicted)
        out = {"rmse": float(root_mean_squared_error(labels, predicted)),
               "mae": float(mean_absolute_error(labels, predicted)),
               "r2": float(r2_score(labels, predicted)) if np.std(labels) else 0.0,
               "spearman": float(spearmanr(labels, predicted).statistic) if spread else 0.0}
        return {k: round(v, 5) for k, v in out.items()}
    elif task == ORDINAL:
        from scipy.stats import spearmanr

        values = ordinal_values(names)
        gold, guess = values[labels], values[predicted]
        rho = spearmanr(gold, guess).statistic if np.std(gold) and np.std(guess) else 0.0
        out = {"qwk": qwk(labels, predicted), "mae": float(np.abs(gold - guess).mean()),
               "acc": float(accuracy_score(labels, predicted)),
               "within_1": float((np.abs(labels - predicted) <= 1).mean()),  # one class away at most
               "off_by_over_2": float((np.abs(gold - guess) > 2).mean()),  # in the labels' units
               "spearman": float(rho),
               "macro_f1": float(f1_score(labels, predicted, average="macro", labels=order, zero_division=0))}
        p, r, f, support = precision_recall_fscore_support(labels, predicted, labels=order, zero_division=0)
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


def fold_scale(head: nn.Linear, scale: Scale) -> None:
    """Regression: make the output layer `head`, trained on standardized targets, output the value
    (``y = z * std + mean``), so that the saved model needs no scale to be read."""
    mean, std = scale
    with torch.no_grad():
        head.weight.mul_(std)
        if head.bias is None:
            raise ValueError("a regression head needs a bias to hold the targets' mean")
        head.bias.mul_(std).add_(mean)
