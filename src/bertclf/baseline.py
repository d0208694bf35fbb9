"""The classic floor every BERT model is measured against: TF-IDF + logistic regression.

It depends only on the split (and its `tfidf` params), so it is its own stage, computed once per
split and cached, whatever model is trained.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline

from bertclf.config import TfidfConfig


def tfidf_baseline(splits_dir: Path, cfg: TfidfConfig, seed: int = 0) -> dict[str, dict[str, float]]:
    """Word n-gram TF-IDF and logistic regression fit on the train split; accuracy on val and test."""
    train = pd.read_parquet(splits_dir / "train.parquet")
    pipe = make_pipeline(
        TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, sublinear_tf=True,
                        max_features=cfg.max_features),
        LogisticRegression(C=cfg.C, max_iter=2000, random_state=seed),
    )
    pipe.fit(train["text"], train["label"])
    scores = {}
    for split in ("val", "test"):
        df = pd.read_parquet(splits_dir / f"{split}.parquet")
        scores[f"{split}_acc"] = round(float(accuracy_score(df["label"], pipe.predict(df["text"]))), 5)
    return {"tfidf": scores}
