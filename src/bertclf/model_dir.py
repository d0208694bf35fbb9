"""The saved model directory (``models/classifier``): what it holds, writing it, reading it back.

A model directory is self-contained: the weights (as its arch saves them: ``model.safetensors``,
or a Hugging Face model for `finetune`), ``bertclf.json`` (format version, the ModelConfig, the
training recipe, the data's labels and tokenize settings, the encoder it came from),
``labels.json``, the tokenizer files, a model card (``README.md``), and for archs that read token
vectors the frozen encoder itself (``encoder/``) that makes them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from torch import nn

from bertclf.atomic import atomic_path, write_json
from bertclf.config import Config
from bertclf.data.encoder_source import read_source
from bertclf.encoder import copy_tokenizer_files
from bertclf.errors import BertclfError
from bertclf.model_card import model_card, name_labels, set_max_length
from bertclf.models import WEIGHTS, ModelConfig, get

FORMAT_VERSION = 1
CONFIG = "bertclf.json"  # beside a fine-tuned model, config.json is the Hugging Face config
ENCODER = "encoder"  # archs that read token vectors: the frozen encoder that makes them

__all__ = ["CONFIG", "ENCODER", "FORMAT_VERSION", "WEIGHTS", "load_classifier", "read_config",
           "save_model_dir"]


def save_model_dir(out: Path, model: nn.Module, model_cfg: ModelConfig, config: Config, meta: dict[str, Any],
                   encoder_dir: Path, summary: dict[str, Any]) -> None:
    """Write the whole model directory `out` (atomically), with its model card."""
    arch = get(model_cfg.arch)
    recipe = config.train
    labels = [str(label) for label in meta.get("labels", [])]
    with atomic_path(out, is_dir=True) as tmp:
        arch.save(model, tmp)
        hf_native = (tmp / "config.json").is_file()  # the arch saved a Hugging Face model
        if hf_native and labels:
            name_labels(tmp, labels)
        copy_tokenizer_files(encoder_dir, tmp)
        tokenize = {**asdict(config.tokenize), **meta.get("tokenize", {})}  # what the data was cut to
        set_max_length(tmp, int(tokenize["max_length"]))
        source = read_source(encoder_dir)
        card = model_card(config, labels, summary, hf_native, source, tokenize)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if arch.reads == "features":
            (tmp / ENCODER).mkdir()
            for f in encoder_dir.iterdir():
                if f.is_file():
                    shutil.copyfile(f, tmp / ENCODER / f.name)
        text = config.data.text_column or "text"
        write_json(tmp / CONFIG, {"format_version": FORMAT_VERSION, "model": model_cfg.to_dict(),
                                  "train": asdict(recipe), "data": meta, "encoder": source,
                                  # the columns of the training file the text came from: predict's default
                                  "input": {"text_column": [text] if isinstance(text, str) else list(text)}})
        write_json(tmp / "labels.json", {"labels": meta.get("labels", [])})


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
    """The model `bertclf.json` describes, with its weights, in eval mode; and the config."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    if not (model_dir / WEIGHTS).is_file():
        raise BertclfError(f"{model_dir}: not a bertclf model directory ({WEIGHTS} is missing)")
    model_cfg = ModelConfig.from_dict(config["model"])
    try:
        return get(model_cfg.arch).restore(model_cfg, model_dir).eval(), config
    except (SafetensorError, RuntimeError, ValueError) as exc:  # truncated, damaged, another model's
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BertclfError(f"{model_dir / WEIGHTS}: damaged or not this model's weights ({first}); retrain "
                           "(dvc repro train) or copy the whole model directory again") from None
