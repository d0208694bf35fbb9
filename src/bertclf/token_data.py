"""Token ids from `tokenize` as model input, for the archs that read no features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bertclf.models import Batch


class TokenStore:
    """One tokenized split: ids of document ``i`` are ``values[offsets[i]:offsets[i + 1]]``."""

    def __init__(self, tokens_dir: Path, split: str):
        table = pq.read_table(tokens_dir / f"{split}.parquet", columns=["id", "label", "input_ids"])
        column = table.column("input_ids").combine_chunks()
        self.values = column.flatten().to_numpy().astype(np.int64)
        self.offsets = column.offsets.to_numpy().astype(np.int64)
        self.lengths = np.diff(self.offsets)
        self.labels = table.column("label").to_numpy().astype(np.int64)
        self.ids = table.column("id").to_pylist()
        meta = tokens_dir / "meta.json"
        self.meta = json.loads(meta.read_text()) if meta.exists() else {}

    @classmethod
    def from_ids(cls, input_ids: list[np.ndarray], meta: dict | None = None) -> TokenStore:
        """A store over token ids held in memory (new text at prediction time); labels are -1."""
        store = cls.__new__(cls)
        store.lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64, count=len(input_ids))
        store.offsets = np.concatenate([[0], np.cumsum(store.lengths)]).astype(np.int64)
        store.values = (np.concatenate(input_ids) if input_ids else np.zeros(0)).astype(np.int64)
        store.labels = np.full(len(input_ids), -1, dtype=np.int64)
        store.ids = [str(i) for i in range(len(input_ids))]
        store.meta = meta or {}
        return store

    def __len__(self) -> int:
        return len(self.labels)

    def input_ids(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]


def make_token_batch(store: TokenStore, idx: np.ndarray, pad_id: int, min_width: int = 1) -> Batch:
    """Pad the documents `idx` to the longest of them (at least `min_width`) with a mask."""
    width = max(int(store.lengths[idx].max()), min_width)
    input_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        ids = store.input_ids(int(i))
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return Batch(labels=torch.from_numpy(store.labels[idx]), input_ids=torch.from_numpy(input_ids),
                 attention_mask=torch.from_numpy(mask), lengths=torch.from_numpy(store.lengths[idx]))
