"""Batches of documents from a FeatureStore, grouped by length so little padding is computed."""

from __future__ import annotations

import numpy as np
import torch

from bertclf.features import ConcatStore, FeatureStore
from bertclf.models import Batch

POOL_BATCHES = 50  # batches sorted together: enough to group lengths, still well shuffled


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """A seeded shuffle of the documents into batches of similar length.

    The order depends only on (seed, epoch), so a resumed run sees the same batches as an
    uninterrupted one.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches = []
    pool = batch_size * POOL_BATCHES
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Every document once, longest first, in batches of similar length."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _pad(pieces: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    out = np.zeros((len(pieces), int(lengths.max()), dim), dtype=np.float32)
    for row, piece in enumerate(pieces):
        out[row, : len(piece)] = piece
    return torch.from_numpy(out), torch.from_numpy(lengths)


def make_batch(store: FeatureStore | ConcatStore, idx: np.ndarray, arch: str) -> Batch:
    """Read the documents `idx` from the memory map into the tensors `arch` needs."""
    labels = torch.from_numpy(store.labels[idx])
    if arch == "han":
        pieces, counts = [], []
        for i in idx:
            tokens = store.tokens(int(i))
            spans = store.sentences(int(i))
            ends = np.cumsum(spans)
            pieces += [tokens[e - s:e] for s, e in zip(spans, ends, strict=True)]
            counts.append(len(spans))
        sentence_tokens, sentence_lengths = _pad(pieces, store.dim)
        return Batch(labels=labels, sentence_tokens=sentence_tokens, sentence_lengths=sentence_lengths,
                     doc_sentences=torch.tensor(counts, dtype=torch.long))
    tokens, lengths = _pad([store.tokens(int(i)) for i in idx], store.dim)
    return Batch(labels=labels, tokens=tokens, lengths=lengths)
