"""Evaluate the saved best model on validation and test; TF-IDF + logistic regression beside it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.pipeline import make_pipeline

from bertclf.atomic import write_json
from bertclf.classifier import load_classifier
from bertclf.model_inputs import Inputs, batch_maker, open_split
from bertclf.plotting import plot_confusion, write_csv
from bertclf.training import predict_logits, resolve_device


def tfidf_baseline(splits_dir: Path, seed: int = 0) -> dict[str, float]:
    """The classic floor: word uni+bigram TF-IDF and logistic regression on the same train split."""
    train = pd.read_parquet(splits_dir / "train.parquet")
    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000),
        LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
    )
    pipe.fit(train["text"], train["label"])
    out = {}
    for split in ("val", "test"):
        df = pd.read_parquet(splits_dir / f"{split}.parquet")
        out[f"{split}_acc"] = round(float(accuracy_score(df["label"], pipe.predict(df["text"]))), 5)
    return out


def evaluate(model_dir: Path, inputs: Inputs, splits_dir: Path, metrics: Path, plots: Path,
             batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores, confusion matrix and throughput of the saved model."""
    model, config = load_classifier(model_dir)
    arch = config["model"]["arch"]
    meta = config["data"]
    labels = [str(x) for x in meta.get("labels", [])]
    device = resolve_device(config["train"].get("device", "auto"))
    model.to(device)
    make = batch_maker(arch, config["model"].get("pad_id", 0), max(config["model"].get("filter_widths", [1])))
    report: dict[str, Any] = {"arch": arch}
    for split in ("val", "test"):
        store = open_split(arch, inputs, split)
        t0 = time.perf_counter()
        logits = predict_logits(model, store, make, batch_size, device)
        seconds = time.perf_counter() - t0
        pred = logits.argmax(1)
        report[f"{split}_acc"] = round(float(accuracy_score(store.labels, pred)), 5)
        report[f"{split}_macro_f1"] = round(float(f1_score(store.labels, pred, average="macro",
                                                           labels=range(len(labels)), zero_division=0)), 5)
        if split == "test":
            p, r, f, support = precision_recall_fscore_support(store.labels, pred, labels=range(len(labels)),
                                                               zero_division=0)
            report["test_per_class"] = {
                name: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                       "f1": round(float(f[i]), 4), "support": int(support[i])}
                for i, name in enumerate(labels)
            }
            # the model alone, from precomputed features (han, bigru) or token ids (the rest)
            report["test_docs_per_s"] = round(len(store) / seconds, 1)
            report["test_rows"] = len(store)
            report["test_subsampled"] = bool(meta.get("test_subsampled", False))
            rows = [{"id": i, "actual": labels[a], "predicted": labels[b]}
                    for i, a, b in zip(store.ids, store.labels, pred, strict=True)]
            write_csv(plots / "confusion_test.csv", rows, ["id", "actual", "predicted"])
            matrix = confusion_matrix(store.labels, pred, labels=range(len(labels)))
            plot_confusion(matrix, labels, plots / "confusion_test.png",
                           title=f"{arch} on test (acc {report['test_acc']:.3f})")
    report["tfidf_logreg"] = tfidf_baseline(splits_dir)
    report["beats_tfidf"] = report["test_acc"] > report["tfidf_logreg"]["test_acc"]
    write_json(metrics, report)
    return report


def load_predictions(path: Path) -> pd.DataFrame:
    """The saved test predictions (id, actual, predicted) written by `evaluate`."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


