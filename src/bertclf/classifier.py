"""A trained classifier directory: save format, loading, and what it needs to predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from bertclf.config import FEATURE_ARCHS
from bertclf.errors import BertclfError
from bertclf.finetune import TOKENIZER_FILES
from bertclf.models import ModelConfig, build_model

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "bertclf.json"  # beside a fine-tuned model, config.json is the Hugging Face config
ENCODER = "encoder"  # han / bigru: the frozen encoder that makes their token vectors


def save_preprocessing(out: Path, arch: str, encoder_dir: Path) -> None:
    """Copy what turns raw text into this model's input: the tokenizer files, and for the archs
    that read token vectors the encoder itself (``encoder/``), so the directory is self-contained."""
    for name in TOKENIZER_FILES:
        if (encoder_dir / name).is_file() and not (out / name).exists():
            shutil.copyfile(encoder_dir / name, out / name)
    if arch in FEATURE_ARCHS:
        (out / ENCODER).mkdir()
        for f in encoder_dir.iterdir():
            if f.is_file():
                shutil.copyfile(f, out / ENCODER / f.name)


def read_config(model_dir: Path) -> dict[str, Any]:
    """`bertclf.json`, checked: present, and not written by a newer format version."""
    path = Path(model_dir) / CONFIG
    if not Path(model_dir).is_dir():
        raise BertclfError(f"{model_dir}: no such model directory")
    if not path.is_file():
        raise BertclfError(f"{model_dir}: not a bertclf model directory ({CONFIG} is missing)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BertclfError(f"{path}: unreadable ({exc})") from None
    version = config.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BertclfError(f"{model_dir}: written by a newer bertclf (format {version}, this one reads "
                           f"up to {FORMAT_VERSION}); upgrade bertclf")
    if "model" not in config:
        raise BertclfError(f"{path}: no 'model' section; the file is damaged")
    return config


def load_classifier(model_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model described by `bertclf.json` and load its safetensors weights."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    if not (model_dir / WEIGHTS).is_file():
        raise BertclfError(f"{model_dir}: not a bertclf model directory ({WEIGHTS} is missing)")
    model_cfg = ModelConfig.from_dict(config["model"])
    if model_cfg.arch == "finetune":
        from bertclf.finetune import load_finetune

        return load_finetune(model_dir).eval(), config
    model = build_model(model_cfg)
    model.load_state_dict(load_file(model_dir / WEIGHTS))
    return model.eval(), config
