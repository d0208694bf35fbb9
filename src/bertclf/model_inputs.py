"""What each arch reads and how its batches are made: token vectors (han, bigru) or token ids
(finetune, cnn, rnn)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.batching import make_batch
from bertclf.config import ARCHS, FEATURE_ARCHS
from bertclf.errors import ConfigError
from bertclf.features import INDEX_SUFFIX, ConcatStore, FeatureStore
from bertclf.models import Batch
from bertclf.token_data import TokenStore, make_token_batch

Store = FeatureStore | ConcatStore | TokenStore


@dataclass(frozen=True)
class Inputs:
    """The pipeline directories a model can read."""

    features: Path
    tokens: Path
    encoder: Path


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ConfigError(f"params.yaml: train.arch={arch!r} is not one of {', '.join(ARCHS)}")
    return arch


def open_split(arch: str, inputs: Inputs, split: str) -> Store:
    if check_arch(arch) in FEATURE_ARCHS:
        if not (inputs.features / f"{split}.npy").exists():
            raise ConfigError(f"{inputs.features} holds no features for '{split}': run `dvc repro featurize` "
                              f"with train.arch={arch}")
        return FeatureStore(inputs.features, split)
    return TokenStore(inputs.tokens, split)


def concat(a: Store, b: Store) -> Store:
    """Train + val as one training set (for a final retrain)."""
    if isinstance(a, TokenStore) and isinstance(b, TokenStore):
        joined = TokenStore.__new__(TokenStore)
        joined.values = np.concatenate([a.values, b.values])
        joined.offsets = np.concatenate([a.offsets[:-1], b.offsets + a.offsets[-1]])
        joined.lengths = np.concatenate([a.lengths, b.lengths])
        joined.labels = np.concatenate([a.labels, b.labels])
        joined.ids = [*a.ids, *b.ids]
        joined.meta = a.meta
        return joined
    assert isinstance(a, FeatureStore) and isinstance(b, FeatureStore)
    return ConcatStore(a, b)


def batch_maker(arch: str, pad_id: int = 0, min_width: int = 1) -> Callable[[Any, np.ndarray], Batch]:
    if arch in FEATURE_ARCHS:
        return lambda store, idx: make_batch(store, idx, arch)
    return lambda store, idx: make_token_batch(store, idx, pad_id, min_width)


def meta_of(arch: str, inputs: Inputs) -> dict[str, Any]:
    """Labels, tokenize settings and (for features) encoder/layers the data was made with."""
    path = (inputs.features if arch in FEATURE_ARCHS else inputs.tokens) / "meta.json"
    return json.loads(path.read_text()) if path.exists() else {}


def data_fingerprint(arch: str, inputs: Inputs) -> str:
    """A digest of the exact inputs, so a checkpoint is only resumed on the same data."""
    h = hashlib.sha256()
    if arch in FEATURE_ARCHS:
        files = [inputs.features / "meta.json", *inputs.features.glob(f"*{INDEX_SUFFIX}")]
    else:
        files = [inputs.tokens / "meta.json", *inputs.tokens.glob("*.parquet")]
        if arch == "finetune":
            files.append(inputs.encoder / "config.json")
    for f in sorted(p for p in files if p.exists()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
