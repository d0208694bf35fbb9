"""The optimizer, the learning-rate schedule and the class weights of a training run."""

from __future__ import annotations

import torch
from torch import nn

from bertclf.config import TrainConfig
from bertclf.models import Arch
from bertclf.models.base import Knobs


def make_optimizer(model: nn.Module, arch: Arch, recipe: TrainConfig, knobs: Knobs) -> torch.optim.Optimizer:
    """AdamW over the arch's parameter groups (layer-wise LR decay for finetune); the fused kernel
    (one pass over all parameters, as Trainer's default `adamw_torch_fused`) where the
    parameters' device has it."""
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(arch.param_groups(model, recipe, knobs), lr=recipe.lr,
                             weight_decay=recipe.weight_decay, fused=fused)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The LR schedule, stepped once per optimizer step (torch and transformers schedulers)."""
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_ratio * total)
    period = steps_per_epoch * cfg.lr_step_epochs
    if cfg.lr_decay == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=period, gamma=cfg.lr_gamma)
    if cfg.lr_decay == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma ** (1 / period))
    if cfg.lr_decay == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if cfg.lr_decay == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)
