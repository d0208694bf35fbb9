"""The arch registry: every model family, and what it reads, and how it is built, batched,
saved, loaded and exported (`bertclf.models.base.Arch`).

    arch = models.get("han")
    model = arch.build(model_config(config, inputs, dim, num_labels), inputs.encoder)

Adding an arch: a module here declaring its `Arch`, listed below; its knobs are a section of
params.yaml (a dataclass in `bertclf.config`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from bertclf.errors import ConfigError
from bertclf.models import cnn, finetune, han, recurrent
from bertclf.models.base import WEIGHTS, Arch, ModelConfig

# from the baselines trained from scratch to the BERT models (the order of comparison tables)
ARCHS: dict[str, Arch] = {
    a.name: a for a in (cnn.ARCH, recurrent.RNN, recurrent.BIGRU, han.ARCH, finetune.ARCH)}

__all__ = ["ARCHS", "WEIGHTS", "Arch", "ModelConfig", "get", "model_config"]


def get(name: str) -> Arch:
    """The arch called `name`, or a ConfigError naming the choices."""
    if name not in ARCHS:
        raise ConfigError(f"params.yaml: train.arch={name!r} is not one of {', '.join(ARCHS)}")
    return ARCHS[name]


def model_config(config: Any, encoder_dir: Path, input_dim: int, num_labels: int) -> ModelConfig:
    """The ModelConfig of `config.train.arch` with its section's knobs; models over token ids take
    the vocabulary size and padding id from the encoder's config."""
    arch = get(config.train.arch)
    pad_id = vocab = 0
    if arch.reads == "tokens":
        encoder_cfg = json.loads((encoder_dir / "config.json").read_text())
        pad_id, vocab = int(encoder_cfg.get("pad_token_id") or 0), int(encoder_cfg["vocab_size"])
    names = {f.name for f in fields(ModelConfig)}
    knobs = {k: v for k, v in asdict(config.model).items() if k in names}
    return ModelConfig(arch=arch.name, input_dim=input_dim if arch.reads == "features" else 0,
                       num_labels=num_labels, vocab_size=vocab, pad_id=pad_id, **{**knobs, **arch.fixed})
