"""Evaluate the saved best model on validation and test.

Scores go to the stage's metrics file through dvclive (`bertclf.live`); its plot data (the test
confusion matrix, per-class F1, validation and test accuracy) under ``plots/eval/``, beside a
PNG of the confusion matrix. The per-document predictions of both splits, logits included, go to
``data/predictions/{val,test}.parquet`` (for error analysis, and for combining models).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from sklearn.metrics import confusion_matrix

from bertclf import tasks
from bertclf.atomic import atomic_path
from bertclf.data.stores import Inputs
from bertclf.distributed import init_distributed
from bertclf.inference import predict_logits, resolve_device
from bertclf.live import StageLogger, open_live
from bertclf.model_dir import ModelDir
from bertclf.plotting import plot_confusion, plot_precision_recall, plot_predicted_vs_true


def evaluate(model_dir: Path, inputs: Inputs, metrics: Path, plots: Path, predictions: Path,
             batch_size: int = 256, device: str = "auto") -> dict[str, Any]:
    """The task's scores (accuracy and macro-F1; multi-label: Jaccard, micro- and macro-F1 and
    more), per-class scores, plots and throughput of the saved model.

    Returns the whole report; the headline scores are also the stage's metrics file. Under
    torchrun each process scores its share of the documents and rank 0 writes (the others return
    an empty report).
    """
    md = ModelDir.read(model_dir)
    arch, labels, task = md.family, list(md.labels), md.task
    ddp = init_distributed()
    torch_device = ddp.device(resolve_device(device))
    model = md.load_model().to(torch_device)
    report: dict[str, Any] = {"arch": arch.name, "device": str(torch_device), "processes": ddp.world}
    scored = {}
    for split in ("val", "test"):
        store = inputs.open(arch.reads, split)
        t0 = time.perf_counter()
        logits = predict_logits(model, store, lambda st, idx: arch.batch(st, idx, md.knobs, md.dims),
                                batch_size, torch_device, md.dims.num_labels,
                                subset=np.arange(len(store))[ddp.rank::ddp.world],
                                desc=f"evaluate {split}" if ddp.is_main else None)
        scored[split] = store, ddp.all_sum(torch.from_numpy(logits)).numpy(), time.perf_counter() - t0
    if not ddp.is_main:
        return {}
    live = open_live(metrics, plots)
    tables = {}
    for split, (store, logits, seconds) in scored.items():
        pred = tasks.decide_logits(task, logits, md.thresholds)
        tables[split] = prediction_table(store, logits, pred, labels, task)
        scores = tasks.scores(task, store.labels, pred, labels)
        for name in tasks.METRICS[task]:
            report[f"{split}_{name}"] = scores[name]
            live.log_metric(f"{split}/{name}", scores[name], plot=False)
        others = [k for k in scores if k not in (*tasks.METRICS[task], "per_class")]  # for the report only
        report.update({f"{split}_{k}": scores[k] for k in others})
        if split == "test":
            report.update(plot_test(store, logits, pred, labels, md, scores, live, plots))
            # the model alone, from what it reads: precomputed token vectors or token ids
            report["test_docs_per_s"] = round(len(store) / seconds, 1)
    report["test_subsampled"] = md.test_subsampled
    report["test_rows_full"] = md.test_rows_full if md.test_rows_full is not None else report["test_rows"]
    live.summary["test"]["subsampled"] = report["test_subsampled"]
    headline = tasks.HEADLINE[task]
    name = "accuracy" if headline == "acc" else headline
    live.log_plot(name, [{"split": "validation", name: report[f"val_{headline}"]},
                         {"split": "test", name: report[f"test_{headline}"]}], x=name, y="split")
    with atomic_path(predictions, is_dir=True) as tmp:
        for split, table in tables.items():
            pq.write_table(table, tmp / f"{split}.parquet")
    live.end()
    return report


def prediction_table(store: Any, logits: np.ndarray, pred: np.ndarray, labels: list[str],
                     task: str = tasks.SINGLE) -> pa.Table:
    """One row per document: id, the actual and predicted label (names and indices; multi-label:
    lists of names and 0/1 rows), the logits; the task and the label names as the table's metadata
    (what `combine` reads them from)."""
    def names(rows: np.ndarray) -> list[Any]:
        if task == tasks.REGRESSION:  # the values themselves
            return rows.astype(np.float64).tolist()
        if rows.ndim == 2:
            return [[labels[j] for j in np.flatnonzero(row)] for row in rows]
        return [labels[i] for i in rows]

    def values(rows: np.ndarray) -> pa.Array:
        if task == tasks.REGRESSION:
            return pa.array(rows.astype(np.float64))
        if rows.ndim == 2:
            return pa.array([row.astype(np.int8).tolist() for row in rows], pa.list_(pa.int8()))
        return pa.array(rows.astype(np.int64))

    return pa.table({
        "id": pa.array([str(i) for i in store.ids]),
        "actual": pa.array(names(store.labels)),
        "predicted": pa.array(names(pred)),
        "label": values(store.labels),
        "prediction": values(pred),
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.astype(np.float32).ravel()),
                                                    logits.shape[1]),
    }, metadata={PREDICTIONS_META: json.dumps({"task": task, "labels": labels})})


PREDICTIONS_META = "bertclf"  # the key of a predictions table's metadata: its task and label names


def plot_test(store: Any, logits: np.ndarray, pred: np.ndarray, labels: list[str], md: ModelDir,
              scores: dict[str, Any], live: StageLogger, plots: Path) -> dict[str, Any]:
    """Per-class (or per-label) F1 as dvclive data; the confusion matrix (single-label, ordinal),
    a precision-recall curve per label (multi-label), or predicted against true values
    (regression), as dvclive data and a PNG."""
    headline = tasks.HEADLINE[md.task]
    title = f"{md.arch} on test ({headline} {scores[headline]:.3f})"
    if md.task == tasks.REGRESSION:
        plot_predicted_vs_true(store.labels, pred, plots / "predicted_vs_true_test.png", title)
        return {"test_rows": len(store)}
    per_class = scores["per_class"]
    live.log_plot("per_class_f1", [{"class": name, "f1": s["f1"], "support": s["support"]}
                                   for name, s in per_class.items()], x="f1", y="class")
    if md.task == tasks.MULTI:
        plot_precision_recall(store.labels, tasks.probabilities(md.task, logits), labels,
                              plots / "precision_recall_test.png", title)
    else:
        actual = [labels[a] for a in store.labels]
        predicted = [labels[b] for b in pred]
        live.log_sklearn_plot("confusion_matrix", actual, predicted, name="confusion_test.json")
        matrix = confusion_matrix(store.labels, pred, labels=range(len(labels)))
        plot_confusion(matrix, labels, plots / "confusion_test.png", title=title)
    return {"test_per_class": per_class, "test_rows": len(store)}


def load_predictions(predictions: Path, split: str = "test") -> pd.DataFrame:
    """The predictions `evaluate` saved for `split`: id, actual, predicted, label, prediction, logits."""
    return pq.read_table(Path(predictions) / f"{split}.parquet").to_pandas()
