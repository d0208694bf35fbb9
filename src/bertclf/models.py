"""Classifiers over precomputed token vectors: `han` (Yang et al. 2016) and `bigru`.

Both are built from the same two parts:

- :class:`RecurrentEncoder`: `depth` stacked bidirectional GRU layers run on packed
  sequences, so padding is never computed, normalized over real tokens only (`layer` or
  `batch`), with optional residual connections between stacked layers and dropout;
- :class:`AttentionPool`: the additive attention of Yang et al. (a context vector scores
  ``tanh(W h + b)``), softmax over real positions only.

`bigru` pools the token sequence of a document; `han` pools the tokens of each sentence into
a sentence vector, then the sentence vectors into a document vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence, pad_sequence

from bertclf.config import ARCHS
from bertclf.errors import ConfigError

CELLS = ("gru", "lstm")
NORMS = ("none", "layer", "batch")


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    input_dim: int
    num_labels: int
    hidden: int = 50
    depth: int = 1
    dropout: float = 0.1
    norm: str = "none"
    residual: bool = False
    attention_dim: int = 100
    cell: str = "gru"  # the recurrent cell of han / bigru / rnn
    vocab_size: int = 0  # cnn, rnn: learned embeddings over the tokenizer's ids
    pad_id: int = 0
    embedding_dim: int = 128
    num_filters: int = 100  # cnn: filters per width
    filter_widths: tuple[int, ...] = (3, 4, 5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "filter_widths" in known:
            known["filter_widths"] = tuple(known["filter_widths"])
        return cls(**known)


@dataclass
class Batch:
    """Inputs for one step. `tokens`/`lengths` feed `bigru`; the `sentence_*` fields feed `han`."""

    labels: torch.Tensor  # [B]
    tokens: torch.Tensor | None = None  # [B, T, D]
    lengths: torch.Tensor | None = None  # [B]
    sentence_tokens: torch.Tensor | None = None  # [N, L, D], all sentences of the batch
    sentence_lengths: torch.Tensor | None = None  # [N]
    doc_sentences: torch.Tensor | None = None  # [B], sentences per document
    input_ids: torch.Tensor | None = None  # [B, T] token ids (finetune, cnn, rnn)
    attention_mask: torch.Tensor | None = None  # [B, T]

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with every tensor on `device`."""
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return Batch(**moved)


def make_norm(norm: str, dim: int) -> nn.Module:
    if norm == "layer":
        return nn.LayerNorm(dim)
    if norm == "batch":
        return nn.BatchNorm1d(dim)
    return nn.Identity()


def _like(packed: PackedSequence, data: torch.Tensor) -> PackedSequence:
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


class RecurrentEncoder(nn.Module):
    """Stacked BiGRU layers; norm, residual and dropout act on the packed (real) tokens."""

    def __init__(self, input_dim: int, hidden: int, depth: int, dropout: float, norm: str,
                 residual: bool, cell: str = "gru"):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"params.yaml: train.depth={depth} must be at least 1")
        if cell not in CELLS:
            raise ConfigError(f"params.yaml: train.cell={cell!r} is not one of {', '.join(CELLS)}")
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.output_dim = 2 * hidden
        self.rnns = nn.ModuleList(
            rnn(input_dim if i == 0 else self.output_dim, hidden, batch_first=True, bidirectional=True)
            for i in range(depth)
        )
        self.norms = nn.ModuleList(make_norm(norm, self.output_dim) for _ in range(depth))
        self.dropout = nn.Dropout(dropout)
        self.residual = residual

    def forward(self, x: PackedSequence) -> PackedSequence:
        for i, (rnn, norm) in enumerate(zip(self.rnns, self.norms, strict=True)):
            out, _ = rnn(x)
            h = out.data
            if self.residual and i > 0:  # skip connection between stacked layers
                h = h + x.data
            x = _like(out, self.dropout(norm(h)))
        return x


class AttentionPool(nn.Module):
    """Additive attention with a learned context vector; padding gets zero weight."""

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, attention_dim)
        self.context = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.context(torch.tanh(self.proj(h))).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.bmm(weights.unsqueeze(1), h).squeeze(1), weights


def encode_and_pool(encoder: RecurrentEncoder, pool: AttentionPool, x: torch.Tensor,
                    lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `encoder` over padded `x` with `lengths`, then attention-pool the outputs."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    h, _ = pad_packed_sequence(encoder(packed), batch_first=True, total_length=x.shape[1])
    mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
    return pool(h, mask)


class BiGRUClassifier(nn.Module):
    """Flat BiGRU + attention over a document's token vectors."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = RecurrentEncoder(cfg.input_dim, cfg.hidden, cfg.depth, cfg.dropout, cfg.norm,
                                        cfg.residual, cfg.cell)
        self.pool = AttentionPool(self.encoder.output_dim, cfg.attention_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_dim, cfg.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.tokens is not None and batch.lengths is not None
        doc, self.last_attention = encode_and_pool(self.encoder, self.pool, batch.tokens, batch.lengths)
        return self.head(self.dropout(doc))


class HANClassifier(nn.Module):
    """Hierarchical Attention Network: words -> sentence vectors -> document vector."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.word_encoder = RecurrentEncoder(cfg.input_dim, cfg.hidden, cfg.depth, cfg.dropout,
                                             cfg.norm, cfg.residual, cfg.cell)
        self.word_pool = AttentionPool(self.word_encoder.output_dim, cfg.attention_dim)
        self.sentence_encoder = RecurrentEncoder(self.word_encoder.output_dim, cfg.hidden, cfg.depth,
                                                 cfg.dropout, cfg.norm, cfg.residual, cfg.cell)
        self.sentence_pool = AttentionPool(self.sentence_encoder.output_dim, cfg.attention_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.sentence_encoder.output_dim, cfg.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.sentence_tokens is not None and batch.sentence_lengths is not None
        assert batch.doc_sentences is not None
        sentences, self.last_word_attention = encode_and_pool(
            self.word_encoder, self.word_pool, batch.sentence_tokens, batch.sentence_lengths)
        per_doc = pad_sequence(list(sentences.split(batch.doc_sentences.tolist())), batch_first=True)
        doc, self.last_sentence_attention = encode_and_pool(
            self.sentence_encoder, self.sentence_pool, per_doc, batch.doc_sentences)
        return self.head(self.dropout(doc))


class KimCNN(nn.Module):
    """Kim (2014): learned embeddings, convolutions of several widths, max over time, linear."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=cfg.pad_id)
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.embedding_dim, cfg.num_filters, width) for width in cfg.filter_widths)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.num_filters * len(cfg.filter_widths), cfg.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.input_ids is not None and batch.attention_mask is not None
        x = self.dropout(self.embedding(batch.input_ids)).transpose(1, 2)  # [B, E, T]
        pooled = []
        for conv, width in zip(self.convs, self.cfg.filter_widths, strict=True):
            h = torch.relu(conv(x))  # [B, F, windows]
            # a window counts when its last token is real; a document shorter than the window
            # still has its first window
            real = batch.attention_mask[:, width - 1: width - 1 + h.shape[2]].bool().clone()
            real[:, 0] = True
            pooled.append(h.masked_fill(~real[:, None, :], float("-inf")).amax(dim=2))
        return self.head(self.dropout(torch.cat(pooled, dim=1)))


class RNNClassifier(nn.Module):
    """BiLSTM (or BiGRU) + attention over learned embeddings of the token ids."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=cfg.pad_id)
        self.encoder = RecurrentEncoder(cfg.embedding_dim, cfg.hidden, cfg.depth, cfg.dropout, cfg.norm,
                                        cfg.residual, cfg.cell)
        self.pool = AttentionPool(self.encoder.output_dim, cfg.attention_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_dim, cfg.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.input_ids is not None and batch.lengths is not None
        x = self.dropout(self.embedding(batch.input_ids))
        doc, self.last_attention = encode_and_pool(self.encoder, self.pool, x, batch.lengths)
        return self.head(self.dropout(doc))


def build_model(cfg: ModelConfig) -> nn.Module:
    """The module for `cfg.arch` (except `finetune`, built by bertclf.finetune)."""
    if cfg.arch == "han":
        return HANClassifier(cfg)
    if cfg.arch == "bigru":
        return BiGRUClassifier(cfg)
    if cfg.arch == "cnn":
        return KimCNN(cfg)
    if cfg.arch == "rnn":
        return RNNClassifier(cfg)
    raise ConfigError(f"params.yaml: train.arch={cfg.arch!r} is not one of {', '.join(ARCHS)}")
