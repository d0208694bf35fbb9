"""`finetune`: the pre-trained encoder with a classification head, trained end to end.

`AutoModelForSequenceClassification` (SDPA attention), AdamW with layer-wise LR decay
(Sun et al. 2019: layer ``l`` of ``L`` gets ``lr * decay ** (L - 1 - l)``, the embeddings
``lr * decay ** L``, the head ``lr``), no weight decay on biases and norms. A saved model is a
Hugging Face model directory.

With sliding windows (``tokenize.windows > 1``) a batch holds the windows of its documents; the
encoder scores each window and `pool_windows` makes one document's logits of its windows' (mean
or max, ``finetune.window_pool``), in training as in prediction: the loss is the document's, and
its gradient reaches every window (mean) or the one that decided (max).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertclf.config import FinetuneConfig, TrainConfig
from bertclf.data.stores import Batch, TokenStore
from bertclf.encoder import from_local
from bertclf.models.base import Arch, Dims

_LAYER = re.compile(r"\.layer\.(\d+)\.")


def pool_windows(logits: torch.Tensor, doc_windows: torch.Tensor | None, how: str) -> torch.Tensor:
    """Per-window logits ``[W, C]`` to per-document ``[B, C]``: the mean or max over each
    document's consecutive `doc_windows` rows; `logits` as they are without windows."""
    if doc_windows is None:
        return logits
    doc = torch.repeat_interleave(torch.arange(len(doc_windows), device=logits.device),
                                  doc_windows.to(logits.device))
    index = doc[:, None].expand_as(logits)
    out = logits.new_zeros((len(doc_windows), logits.shape[1]))
    reduce = "amax" if how == "max" else "mean"
    return out.scatter_reduce(0, index, logits, reduce=reduce, include_self=False)


class FineTuneClassifier(nn.Module):
    """A Hugging Face sequence classifier behind the same `forward(batch)` as the other archs."""

    def __init__(self, hf_model: nn.Module, window_pool: str = "mean"):
        super().__init__()
        self.model = hf_model
        self.window_pool = window_pool

    def forward(self, batch: Batch) -> torch.Tensor:
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        return pool_windows(logits, batch.doc_windows, self.window_pool)


def load_finetune(model_dir: Path, num_labels: int | None = None, attention_dropout: float | None = None,
                  window_pool: str = "mean", hidden_dropout: float | None = None) -> FineTuneClassifier:
    """From a local directory: the encoder with a fresh head (`num_labels`), or a trained model;
    `attention_dropout` and `hidden_dropout` replace the encoder's dropout on attention
    probabilities and on hidden states (the head's too)."""
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"num_labels": num_labels} if num_labels else {}
    if attention_dropout is not None:
        kwargs["attention_probs_dropout_prob"] = attention_dropout
    if hidden_dropout is not None:
        kwargs["hidden_dropout_prob"] = hidden_dropout
    return FineTuneClassifier(from_local(AutoModelForSequenceClassification, model_dir,
                                         attn_implementation="sdpa", **kwargs), window_pool)


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


def _param_groups(model: nn.Module, recipe: TrainConfig, cfg: FinetuneConfig) -> list[dict[str, Any]]:
    assert isinstance(model, FineTuneClassifier)
    return layerwise_param_groups(model, recipe.lr, cfg.layer_lr_decay, recipe.weight_decay)


def _build(cfg: FinetuneConfig, dims: Dims, encoder_dir: Path) -> nn.Module:
    model = load_finetune(encoder_dir, dims.num_labels, cfg.attention_dropout, cfg.window_pool,
                          cfg.hidden_dropout)
    if cfg.freeze_embeddings:  # layerwise_param_groups leaves out what needs no gradient
        model.model.get_input_embeddings().weight.requires_grad_(False)
    return model


def _batch(store: TokenStore, idx: np.ndarray, cfg: FinetuneConfig, dims: Dims) -> Batch:
    return store.window_batch(idx, dims.pad_id)


def _save(model: nn.Module, out: Path) -> None:
    assert isinstance(model, FineTuneClassifier)
    model.model.save_pretrained(out, safe_serialization=True)


def _load(cfg: FinetuneConfig, dims: Dims, model_dir: Path) -> nn.Module:
    return load_finetune(model_dir, window_pool=cfg.window_pool)


def _head(model: nn.Module) -> nn.Linear:
    """The output layer: BERT's `classifier`, or the last projection of MPNet's classification head."""
    assert isinstance(model, FineTuneClassifier)
    classifier = model.model.classifier
    return classifier if isinstance(classifier, nn.Linear) else classifier.out_proj


ARCH = Arch("finetune", reads="tokens", build=_build, batch=_batch, export="model",
            param_groups=_param_groups, save=_save, hf_model=True, load=_load, bf16_by_default=True,
            head=_head)
