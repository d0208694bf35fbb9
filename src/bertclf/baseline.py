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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline

from bertclf.atomic import atomic_path
from bertclf.config import TfidfConfig


def tfidf_baseline(splits_dir: Path, cfg: TfidfConfig, probabilities: Path | None = None,
                   seed: int = 0) -> dict[str, dict[str, float]]:
    """Word n-gram TF-IDF and logistic regression fit on the train split; accuracy on val and test.

    With `probabilities`, also write ``<split>.parquet`` there (id and the class probabilities
    in label-index order) for the `combine` stage."""
    train = pd.read_parquet(splits_dir / "train.parquet")
    num_labels = len(json.loads((splits_dir / "labels.json").read_text())["labels"])
    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, sublinear_tf=True,
                        max_features=cfg.max_features),
        LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed),
    )
    pipe.fit(train["text"], train["label"])
    scores = {}
    frames = {}
    for split in ("val", "test"):
        df = pd.read_parquet(splits_dir / f"{split}.parquet")
        fitted = pipe.predict_proba(df["text"])
        scores[f"{split}_acc"] = round(float(accuracy_score(df["label"], pipe.classes_[fitted.argmax(1)])), 5)
        proba = np.zeros((len(df), num_labels), dtype=np.float32)
        proba[:, pipe.classes_] = fitted  # a label absent from train keeps probability 0
        frames[split] = pd.DataFrame({"id": df["id"], "probabilities": list(proba)})
    if probabilities is not None:
        with atomic_path(probabilities, is_dir=True) as tmp:
            for split, frame in frames.items():
                frame.to_parquet(tmp / f"{split}.parquet", index=False)
    return {"tfidf": scores}
