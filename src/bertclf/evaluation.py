"""Evaluate the saved best model on validation and test.

Scores go to the stage's metrics file through dvclive (`bertclf.live`); its plot data (the test
confusion matrix, per-class F1, validation and test accuracy) under ``plots/eval/``, beside a
PNG of the confusion matrix. The per-document predictions of both splits, logits included, go to
``data/predictions/{val,test}.parquet`` (for error analysis, and for combining models).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from bertclf.atomic import atomic_path
from bertclf.data.stores import Inputs
from bertclf.inference import predict_logits, resolve_device
from bertclf.live import StageLive
from bertclf.model_dir import ModelDir
from bertclf.plotting import plot_confusion


def evaluate(model_dir: Path, inputs: Inputs, metrics: Path, plots: Path, predictions: Path,
             batch_size: int = 256, device: str = "auto") -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores, confusion matrix and throughput of the saved model.

    Returns the whole report; the scores are also the stage's metrics file.
    """
    md = ModelDir.read(model_dir)
    arch, labels = md.family, list(md.labels)
    torch_device = resolve_device(device)
    model = md.load_model().to(torch_device)
    live = StageLive(metrics, plots)
    report: dict[str, Any] = {"arch": arch.name}
    tables = {}
    for split in ("val", "test"):
        store = inputs.open(arch.reads, split)
        t0 = time.perf_counter()
        logits = predict_logits(model, store, lambda st, idx: arch.batch(st, idx, md.knobs, md.dims),
                                batch_size, torch_device, desc=f"evaluate {split}")
        seconds = time.perf_counter() - t0
        pred = logits.argmax(1)
        tables[split] = prediction_table(store, logits, labels)
        acc = round(float(accuracy_score(store.labels, pred)), 5)
        f1 = round(float(f1_score(store.labels, pred, average="macro", labels=range(len(labels)),
                                  zero_division=0)), 5)
        report[f"{split}_acc"], report[f"{split}_macro_f1"] = acc, f1
        live.log_metric(f"{split}/acc", acc, plot=False)
        live.log_metric(f"{split}/macro_f1", f1, plot=False)
        if split == "test":
            report.update(score_test(store, pred, labels, arch.name, acc, live, plots))
            # the model alone, from what it reads: precomputed token vectors or token ids
            report["test_docs_per_s"] = round(len(store) / seconds, 1)
    report["test_subsampled"] = md.test_subsampled
    report["test_rows_full"] = md.test_rows_full if md.test_rows_full is not None else report["test_rows"]
    live.summary["test"]["subsampled"] = report["test_subsampled"]
    live.log_plot("accuracy", [{"split": "validation", "accuracy": report["val_acc"]},
                               {"split": "test", "accuracy": report["test_acc"]}], x="accuracy", y="split")
    with atomic_path(predictions, is_dir=True) as tmp:
        for split, table in tables.items():
            pq.write_table(table, tmp / f"{split}.parquet")
    live.end()
    return report


def prediction_table(store: Any, logits: np.ndarray, labels: list[str]) -> pa.Table:
    """One row per document: id, the actual and predicted label (names and indices), the logits."""
    pred = logits.argmax(1)
    return pa.table({
        "id": pa.array([str(i) for i in store.ids]),
        "actual": pa.array([labels[a] for a in store.labels]),
        "predicted": pa.array([labels[b] for b in pred]),
        "label": pa.array(store.labels.astype(np.int64)),
        "prediction": pa.array(pred.astype(np.int64)),
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.astype(np.float32).ravel()),
                                                    logits.shape[1]),
    })


def score_test(store: Any, pred: np.ndarray, labels: list[str], arch: str, acc: float, live: StageLive,
                plots: Path) -> dict[str, Any]:
    """Per-class scores and the confusion matrix (dvclive data and a PNG)."""
    p, r, f, support = precision_recall_fscore_support(store.labels, pred, labels=range(len(labels)),
                                                       zero_division=0)
    per_class = {name: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                        "f1": round(float(f[i]), 4), "support": int(support[i])}
                 for i, name in enumerate(labels)}
    live.log_plot("per_class_f1", [{"class": name, "f1": scores["f1"], "support": scores["support"]}
                                   for name, scores in per_class.items()], x="f1", y="class")
    actual = [labels[a] for a in store.labels]
    predicted = [labels[b] for b in pred]
    live.log_sklearn_plot("confusion_matrix", actual, predicted, name="confusion_test.json")
    matrix = confusion_matrix(store.labels, pred, labels=range(len(labels)))
    plot_confusion(matrix, labels, plots / "confusion_test.png", title=f"{arch} on test (acc {acc:.3f})")
    return {"test_per_class": per_class, "test_rows": len(store)}


def load_predictions(predictions: Path, split: str = "test") -> pd.DataFrame:
    """The predictions `evaluate` saved for `split`: id, actual, predicted, label, prediction, logits."""
    return pq.read_table(Path(predictions) / f"{split}.parquet").to_pandas()
