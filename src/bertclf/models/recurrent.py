"""`bigru` and `rnn`: one bidirectional recurrent layer stack with attention over a document.

- `bigru` reads the frozen token vectors (the featurize output) and runs BiGRU layers;
- `rnn` learns embeddings of the tokenizer's ids (no pre-training) and runs BiLSTM layers, the
  from-scratch baseline the seeds compare BERT against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertclf.config import RecurrentConfig, RNNConfig
from bertclf.data.stores import Batch, FeatureStore, TokenStore
from bertclf.models.base import Arch, Dims
from bertclf.models.layers import AttentionPool, RecurrentEncoder, encode_and_pool


class RecurrentClassifier(nn.Module):
    """Stacked bidirectional layers + attention over a document's tokens, then a linear layer.
    With `vocab_size`, the tokens are learned embeddings of ids (with dropout); else vectors."""

    def __init__(self, cfg: RecurrentConfig, dims: Dims, cell: str = "gru"):
        super().__init__()
        self.embedding: nn.Embedding | None = None
        width = dims.input_dim
        if dims.vocab_size:
            assert isinstance(cfg, RNNConfig)
            self.embedding = nn.Embedding(dims.vocab_size, cfg.embedding_dim, padding_idx=dims.pad_id)
            width = cfg.embedding_dim
        self.encoder = RecurrentEncoder(width, cfg.hidden, cfg.depth, cfg.dropout, cfg.norm, cfg.residual,
                                        cell)
        self.pool = AttentionPool(self.encoder.output_dim, cfg.attention_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_dim, dims.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.lengths is not None
        if self.embedding is not None:
            assert batch.input_ids is not None
            x = self.dropout(self.embedding(batch.input_ids))
        else:
            assert batch.tokens is not None
            x = batch.tokens
        doc, self.last_attention = encode_and_pool(self.encoder, self.pool, x, batch.lengths)
        return self.head(self.dropout(doc))


def _build_gru(cfg: RecurrentConfig, dims: Dims, encoder_dir: Path) -> nn.Module:
    return RecurrentClassifier(cfg, dims, "gru")


def _build_lstm(cfg: RNNConfig, dims: Dims, encoder_dir: Path) -> nn.Module:
    return RecurrentClassifier(cfg, dims, "lstm")


def _vector_batch(store: FeatureStore, idx: np.ndarray, cfg: RecurrentConfig, dims: Dims) -> Batch:
    return store.vector_batch(idx)


def _token_batch(store: TokenStore, idx: np.ndarray, cfg: RNNConfig, dims: Dims) -> Batch:
    return store.token_batch(idx, dims.pad_id)


BIGRU = Arch("bigru", reads="features", build=_build_gru, batch=_vector_batch, export="encoder")
# packed sequences over learned embeddings have no ONNX form, and there is no encoder to export
RNN = Arch("rnn", reads="tokens", build=_build_lstm, batch=_token_batch, export=None)
