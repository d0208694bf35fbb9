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

from bertclf.data.stores import Batch, FeatureStore, TokenStore
from bertclf.models.base import Arch, ModelConfig
from bertclf.models.layers import AttentionPool, RecurrentEncoder, encode_and_pool


class RecurrentClassifier(nn.Module):
    """Stacked bidirectional layers + attention over a document's tokens, then a linear layer.
    With `vocab_size`, the tokens are learned embeddings of ids (with dropout); else vectors."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.vocab_size:
            self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=cfg.pad_id)
        width = cfg.embedding_dim if cfg.vocab_size else cfg.input_dim
        self.encoder = RecurrentEncoder(width, cfg.hidden, cfg.depth, cfg.dropout, cfg.norm, cfg.residual,
                                        cfg.cell)
        self.pool = AttentionPool(self.encoder.output_dim, cfg.attention_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.encoder.output_dim, cfg.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.lengths is not None
        if self.cfg.vocab_size:
            assert batch.input_ids is not None
            x = self.dropout(self.embedding(batch.input_ids))
        else:
            assert batch.tokens is not None
            x = batch.tokens
        doc, self.last_attention = encode_and_pool(self.encoder, self.pool, x, batch.lengths)
        return self.head(self.dropout(doc))


def _build(cfg: ModelConfig, encoder_dir: Path) -> nn.Module:
    return RecurrentClassifier(cfg)


def _vector_batch(store: FeatureStore, idx: np.ndarray, cfg: ModelConfig) -> Batch:
    return store.vector_batch(idx)


def _token_batch(store: TokenStore, idx: np.ndarray, cfg: ModelConfig) -> Batch:
    return store.token_batch(idx, cfg.pad_id)


BIGRU = Arch("bigru", reads="features", build=_build, batch=_vector_batch, export="encoder")
# packed sequences over learned embeddings have no ONNX form, and there is no encoder to export
RNN = Arch("rnn", reads="tokens", build=_build, batch=_token_batch, export=None, fixed={"cell": "lstm"})
