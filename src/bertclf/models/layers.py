"""The recurrent parts shared by han, bigru and rnn.

- `RecurrentEncoder`: `depth` stacked bidirectional GRU (or LSTM) layers run on packed sequences,
  so padding is never computed, normalized over real tokens only (`layer` or `batch`), with
  optional residual connections between stacked layers and dropout;
- `AttentionPool`: the additive attention of Yang et al. (a context vector scores
  ``tanh(W h + b)``), softmax over real positions only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from bertclf.errors import ConfigError

CELLS = ("gru", "lstm")


def make_norm(norm: str, dim: int) -> nn.Module:
    if norm == "layer":
        return nn.LayerNorm(dim)
    if norm == "batch":
        return nn.BatchNorm1d(dim)
    return nn.Identity()


def _like(packed: PackedSequence, data: torch.Tensor) -> PackedSequence:
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


class RecurrentEncoder(nn.Module):
    """Stacked bidirectional layers; norm, residual and dropout act on the packed (real) tokens."""

    def __init__(self, input_dim: int, hidden: int, depth: int, dropout: float, norm: str,
                 residual: bool, cell: str = "gru"):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"params.yaml: depth={depth} must be at least 1")
        if cell not in CELLS:
            raise ConfigError(f"cell={cell!r} is not one of {', '.join(CELLS)}")
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
