"""What models read: token id and feature stores, batches grouped by length, and padding.

- `TokenStore`: the token ids of a tokenized split (``data/tokens/<split>.parquet``) or of new texts;
- `FeatureStore`: a split's frozen token vectors through a memory map (``data/features/``), and
  `ConcatStore` to read two as one;
- `Inputs`: the pipeline directories a model may read; `Inputs.open` opens the split an arch reads;
- `Batch`: one step's inputs, never labels (the training loop takes those from the store);
- `epoch_batches`, `eval_batches`, `length_batches`: which documents go together;
- `pad_ids`, `pad_vectors`: the one place anything is padded.

Layout of a features directory (one set of files per split): ``<split>.npy``, float16
``[total_tokens, dim]``, the tokens of document ``i`` being rows ``offsets[i]:offsets[i] +
lengths[i]``; ``<split>.index.parquet`` with ``id``, ``label``, ``offset``, ``length``,
``sentence_lengths``; ``meta.json`` with the encoder, layers, dim and the tokenize settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bertclf.errors import ConfigError

INDEX_SUFFIX = ".index.parquet"
SCALE_SUFFIX = ".scale.npy"  # featurize.store int8: the scale of each token vector
POOL_BATCHES = 50  # training batches sorted together: enough to group lengths, still well shuffled
Reads = Literal["features", "tokens"]


@dataclass
class Batch:
    """One step's inputs. Feature models read `tokens`/`lengths` (flat) or the `sentence_*` fields
    (hierarchical); token models read `input_ids`/`attention_mask`/`lengths`."""

    tokens: torch.Tensor | None = None  # [B, T, D]
    lengths: torch.Tensor | None = None  # [B]
    sentence_tokens: torch.Tensor | None = None  # [N, L, D], all sentences of the batch
    sentence_lengths: torch.Tensor | None = None  # [N]
    doc_sentences: torch.Tensor | None = None  # [B], sentences per document
    input_ids: torch.Tensor | None = None  # [B, T], or [W, T]: the windows of B documents
    attention_mask: torch.Tensor | None = None  # [B, T] or [W, T]
    doc_windows: torch.Tensor | None = None  # [B], windows per document when input_ids are windows

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with every tensor on `device`."""
        return Batch(**{f.name: None if (v := getattr(self, f.name)) is None else v.to(device)
                        for f in fields(self)})


# ---- padding and grouping by length


def pad_ids(ids: list[np.ndarray], pad_id: int, min_width: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id arrays padded to the longest (at least `min_width`): ``input_ids`` and
    ``attention_mask``, int64."""
    width = max(max((len(x) for x in ids), default=0), min_width)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.int64))
        mask[row, : len(x)] = 1
    return input_ids, mask


def pad_vectors(pieces: list[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token vector runs padded to the longest: ``[n, longest, dim]`` float32 and the lengths."""
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    out = np.zeros((len(pieces), int(lengths.max()), dim), dtype=np.float32)
    for row, piece in enumerate(pieces):
        out[row, : len(piece)] = piece
    return torch.from_numpy(out), torch.from_numpy(lengths)


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """A seeded shuffle of the documents into batches of similar length. The order depends only
    on (seed, epoch), so a resumed run sees the same batches as an uninterrupted one."""
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
    """Every document once, longest first, in batches of `batch_size`."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def length_batches(lengths: np.ndarray, max_batch_tokens: int, max_docs: int = 0) -> list[np.ndarray]:
    """Every document once, longest first, in batches whose padded size stays under the budget
    (and of at most `max_docs` documents when > 0)."""
    order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early
    batches, start = [], 0
    while start < len(order):
        size = max(1, max_batch_tokens // max(int(lengths[order[start]]), 1))
        size = min(size, max_docs) if max_docs > 0 else size
        batches.append(order[start:start + size])
        start += size
    return batches


# ---- stores


def _flat(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Arrays as one int64 array and the offsets of each (``len(arrays) + 1``)."""
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)
    return (np.concatenate(arrays) if arrays else np.zeros(0)).astype(np.int64), offsets


def labels_of(column: pa.ChunkedArray) -> np.ndarray:
    """A split's labels: class indices ``[N]`` (int64), 0/1 rows ``[N, labels]`` (int8) for
    multi-label data, or values ``[N]`` (float32) for regression."""
    if pa.types.is_list(column.type):
        rows = column.combine_chunks()
        flat = rows.flatten().to_numpy(zero_copy_only=False).astype(np.int8)
        return flat.reshape(len(rows), -1) if len(rows) else flat.reshape(0, 0)
    if pa.types.is_floating(column.type):
        return column.to_numpy().astype(np.float32)
    return column.to_numpy().astype(np.int64)


class TokenStore:
    """One tokenized split: the ids of document ``i`` are ``values[offsets[i]:offsets[i + 1]]``.

    With sliding windows (``tokenize.windows > 1``) each document also has its windows: window
    ``j`` is ``win_values[win_offsets[j]:win_offsets[j + 1]]`` for ``j`` in
    ``doc_win[i]:doc_win[i + 1]``, and `lengths` (which batches group by) counts every window's tokens.
    """

    win_values: np.ndarray | None = None
    win_offsets: np.ndarray | None = None
    doc_win: np.ndarray | None = None

    def __init__(self, tokens_dir: Path, split: str):
        path = tokens_dir / f"{split}.parquet"
        names = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=["id", "label", "input_ids",
                                             *({"windows", "window_lengths"} & names)])
        column = table.column("input_ids").combine_chunks()
        self.values = column.flatten().to_numpy().astype(np.int64)
        self.offsets = column.offsets.to_numpy().astype(np.int64)
        self.lengths = np.diff(self.offsets)
        self.labels = labels_of(table.column("label"))
        self.ids = table.column("id").to_pylist()
        if "window_lengths" in names:  # written since tokenize.windows exists; empty with windows: 1
            window_lengths = table.column("window_lengths").combine_chunks()
            if len(window_lengths.flatten()):
                self._set_windows(table.column("windows").combine_chunks().flatten().to_numpy(),
                                  window_lengths.flatten().to_numpy(), window_lengths.offsets.to_numpy())

    def _set_windows(self, values: np.ndarray, lengths: np.ndarray, doc_win: np.ndarray) -> None:
        self.win_values = values.astype(np.int64)
        self.win_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.doc_win = np.asarray(doc_win, dtype=np.int64)
        self.lengths = self.win_offsets[self.doc_win[1:]] - self.win_offsets[self.doc_win[:-1]]

    @classmethod
    def from_ids(cls, input_ids: list[np.ndarray], windows: list[np.ndarray] | None = None,
                 window_lengths: list[np.ndarray] | None = None) -> TokenStore:
        """A store over token ids held in memory (new text at prediction time); no labels. `windows`
        and `window_lengths` are the tokenizer's (one entry per document, empty without windows)."""
        store = cls.__new__(cls)
        store.values, store.offsets = _flat(input_ids)
        store.lengths = np.diff(store.offsets)
        store.labels = np.full(len(input_ids), -1, dtype=np.int64)
        store.ids = [str(i) for i in range(len(input_ids))]
        if windows is not None and window_lengths is not None and any(len(w) for w in window_lengths):
            values, _ = _flat(windows)
            lengths, doc_win = _flat(window_lengths)
            store._set_windows(values, lengths, doc_win)
        return store

    def __len__(self) -> int:
        return len(self.lengths)

    def input_ids(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    def token_batch(self, idx: np.ndarray, pad_id: int, min_width: int = 1) -> Batch:
        """The documents `idx`, padded to the longest of them (at least `min_width`), with a mask."""
        input_ids, mask = pad_ids([self.input_ids(int(i)) for i in idx], pad_id, min_width)
        return Batch(input_ids=input_ids, attention_mask=mask, lengths=torch.from_numpy(self.lengths[idx]))

    def window_batch(self, idx: np.ndarray, pad_id: int) -> Batch:
        """The windows of the documents `idx`, padded to the longest, and how many each has; the
        documents themselves (`token_batch`) where the store has no windows."""
        if self.doc_win is None or self.win_offsets is None or self.win_values is None:
            return self.token_batch(idx, pad_id)
        offsets, values = self.win_offsets, self.win_values
        rows = [j for i in idx for j in range(self.doc_win[i], self.doc_win[i + 1])]
        input_ids, mask = pad_ids([values[offsets[j]:offsets[j + 1]] for j in rows], pad_id)
        counts = torch.from_numpy(self.doc_win[idx + 1] - self.doc_win[idx])
        return Batch(input_ids=input_ids, attention_mask=mask, lengths=torch.from_numpy(self.lengths[idx]),
                     doc_windows=counts)


class FeatureStore:
    """Read-only access to one split's token vectors through a memory map: float16, or int8 with a
    scale per token (``featurize.store: int8``, `bertclf.encoder.quantize_rows`), read as float32."""

    def __init__(self, features_dir: Path, split: str):
        self.vectors = np.load(features_dir / f"{split}.npy", mmap_mode="r")
        scales = features_dir / f"{split}{SCALE_SUFFIX}"
        self.scales = np.load(scales, mmap_mode="r") if scales.is_file() else None
        index = pq.read_table(features_dir / f"{split}{INDEX_SUFFIX}")
        self.ids = index.column("id").to_pylist()
        self.labels = labels_of(index.column("label"))
        self.offsets = index.column("offset").to_numpy().astype(np.int64)
        self.lengths = index.column("length").to_numpy().astype(np.int64)
        spans = index.column("sentence_lengths").combine_chunks()
        self.sent_offsets = spans.offsets.to_numpy().astype(np.int64)
        self.sent_values = spans.flatten().to_numpy().astype(np.int64)

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, lengths: np.ndarray,
                    sentence_lengths: list[np.ndarray], scales: np.ndarray | None = None) -> FeatureStore:
        """A store over vectors held in memory (new text at prediction time); no labels."""
        store = cls.__new__(cls)
        store.vectors, store.scales = vectors, scales
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
        rows = slice(self.offsets[i], self.offsets[i] + self.lengths[i])
        if self.scales is None:
            return self.vectors[rows]
        return self.vectors[rows].astype(np.float32) * self.scales[rows, None]

    def sentences(self, i: int) -> np.ndarray:
        return self.sent_values[self.sent_offsets[i]:self.sent_offsets[i + 1]]

    def vector_batch(self, idx: np.ndarray) -> Batch:
        """The documents `idx` as padded token vector sequences."""
        tokens, lengths = pad_vectors([self.tokens(int(i)) for i in idx], self.dim)
        return Batch(tokens=tokens, lengths=lengths)

    def sentence_batch(self, idx: np.ndarray) -> Batch:
        """The sentences of the documents `idx` (padded), and how many each document has."""
        pieces, counts = [], []
        for i in idx:
            tokens, spans = self.tokens(int(i)), self.sentences(int(i))
            ends = np.cumsum(spans)
            pieces += [tokens[e - s:e] for s, e in zip(spans, ends, strict=True)]
            counts.append(len(spans))
        sentence_tokens, sentence_lengths = pad_vectors(pieces, self.dim)
        return Batch(sentence_tokens=sentence_tokens, sentence_lengths=sentence_lengths,
                     doc_sentences=torch.tensor(counts, dtype=torch.long))


class ConcatStore(FeatureStore):
    """Several feature stores read as one (train + val for a final retrain)."""

    def __init__(self, *stores: FeatureStore):  # reads the stores, copies nothing
        self.stores = stores
        self.starts = np.cumsum([0, *(len(s) for s in stores)])
        self.labels = np.concatenate([s.labels for s in stores])
        self.lengths = np.concatenate([s.lengths for s in stores])
        self.ids = [i for s in stores for i in s.ids]
        self.vectors = stores[0].vectors

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


Store = TokenStore | FeatureStore


def concat(a: Store, b: Store) -> Store:
    """Two splits as one training set (train + val, for a final retrain)."""
    if isinstance(a, TokenStore) and isinstance(b, TokenStore):
        joined = TokenStore.__new__(TokenStore)
        joined.values = np.concatenate([a.values, b.values])
        joined.offsets = np.concatenate([a.offsets[:-1], b.offsets + a.offsets[-1]])
        joined.lengths = np.concatenate([a.lengths, b.lengths])
        joined.labels = np.concatenate([a.labels, b.labels])
        joined.ids = [*a.ids, *b.ids]
        if a.doc_win is not None and b.doc_win is not None:
            assert a.win_values is not None and b.win_values is not None and a.win_offsets is not None
            assert b.win_offsets is not None
            joined._set_windows(np.concatenate([a.win_values, b.win_values]),
                                np.concatenate([np.diff(a.win_offsets), np.diff(b.win_offsets)]),
                                np.concatenate([a.doc_win[:-1], b.doc_win + a.doc_win[-1]]))
        return joined
    assert isinstance(a, FeatureStore) and isinstance(b, FeatureStore)
    return ConcatStore(a, b)


@dataclass(frozen=True)
class Inputs:
    """The pipeline directories a model can read."""

    features: Path
    tokens: Path
    encoder: Path

    def dir(self, reads: Reads) -> Path:
        return self.features if reads == "features" else self.tokens

    def open(self, reads: Reads, split: str) -> Store:
        """The store of `split` a model that `reads` features or token ids trains on."""
        if reads == "tokens":
            return TokenStore(self.tokens, split)
        if not (self.features / f"{split}.npy").exists():
            raise ConfigError(f"{self.features} holds no features for '{split}': run `dvc repro featurize` "
                              "with a train.arch that reads features")
        return FeatureStore(self.features, split)

    def meta(self, reads: Reads) -> dict[str, Any]:
        """Labels, tokenize settings and (for features) the encoder and layers the data was made with."""
        path = self.dir(reads) / "meta.json"
        return json.loads(path.read_text()) if path.exists() else {}
