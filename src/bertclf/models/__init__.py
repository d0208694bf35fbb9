"""The arch registry: every model family, and what it reads, and how it is built, batched,
saved, loaded and exported (`bertclf.models.base.Arch`).

    arch = models.get(config.train.arch)
    model = arch.build(config.model, dims_for(arch, encoder_dir, input_dim, num_labels), encoder_dir)

Adding an arch: a module here declaring its `Arch`, listed below; its knobs are a section of
params.yaml named like the arch (a dataclass in `bertclf.config`).
"""

from __future__ import annotations

import json
from pathlib import Path

from bertclf.errors import ConfigError
from bertclf.models import cnn, finetune, han, recurrent
from bertclf.models.base import WEIGHTS, Arch, Dims

# from the baselines trained from scratch to the BERT models (the order of comparison tables)
ARCHS: dict[str, Arch] = {
    a.name: a for a in (cnn.ARCH, recurrent.RNN, recurrent.BIGRU, han.ARCH, finetune.ARCH)}

__all__ = ["ARCHS", "WEIGHTS", "Arch", "Dims", "dims_for", "get"]


def get(name: str) -> Arch:
    """The arch called `name`, or a ConfigError naming the choices."""
    if name not in ARCHS:
        raise ConfigError(f"params.yaml: train.arch={name!r} is not one of {', '.join(ARCHS)}")
    return ARCHS[name]


def dims_for(arch: Arch, encoder_dir: Path, input_dim: int, num_labels: int) -> Dims:
    """The dimensions of a new model of `arch`: models over token vectors take their width, models
    over token ids the vocabulary size and padding id of the encoder's config."""
    if arch.reads == "features":
        return Dims(num_labels=num_labels, input_dim=input_dim)
    encoder_cfg = json.loads((encoder_dir / "config.json").read_text())
    return Dims(num_labels=num_labels, vocab_size=int(encoder_cfg["vocab_size"]),
                pad_id=int(encoder_cfg.get("pad_token_id") or 0))
