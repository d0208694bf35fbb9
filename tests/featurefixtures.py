"""Synthetic feature directories in the exact layout `featurize` writes, for model/training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertclf.data.stores import INDEX_SUFFIX


def write_features(out: Path, sizes: dict[str, int], dim: int = 8, num_labels: int = 3,
                   seed: int = 0, signal: float = 1.5) -> Path:
    """Documents of 3-40 tokens in 1-4 sentences; the label shifts the mean of some tokens."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    centers = rng.normal(size=(num_labels, dim)) * signal
    for split, n in sizes.items():
        labels = rng.integers(0, num_labels, size=n)
        lengths = rng.integers(3, 41, size=n)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        vectors = rng.normal(size=(int(lengths.sum()), dim)).astype(np.float32)
        sentences = []
        for i in range(n):
            rows = slice(offsets[i], offsets[i] + lengths[i])
            keep = rng.random(lengths[i]) < 0.3
            vectors[rows][keep] += centers[labels[i]]
            cuts = np.sort(rng.choice(np.arange(1, lengths[i]), size=min(3, lengths[i] - 1), replace=False))
            spans = np.diff(np.concatenate([[0], cuts[: rng.integers(0, 4)], [lengths[i]]]))
            sentences.append(spans.astype(np.int32).tolist())
        np.save(out / f"{split}.npy", vectors.astype(np.float16))
        pq.write_table(pa.table({
            "id": [f"{split}-{i}" for i in range(n)],
            "label": pa.array(labels, pa.int64()),
            "offset": pa.array(offsets.astype(np.int64)),
            "length": pa.array(lengths.astype(np.int32)),
            "sentence_lengths": pa.array(sentences, pa.list_(pa.int32())),
        }), out / f"{split}{INDEX_SUFFIX}")
    (out / "meta.json").write_text(json.dumps({
        "labels": [f"class{i}" for i in range(num_labels)], "layers": "last", "dim": dim,
        "encoder": "synthetic", "tokenize": {}, "test_subsampled": False,
    }))
    return out
