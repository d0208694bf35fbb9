"""A trained classifier directory: save format, loading, and what it needs to predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from bertclf.errors import BertclfError
from bertclf.models import ModelConfig, build_model

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "bertclf.json"  # beside a fine-tuned model, config.json is the Hugging Face config


def load_classifier(model_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model described by `bertclf.json` and load its safetensors weights."""
    model_dir = Path(model_dir)
    for name in (CONFIG, WEIGHTS):
        if not (model_dir / name).is_file():
            raise BertclfError(f"{model_dir}: not a bertclf model directory ({name} is missing)")
    config = json.loads((model_dir / CONFIG).read_text(encoding="utf-8"))
    version = config.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise BertclfError(f"{model_dir}: written by a newer bertclf (format {version}); upgrade bertclf")
    model_cfg = ModelConfig.from_dict(config["model"])
    if model_cfg.arch == "finetune":
        from bertclf.finetune import load_finetune

        return load_finetune(model_dir).eval(), config
    model = build_model(model_cfg)
    model.load_state_dict(load_file(model_dir / WEIGHTS))
    return model.eval(), config
