"""Precompute frozen BERT token vectors: one float16 row per token, memory-mapped.

Layout of a features directory (one set of files per split):

- ``<split>.npy``: float16 array ``[total_tokens, dim]`` (``numpy.load(..., mmap_mode="r")``);
  the tokens of document ``i`` are rows ``offsets[i]:offsets[i + 1]``
- ``<split>.index.parquet``: ``id``, ``label``, ``offset`` (int64), ``length`` (int32),
  ``sentence_lengths`` (list<int32>) — the sentence spans from `tokenize`
- ``meta.json``: encoder, layers, dim, and the tokenize settings the vectors were made with

The encoder runs in ``torch.inference_mode()`` over batches of documents of similar length, so
almost no padding is computed, and vectors are written straight into the memory map: the
whole feature set is never held in RAM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bertclf.atomic import atomic_path, write_json
from bertclf.config import FeaturizeConfig

INDEX_SUFFIX = ".index.parquet"


def load_encoder(encoder_dir: Path, device: str = "cpu") -> torch.nn.Module:
    """The frozen encoder (safetensors only, no remote code), in eval mode."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(encoder_dir, local_files_only=True, trust_remote_code=False,
                                      use_safetensors=True)
    return model.eval().to(device)


def combine_layers(hidden_states: tuple[torch.Tensor, ...], layers: str) -> torch.Tensor:
    """Token vectors from the encoder's hidden states (embeddings first, last layer last)."""
    if layers == "last":
        return hidden_states[-1]
    last4 = hidden_states[-4:]
    if layers == "mean_last_4":
        return torch.stack(last4).mean(0)
    if layers == "sum_last_4":
        return torch.stack(last4).sum(0)
    return torch.cat(last4, dim=-1)


def output_dim(config: Any, layers: str) -> int:
    """Width of the token vectors: concat_last_4 joins the last four hidden states (all of them,
    embeddings included, for an encoder with fewer than four layers)."""
    if layers == "concat_last_4":
        return int(config.hidden_size) * min(4, int(config.num_hidden_layers) + 1)
    return int(config.hidden_size)


def length_batches(lengths: np.ndarray, max_batch_tokens: int) -> list[np.ndarray]:
    """Group document indices by length so a batch's padded size stays under the budget."""
    order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early
    batches, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max(1, max_batch_tokens // max(longest, 1))
        batches.append(order[start:start + size])
        start += size
    return batches


@torch.inference_mode()
def encode_batch(model: torch.nn.Module, ids: list[np.ndarray], layers: str,
                 pad_id: int) -> torch.Tensor:
    """Run the encoder on one batch; returns float32 ``[batch, max_len, dim]``."""
    input_ids, mask = pad_ids(ids, pad_id)
    return encoder_vectors(model, input_ids, mask, layers)


def pad_ids(ids: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id arrays padded to the longest: ``input_ids`` and ``attention_mask`` (int64)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.from_numpy(x.astype(np.int64))
        mask[row, : len(x)] = 1
    return input_ids, mask


def encoder_vectors(model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor,
                    layers: str) -> torch.Tensor:
    """The token vectors `layers` asks for, from one encoder pass."""
    want_all = layers != "last"
    out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=want_all)
    states = out.hidden_states if want_all else (out.last_hidden_state,)
    return combine_layers(states, layers)


def encode_documents(encode: Callable[[list[np.ndarray]], torch.Tensor], flat_ids: np.ndarray,
                     offsets: np.ndarray, max_batch_tokens: int, out: np.ndarray) -> int:
    """Write the float16 vectors of every document (ids ``flat_ids[offsets[i]:offsets[i + 1]]``)
    into rows ``offsets[i]:offsets[i + 1]`` of `out`, `encode` turning a batch of id arrays into
    ``[batch, longest, dim]`` vectors; returns the padded tokens computed."""
    lengths = np.diff(offsets)
    padded = 0
    for batch in length_batches(lengths, max_batch_tokens):
        ids = [flat_ids[offsets[i]:offsets[i + 1]] for i in batch]
        vectors = encode(ids).to(torch.float16).numpy()
        padded += vectors.shape[0] * vectors.shape[1]
        for row, i in enumerate(batch):
            out[offsets[i]:offsets[i + 1]] = vectors[row, : lengths[i]]
    return padded


def featurize_split(model: torch.nn.Module, tokens: Path, out_dir: Path, cfg: FeaturizeConfig,
                    pad_id: int) -> dict[str, Any]:
    """Write ``<split>.npy`` and ``<split>.index.parquet`` for one tokenized split."""
    table = pq.read_table(tokens, columns=["id", "label", "input_ids", "length", "sentence_lengths"])
    lengths = table.column("length").to_numpy().astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat_ids = table.column("input_ids").combine_chunks().flatten().to_numpy()
    dim = output_dim(model.config, cfg.layers)
    name = tokens.stem
    t0 = time.perf_counter()
    store = np.lib.format.open_memmap(out_dir / f"{name}.npy", mode="w+", dtype=np.float16,
                                      shape=(int(offsets[-1]), dim))
    padded = encode_documents(lambda ids: encode_batch(model, ids, cfg.layers, pad_id), flat_ids, offsets,
                              cfg.max_batch_tokens, store)
    store.flush()
    del store
    seconds = time.perf_counter() - t0
    pq.write_table(pa.table({
        "id": table.column("id"),
        "label": table.column("label"),
        "offset": pa.array(offsets[:-1]),
        "length": table.column("length"),
        "sentence_lengths": table.column("sentence_lengths"),
    }), out_dir / f"{name}{INDEX_SUFFIX}")
    tokens_total = int(offsets[-1])
    return {
        "docs": len(lengths),
        "tokens": tokens_total,
        "padding_fraction": round(1 - tokens_total / max(padded, 1), 4),
        "seconds": round(seconds, 3),
        "docs_per_s": round(len(lengths) / seconds, 1) if seconds else None,
        "tokens_per_s": round(tokens_total / seconds, 1) if seconds else None,
        "bytes": (out_dir / f"{name}.npy").stat().st_size,
    }


def featurize(tokens_dir: Path, encoder_dir: Path, out: Path, cfg: FeaturizeConfig, encoder_name: str = "",
              needed: bool = True, threads: int = 0) -> dict[str, Any]:
    """Featurize every tokenized split in `tokens_dir` into `out` (atomically); return the counts
    and throughput.

    With `needed` false (an arch that reads token ids), only the metadata is written: no
    encoder pass, and DVC keeps the features of earlier runs in its cache for when they return.
    """
    if not needed:
        with atomic_path(out, is_dir=True) as tmp:
            write_json(tmp / "meta.json", {"skipped": "the arch reads token ids, not features"})
        return {"skipped": True, "docs": 0, "tokens": 0, "bytes": 0}
    if threads:
        torch.set_num_threads(threads)
    model = load_encoder(encoder_dir)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    tok_meta_path = tokens_dir / "meta.json"
    tok_meta = json.loads(tok_meta_path.read_text()) if tok_meta_path.exists() else {}
    report: dict[str, Any] = {"skipped": False, "layers": cfg.layers, "threads": torch.get_num_threads(),
                              "splits": {}}
    with atomic_path(out, is_dir=True) as tmp:
        for tokens in sorted(tokens_dir.glob("*.parquet")):
            report["splits"][tokens.stem] = featurize_split(model, tokens, tmp, cfg, pad_id)
        dim = output_dim(model.config, cfg.layers)
        write_json(tmp / "meta.json", {**tok_meta, "encoder": encoder_name, "layers": cfg.layers,
                                       "dim": dim})
    parts = list(report["splits"].values())
    seconds = sum(p["seconds"] for p in parts)
    tokens = sum(p["tokens"] for p in parts)
    docs = sum(p["docs"] for p in parts)
    report.update(docs=docs, tokens=tokens, seconds=round(seconds, 3),
                  bytes=sum(p["bytes"] for p in parts),
                  docs_per_s=round(docs / seconds, 1) if seconds else None,
                  tokens_per_s=round(tokens / seconds, 1) if seconds else None)
    return report


class FeatureStore:
    """Read-only access to one split's token vectors through a memory map."""

    def __init__(self, features_dir: Path, split: str):
        self.vectors = np.load(features_dir / f"{split}.npy", mmap_mode="r")
        index = pq.read_table(features_dir / f"{split}{INDEX_SUFFIX}")
        self.ids = index.column("id").to_pylist()
        self.labels = index.column("label").to_numpy().astype(np.int64)
        self.offsets = index.column("offset").to_numpy().astype(np.int64)
        self.lengths = index.column("length").to_numpy().astype(np.int64)
        sl = index.column("sentence_lengths").combine_chunks()
        self.sent_offsets = sl.offsets.to_numpy().astype(np.int64)
        self.sent_values = sl.flatten().to_numpy().astype(np.int64)

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, lengths: np.ndarray,
                    sentence_lengths: list[np.ndarray]) -> FeatureStore:
        """A store over vectors held in memory (new text at prediction time); labels are -1."""
        store = cls.__new__(cls)
        store.vectors = vectors
        store.lengths = np.asarray(lengths, dtype=np.int64)
        store.offsets = np.concatenate([[0], np.cumsum(store.lengths)[:-1]]).astype(np.int64)
        store.labels = np.full(len(store.lengths), -1, dtype=np.int64)
        store.ids = [str(i) for i in range(len(store.lengths))]
        counts = np.fromiter((len(s) for s in sentence_lengths), dtype=np.int64, count=len(sentence_lengths))
        store.sent_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        values = np.concatenate(sentence_lengths) if sentence_lengths else np.zeros(0)
        store.sent_values = values.astype(np.int64)
        return store

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def tokens(self, i: int) -> np.ndarray:
        return self.vectors[self.offsets[i]:self.offsets[i] + self.lengths[i]]

    def sentences(self, i: int) -> np.ndarray:
        return self.sent_values[self.sent_offsets[i]:self.sent_offsets[i + 1]]


class ConcatStore:
    """Several stores read as one (train + val for a final retrain)."""

    def __init__(self, *stores: FeatureStore):
        self.stores = stores
        self.starts = np.cumsum([0, *(len(s) for s in stores)])
        self.labels = np.concatenate([s.labels for s in stores])
        self.lengths = np.concatenate([s.lengths for s in stores])
        self.ids = [i for s in stores for i in s.ids]
        self.dim = stores[0].dim

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _locate(self, i: int) -> tuple[FeatureStore, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.stores[k], i - int(self.starts[k])

    def tokens(self, i: int) -> np.ndarray:
        store, j = self._locate(i)
        return store.tokens(j)

    def sentences(self, i: int) -> np.ndarray:
        store, j = self._locate(i)
        return store.sentences(j)
