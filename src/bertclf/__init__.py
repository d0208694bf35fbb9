"""bertclf: a reproducible DVC pipeline for BERT-based text classifiers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bertclf.serving.predictor import TextClassifier

__version__ = "0.1.0"


def load(model_dir: str | Path, **kwargs: Any) -> TextClassifier:
    """A saved model ready to `predict` (see `bertclf.serving.predictor.TextClassifier`)."""
    from bertclf.serving.predictor import load as _load

    return _load(model_dir, **kwargs)
