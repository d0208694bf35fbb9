"""`cnn`: Kim (2014), learned embeddings of the token ids, convolutions of several widths, max over
time, a linear layer: the from-scratch baseline the seeds compare BERT against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertclf.config import CNNConfig
from bertclf.data.stores import Batch, TokenStore
from bertclf.models.base import Arch, Dims


class KimCNN(nn.Module):
    """Kim (2014): learned embeddings, convolutions of several widths, max over time, linear."""

    def __init__(self, cfg: CNNConfig, dims: Dims):
        super().__init__()
        self.filter_widths = cfg.filter_widths
        self.embedding = nn.Embedding(dims.vocab_size, cfg.embedding_dim, padding_idx=dims.pad_id)
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.embedding_dim, cfg.num_filters, width) for width in cfg.filter_widths)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.num_filters * len(cfg.filter_widths), dims.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.input_ids is not None and batch.attention_mask is not None
        x = self.dropout(self.embedding(batch.input_ids)).transpose(1, 2)  # [B, E, T]
        pooled = []
        for conv, width in zip(self.convs, self.filter_widths, strict=True):
            h = torch.relu(conv(x))  # [B, F, windows]
            # a window counts when its last token is real; a document shorter than the window
            # still has its first window
            real = batch.attention_mask[:, width - 1: width - 1 + h.shape[2]].bool().clone()
            real[:, 0] = True
            pooled.append(h.masked_fill(~real[:, None, :], float("-inf")).amax(dim=2))
        return self.head(self.dropout(torch.cat(pooled, dim=1)))


def _build(cfg: CNNConfig, dims: Dims, encoder_dir: Path) -> nn.Module:
    return KimCNN(cfg, dims)


def _batch(store: TokenStore, idx: np.ndarray, cfg: CNNConfig, dims: Dims) -> Batch:
    # at least the widest filter: every document has one window per width
    return store.token_batch(idx, dims.pad_id, min_width=max(cfg.filter_widths))


ARCH = Arch("cnn", reads="tokens", build=_build, batch=_batch, export="model")
