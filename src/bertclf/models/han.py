"""`han`: the Hierarchical Attention Network (Yang et al. 2016) over frozen token vectors.

Word-level BiGRU + attention pools each sentence's token vectors into a sentence vector;
sentence-level BiGRU + attention pools those into a document vector; a linear layer classifies it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from bertclf.config import RecurrentConfig
from bertclf.data.stores import Batch, FeatureStore
from bertclf.models.base import Arch, Dims
from bertclf.models.layers import AttentionPool, RecurrentEncoder, encode_and_pool


class HANClassifier(nn.Module):
    """Hierarchical Attention Network: words -> sentence vectors -> document vector."""

    def __init__(self, cfg: RecurrentConfig, dims: Dims):
        super().__init__()
        self.word_encoder = RecurrentEncoder(dims.input_dim, cfg.hidden, cfg.depth, cfg.dropout,
                                             cfg.norm, cfg.residual)
        self.word_pool = AttentionPool(self.word_encoder.output_dim, cfg.attention_dim)
        self.sentence_encoder = RecurrentEncoder(self.word_encoder.output_dim, cfg.hidden, cfg.depth,
                                                 cfg.dropout, cfg.norm, cfg.residual)
        self.sentence_pool = AttentionPool(self.sentence_encoder.output_dim, cfg.attention_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(self.sentence_encoder.output_dim, dims.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.sentence_tokens is not None and batch.sentence_lengths is not None
        assert batch.doc_sentences is not None
        sentences, self.last_word_attention = encode_and_pool(
            self.word_encoder, self.word_pool, batch.sentence_tokens, batch.sentence_lengths)
        per_doc = pad_sequence(list(sentences.split(batch.doc_sentences.tolist())), batch_first=True)
        doc, self.last_sentence_attention = encode_and_pool(
            self.sentence_encoder, self.sentence_pool, per_doc, batch.doc_sentences)
        return self.head(self.dropout(doc))


def _batch(store: FeatureStore, idx: np.ndarray, cfg: RecurrentConfig, dims: Dims) -> Batch:
    return store.sentence_batch(idx)


def _build(cfg: RecurrentConfig, dims: Dims, encoder_dir: Path) -> nn.Module:
    return HANClassifier(cfg, dims)


ARCH = Arch("han", reads="features", build=_build, batch=_batch, export="encoder")
