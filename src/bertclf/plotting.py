"""Tables (CSV, safe to open in a spreadsheet) and figures (PNG, matplotlib)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.atomic import atomic_path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection rule


def csv_cell(value: Any) -> Any:
    """A text that a spreadsheet would run as a formula (``=cmd|' /C calc'!A0``), made inert with a
    leading quote; numbers and other texts as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeCsvWriter:
    """`csv.DictWriter` whose header and text cells go through `csv_cell`."""

    def __init__(self, f: Any, fields: Sequence[str], delimiter: str = ","):
        self.fields = list(fields)
        self.writer = csv.writer(f, delimiter=delimiter)

    def writeheader(self) -> None:
        self.writer.writerow([csv_cell(name) for name in self.fields])

    def writerow(self, row: dict[str, Any]) -> None:
        self.writer.writerow([csv_cell(row.get(name, "")) for name in self.fields])


def write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> None:
    """Write rows as CSV (header from `fields` or the first row), atomically and formula-safe."""
    fields = list(fields or (rows[0].keys() if rows else []))
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = SafeCsvWriter(f, fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write `fig` as a PNG (atomically) and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    pyplot().close(fig)


def plot_loss(history: Sequence[dict[str, float]], path: Path, title: str) -> None:
    """Train and validation loss per epoch, validation accuracy on a second axis."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_title(title)
    acc = ax.twinx()
    key = next(k for k in history[0] if k.startswith("val_") and k != "val_loss")  # the task's headline
    name = {"val_acc": "accuracy"}.get(key, key.removeprefix("val_"))
    acc.plot(epochs, [h[key] for h in history], "^--", color="tab:green",
             label="validation acc" if key == "val_acc" else f"validation {name}")
    acc.set_ylabel(f"validation {name}")
    lines = ax.get_legend_handles_labels()[0] + acc.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right")
    save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    """A confusion matrix (rows: actual, columns: predicted) with counts in the cells."""
    plt = pyplot()
    n = len(labels)
    size = min(4 + 0.35 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    if n <= 30:
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    save_figure(fig, path)


def plot_precision_recall(labels: np.ndarray, probs: np.ndarray, names: Sequence[str], path: Path,
                          title: str) -> None:
    """One precision-recall curve per label of a multi-label model (0/1 `labels`, `probs` its
    probabilities), with its average precision in the legend."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for j, name in enumerate(names):
        if labels[:, j].any():
            precision, recall, _ = precision_recall_curve(labels[:, j], probs[:, j])
            ap = average_precision_score(labels[:, j], probs[:, j])
            ax.plot(recall, precision, label=f"{name} (AP {ap:.2f})", linewidth=1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    save_figure(fig, path)


def plot_predicted_vs_true(actual: np.ndarray, predicted: np.ndarray, path: Path, title: str) -> None:
    """A regression model's predicted values against the true ones, with the diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(actual, predicted, s=4, alpha=0.4)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="gray", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    save_figure(fig, path)
