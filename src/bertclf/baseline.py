"""The classic floor every BERT model is measured against: TF-IDF + logistic regression.

It depends only on the split (and its `tfidf` params), so it is its own stage, computed once per
split and cached, whatever model is trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

from bertclf import tasks
from bertclf.atomic import atomic_path
from bertclf.config import TfidfConfig


def tfidf_baseline(splits_dir: Path, cfg: TfidfConfig, probabilities: Path | None = None,
                   seed: int = 0) -> dict[str, dict[str, float]]:
    """Word n-gram TF-IDF and logistic regression fit on the train split (multi-label: one per
    label, one-vs-rest, and a threshold chosen on validation); the task's headline score on val
    and test (accuracy; multi-label: Jaccard, and macro-F1; ordinal: QWK, MAE and accuracy of the
    median of the classes' probabilities; regression, with ridge regression: RMSE, MAE and R²).

    With `probabilities`, also write ``<split>.parquet`` there (id and the class probabilities
    in label-index order) for the `combine` stage."""
    train = pd.read_parquet(splits_dir / "train.parquet")
    meta = json.loads((splits_dir / "labels.json").read_text())
    task, num_labels = tasks.task_of(meta), len(meta["labels"])
    classifier = LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed)
    regression = task == tasks.REGRESSION
    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, sublinear_tf=True,
                        max_features=cfg.max_features),
        # regression: ridge, its penalty the inverse of tfidf.C as logistic regression's is
        Ridge(alpha=1 / cfg.C) if regression else OneVsRestClassifier(classifier) if task == tasks.MULTI
        else classifier,
    )
    multi = task == tasks.MULTI
    pipe.fit(train["text"], np.stack(train["label"]) if multi else train["label"])
    frames, probs, truth = {}, {}, {}
    for split in ("val", "test"):
        df = pd.read_parquet(splits_dir / f"{split}.parquet")
        fitted = pipe.predict(df["text"])[:, None] if regression else pipe.predict_proba(df["text"])
        if multi or regression:
            proba = fitted.astype(np.float32)
        else:
            proba = np.zeros((len(df), num_labels), dtype=np.float32)
            proba[:, pipe.classes_] = fitted  # a label absent from train keeps probability 0
        probs[split], truth[split] = proba, np.stack(df["label"]) if multi else df["label"].to_numpy()
        frames[split] = pd.DataFrame({"id": df["id"], "probabilities": list(proba)})
    if probabilities is not None:
        with atomic_path(probabilities, is_dir=True) as tmp:
            for split, frame in frames.items():
                frame.to_parquet(tmp / f"{split}.parquet", index=False)
    return {"tfidf": _scores(task, probs, truth, [str(n) for n in meta["labels"]])}


def _scores(task: str, probs: dict[str, np.ndarray], truth: dict[str, np.ndarray],
            names: list[str]) -> dict[str, float]:
    """Accuracy on val and test; multi-label: Jaccard and macro-F1 at the threshold that is best on
    validation; ordinal: QWK, MAE and accuracy of the median class; regression: RMSE, MAE, R²."""
    if task in (tasks.ORDINAL, tasks.REGRESSION):
        out = {}
        for split, p in probs.items():
            scored = tasks.scores(task, truth[split], tasks.decide(task, p), names)
            out.update({f"{split}_{name}": scored[name] for name in tasks.METRICS[task]})
        return out
    if task != tasks.MULTI:
        return {f"{split}_acc": round(float((p.argmax(1) == truth[split]).mean()), 5)
                for split, p in probs.items()}
    cuts = tasks.choose_thresholds(truth["val"], probs["val"], "global")
    out: dict[str, float] = {"threshold": cuts[0]}
    for split, p in probs.items():
        names = [str(i) for i in range(p.shape[1])]
        scored = tasks.scores(task, truth[split], tasks.decide(task, p, cuts), names)
        out.update({f"{split}_jaccard": scored["jaccard"], f"{split}_macro_f1": scored["macro_f1"]})
    return out
