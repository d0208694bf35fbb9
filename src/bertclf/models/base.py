"""What every model family declares (`Arch`), and the dimensions a trained model is built with.

A model is built from two things: its family's knobs — its own section of params.yaml, a
dataclass of `bertclf.config` (``han``: `RecurrentConfig`, ``cnn``: `CNNConfig`, …) — and its
`Dims`, which come from the data (labels, vector width) and the encoder (vocabulary, padding id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

from bertclf.config import TrainConfig
from bertclf.data.stores import Batch, Reads, Store

WEIGHTS = "model.safetensors"

Knobs = Any  # the arch's section dataclass of bertclf.config (RecurrentConfig, CNNConfig, …)


@dataclass(frozen=True)
class Dims:
    """The sizes a model is built with that are not knobs: they follow from the data and encoder."""

    num_labels: int
    input_dim: int = 0  # width of the token vectors (han, bigru)
    vocab_size: int = 0  # cnn, rnn: learned embeddings over the tokenizer's ids
    pad_id: int = 0


def save_weights(model: nn.Module, out: Path) -> None:
    save_file(model.state_dict(), out / WEIGHTS)


def parameters(model: nn.Module, recipe: TrainConfig, knobs: Knobs) -> Any:
    """The optimizer's parameter groups: one group, AdamW's weight decay on everything."""
    return model.parameters()


@dataclass(frozen=True)
class Arch:
    """A model family: what it reads, how it is built, batched, saved, loaded and exported.

    Training, evaluation, prediction, export and featurize ask these; none of them names an arch.
    """

    name: str  # also the name of its knobs' section in params.yaml
    reads: Reads  # "features" (the featurize output) or "tokens" (token ids)
    build: Callable[[Knobs, Dims, Path], nn.Module]  # (knobs, dims, encoder dir) -> a fresh model
    batch: Callable[[Store, np.ndarray, Knobs, Dims], Batch]  # documents idx of a store -> inputs
    export: Literal["model", "encoder"] | None = None  # ONNX: the whole model, its frozen encoder, or none
    # (model, the training recipe, its knobs) -> the optimizer's parameter groups
    param_groups: Callable[[nn.Module, TrainConfig, Knobs], Any] = parameters
    save: Callable[[nn.Module, Path], None] = save_weights  # the weights into a model directory
    hf_model: bool = False  # `save` writes a Hugging Face model: transformers.pipeline() loads it
    bf16_by_default: bool = False  # train.precision=auto: bf16 autocast where the hardware has bf16 units
    load: Callable[[Knobs, Dims, Path], nn.Module] | None = None  # default: build, then load the weights
    # the output layer, which a regression model's target scale is folded into
    head: Callable[[nn.Module], nn.Linear] = lambda model: model.head

    def restore(self, knobs: Knobs, dims: Dims, model_dir: Path) -> nn.Module:
        """The trained model saved in `model_dir`."""
        if self.load is not None:
            return self.load(knobs, dims, model_dir)
        model = self.build(knobs, dims, model_dir)
        model.load_state_dict(load_file(model_dir / WEIGHTS))
        return model
