"""What every model family declares (`Arch`), and the config that rebuilds a trained model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

from bertclf.data.stores import Batch, Reads, Store

WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ModelConfig:
    """Everything that rebuilds a model of any arch (saved as ``model`` in ``bertclf.json``)."""

    arch: str
    input_dim: int  # width of the token vectors (han, bigru)
    num_labels: int
    hidden: int = 50
    depth: int = 1
    dropout: float = 0.5
    norm: str = "none"
    residual: bool = False
    attention_dim: int = 100
    cell: str = "gru"  # the recurrent cell of han / bigru / rnn
    vocab_size: int = 0  # cnn, rnn: learned embeddings over the tokenizer's ids
    pad_id: int = 0
    embedding_dim: int = 128
    num_filters: int = 100  # cnn: filters per width
    filter_widths: tuple[int, ...] = (3, 4, 5)
    attention_dropout: float | None = None  # finetune: None keeps the encoder's own
    hidden_dropout: float | None = None  # finetune: None keeps the encoder's own
    window_pool: str = "mean"  # finetune: how the logits of a document's windows are pooled
    freeze_embeddings: bool = False  # finetune: the word embeddings get no gradient

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "filter_widths" in known:
            known["filter_widths"] = tuple(known["filter_widths"])
        return cls(**known)


def save_weights(model: nn.Module, out: Path) -> None:
    save_file(model.state_dict(), out / WEIGHTS)


def parameters(model: nn.Module, config: Any) -> Any:
    """The optimizer's parameter groups: one group, AdamW's weight decay on everything."""
    return model.parameters()


@dataclass(frozen=True)
class Arch:
    """A model family: what it reads, how it is built, batched, saved, loaded and exported.

    Training, evaluation, prediction, export and featurize ask these; none of them names an arch.
    """

    name: str
    reads: Reads  # "features" (the featurize output) or "tokens" (token ids)
    build: Callable[[ModelConfig, Path], nn.Module]  # (config, encoder dir) -> a fresh model
    batch: Callable[[Store, np.ndarray, ModelConfig], Batch]  # documents idx of a store -> inputs
    export: Literal["model", "encoder"] | None = None  # ONNX: the whole model, its frozen encoder, or none
    param_groups: Callable[[nn.Module, Any], Any] = parameters  # (model, Config) -> optimizer groups
    save: Callable[[nn.Module, Path], None] = save_weights  # the weights into a model directory
    fixed: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields the family fixes
    bf16_by_default: bool = False  # train.precision=auto: bf16 autocast where the hardware has bf16 units
    load: Callable[[ModelConfig, Path], nn.Module] | None = None  # default: build, then load the weights

    def restore(self, cfg: ModelConfig, model_dir: Path) -> nn.Module:
        """The trained model saved in `model_dir`."""
        if self.load is not None:
            return self.load(cfg, model_dir)
        model = self.build(cfg, model_dir)
        model.load_state_dict(load_file(model_dir / WEIGHTS))
        return model
