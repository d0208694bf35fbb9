"""`train.arch: finetune`: the pre-trained encoder with a classification head, trained end to end.

`AutoModelForSequenceClassification` (SDPA attention), AdamW with layer-wise LR decay
(Sun et al. 2019: layer ``l`` of ``L`` gets ``lr * decay ** (L - 1 - l)``, the embeddings
``lr * decay ** L``, the head ``lr``), no weight decay on biases and norms.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bertclf.models import Batch

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_LAYER = re.compile(r"\.layer\.(\d+)\.")


class FineTuneClassifier(nn.Module):
    """A Hugging Face sequence classifier behind the same `forward(batch)` as the other archs."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits


def load_finetune(model_dir: Path, num_labels: int | None = None) -> FineTuneClassifier:
    """From a local directory only: safetensors weights, no remote code, SDPA attention."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"num_labels": num_labels} if num_labels else {}
    hf = AutoModelForSequenceClassification.from_pretrained(
        model_dir, local_files_only=True, trust_remote_code=False, use_safetensors=True,
        attn_implementation="sdpa", **kwargs)
    return FineTuneClassifier(hf)


def save_finetune(model: FineTuneClassifier, out: Path, encoder_dir: Path) -> None:
    """The Hugging Face model (safetensors) and the encoder's tokenizer files into `out`."""
    model.model.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (encoder_dir / name).is_file():
            shutil.copyfile(encoder_dir / name, out / name)


def layerwise_param_groups(model: FineTuneClassifier, lr: float, decay: float,
                           weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise LR decay and no decay on biases / norms."""
    layers = int(model.model.config.num_hidden_layers)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        match = _LAYER.search(name)
        if match:
            depth = layers - 1 - int(match.group(1))
        elif ".embeddings." in name:
            depth = layers
        else:  # pooler and classification head
            depth = 0
        wd = 0.0 if param.ndim == 1 else weight_decay
        groups.setdefault((lr * decay**depth, wd), []).append(param)
    return [{"params": params, "lr": group_lr, "weight_decay": wd}
            for (group_lr, wd), params in sorted(groups.items(), key=lambda kv: -kv[0][0])]
