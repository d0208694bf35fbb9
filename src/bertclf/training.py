"""Train a classifier (han | bigru | finetune | cnn | rnn) with a checkpoint every epoch.

Reads top to bottom: set-up (data, model, optimizer and schedule), resume, the epoch loop
(train, validate, checkpoint, stop early), then the outputs. A killed run restarts from its last
checkpoint and ends exactly as an uninterrupted run would: batch order depends only on (seed,
epoch), and the checkpoint holds the model, optimizer, scheduler and RNG state. It resumes only
a run with the same key (config, input contents, code; see `bertclf.checkpoints`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bertclf import checkpoints
from bertclf.atomic import atomic_path, write_json
from bertclf.batching import epoch_batches, eval_batches
from bertclf.classifier import CONFIG, FORMAT_VERSION, WEIGHTS, save_preprocessing
from bertclf.config import FEATURE_ARCHS, TOKEN_ARCHS, Config, TrainConfig
from bertclf.distributed import init_distributed
from bertclf.encoders import read_source
from bertclf.errors import BertclfError
from bertclf.finetune import FineTuneClassifier, layerwise_param_groups, load_finetune, save_finetune
from bertclf.live import StageLive
from bertclf.model_inputs import Inputs, batch_maker, concat, meta_of, open_split
from bertclf.models import Batch, ModelConfig, build_model
from bertclf.plotting import plot_loss

log = logging.getLogger(__name__)


class TrainingError(BertclfError):
    """Training cannot go on (for example the loss is no longer finite)."""


@dataclass(frozen=True)
class TrainOutputs:
    model: Path  # models/classifier: the best epoch's model, self-contained for prediction
    checkpoints: Path  # models/checkpoints: one per epoch (persisted by DVC between runs)
    metrics: Path  # metrics/train.json: the dvclive summary
    plots: Path  # plots/train: per-epoch and per-step series (dvclive) and loss.png


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs; saved in every checkpoint."""

    epoch: int = 0
    step: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)


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


def class_weights(labels: np.ndarray, num_labels: int, mode: str) -> torch.Tensor | None:
    if mode != "balanced":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.ones(num_labels)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return torch.tensor(weights, dtype=torch.float32)


@torch.inference_mode()
def predict_logits(model: nn.Module, store: Any, make: Any, batch_size: int,
                   device: torch.device | str = "cpu", num_labels: int = 0,
                   subset: np.ndarray | None = None) -> np.ndarray:
    """Logits for the documents of `store` (or `subset` of them), in the store's order; rows
    outside the subset stay zero. Batched longest first."""
    model.eval()
    rows = np.arange(len(store)) if subset is None else subset
    out: np.ndarray | None = np.zeros((len(store), num_labels), dtype=np.float32) if num_labels else None
    for batch_rows in eval_batches(store.lengths[rows], batch_size):
        idx = rows[batch_rows]
        logits = model(make(store, idx).to(device)).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(store), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    assert out is not None
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: on request, or by default for finetune where the hardware has bf16 units
    (GPUs; CPUs with AMX / AVX512-BF16, where bf16 matmuls run several times faster)."""
    if cfg.precision != "auto":
        return cfg.precision == "bf16"
    if cfg.arch != "finetune":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def input_dirs(arch: str, inputs: Inputs) -> list[Path]:
    """The directories a model of `arch` reads (their contents are part of the resume key)."""
    return [inputs.features if arch in FEATURE_ARCHS else inputs.tokens, inputs.encoder]


def build_classifier(config: Config, inputs: Inputs, train_set: Any,
                     num_labels: int) -> tuple[nn.Module, ModelConfig]:
    """The model of `train.arch` with its section's knobs, and the config that rebuilds it."""
    arch = config.train.arch
    pad_id = vocab = 0
    if arch in TOKEN_ARCHS:
        encoder_cfg = json.loads((inputs.encoder / "config.json").read_text())
        pad_id = int(encoder_cfg.get("pad_token_id") or 0)
        vocab = int(encoder_cfg["vocab_size"])
    names = {f.name for f in fields(ModelConfig)}
    knobs = {k: v for k, v in asdict(config.model).items() if k in names}
    model_cfg = ModelConfig(arch=arch, input_dim=getattr(train_set, "dim", 0), num_labels=num_labels,
                            cell="lstm" if arch == "rnn" else "gru", vocab_size=vocab, pad_id=pad_id, **knobs)
    if arch == "finetune":
        return load_finetune(inputs.encoder, num_labels), model_cfg
    return build_model(model_cfg), model_cfg


def param_groups(model: nn.Module, config: Config) -> list[dict[str, Any]] | Any:
    if isinstance(model, FineTuneClassifier):
        return layerwise_param_groups(model, config.train.lr, config.finetune.layer_lr_decay,
                                      config.train.weight_decay)
    return model.parameters()


def log_step(live: StageLive | None, record: dict[str, float]) -> None:
    if live is not None:
        live.step = int(record["step"])
        live.log_metric("steps/loss", record["train_loss"])
        live.log_metric("steps/lr", record["lr"])


def log_epoch(live: StageLive | None, record: dict[str, float], state: TrainState) -> None:
    """The epoch's series, and a summary `dvc exp show` shows while training runs."""
    if live is None:
        return
    live.step = int(record["epoch"])
    live.log_metric("train/loss", record["train_loss"])
    live.log_metric("val/loss", record["val_loss"])
    live.log_metric("val/acc", record["val_acc"])
    live.summary = {"best_epoch": state.best_epoch, "train": {"loss": record["train_loss"]},
                    "val": {"loss": record["val_loss"]}}
    live.make_summary()


def train(config: Config, inputs: Inputs, out: TrainOutputs) -> dict[str, Any]:
    """Train on the train split, select on val; write the best model, metrics and plots."""
    # ---- set-up
    cfg, runtime = config.train, config.runtime
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    torch.manual_seed(cfg.seed)
    ddp = init_distributed()
    device = resolve_device(runtime.device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
    meta = meta_of(cfg.arch, inputs)
    train_set, val_set = open_split(cfg.arch, inputs, "train"), open_split(cfg.arch, inputs, "val")
    if cfg.train_on_val:
        train_set = concat(train_set, val_set)
    num_labels = max(len(meta.get("labels", [])), int(train_set.labels.max()) + 1)
    model, model_cfg = build_classifier(config, inputs, train_set, num_labels)
    model.to(device)
    make = batch_maker(cfg.arch, model_cfg.pad_id, max(model_cfg.filter_widths))
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(train_set) / cfg.batch_size) / cfg.grad_accum)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    weights = class_weights(train_set.labels, num_labels, cfg.class_weights)
    if weights is not None:
        weights = weights.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg, device))
    log.info("%s on %s: %d parameters, %d train / %d val docs, %d optimizer steps per epoch", cfg.arch,
             device, sum(p.numel() for p in model.parameters()), len(train_set), len(val_set),
             steps_per_epoch)

    # ---- resume the last checkpoint of this very run (same key), if there is one
    t_key = time.perf_counter()
    key = checkpoints.resume_key(config, input_dirs(cfg.arch, inputs))
    key_seconds = time.perf_counter() - t_key
    resume = checkpoints.prepare(out.checkpoints, key, ddp.is_main)
    ddp.barrier()
    state = TrainState()
    if resume is not None:
        saved = torch.load(resume / checkpoints.STATE, weights_only=True)
        model.load_state_dict(load_file(resume / checkpoints.WEIGHTS, device=str(device)))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        state = TrainState(**saved["state"])
        log.info("resuming after epoch %d from %s", state.epoch, resume)
    resumed_from = state.epoch
    train_seconds = 0.0  # this process's; a run log fact, kept out of the (byte-reproducible) checkpoints
    live = StageLive(out.metrics, out.plots) if ddp.is_main else None
    for record in state.steps:  # the series of the epochs already done, as an uninterrupted run has them
        log_step(live, record)
    for record in state.history:
        log_epoch(live, record, state)
    wrapped = DistributedDataParallel(model) if ddp.world > 1 else model
    forward = torch.compile(wrapped) if runtime.compile else wrapped

    # ---- the epoch loop
    while state.epoch < cfg.epochs and not state.stopped_early:
        epoch = state.epoch + 1
        model.train()
        t0 = time.perf_counter()
        total_loss, seen = 0.0, 0
        batches = epoch_batches(train_set.lengths, cfg.batch_size, cfg.seed, epoch)
        for i, idx in enumerate(batches):
            # this rank's share of the global batch; the loss is normalized by the whole batch
            # (summed class weights, or its size) so that averaging over ranks gives its mean
            mine = idx[ddp.rank::ddp.world]
            scale = float(ddp.world) if len(mine) else 0.0
            batch: Batch = make(train_set, mine if len(mine) else idx[:1]).to(device)
            labels = torch.from_numpy(train_set.labels[idx]).to(device)
            denominator = float(weights[labels].sum()) if weights is not None else float(len(idx))
            with autocast:
                logits = forward(batch).float()
            per_doc = nn.functional.cross_entropy(logits, batch.labels, weight=weights, reduction="none")
            loss = per_doc.sum() * scale / denominator
            batch_loss = float(ddp.all_sum(per_doc.detach().sum() * (scale > 0)).item()) / denominator
            if not math.isfinite(batch_loss):
                raise TrainingError(f"the loss is {batch_loss} at epoch {epoch}, step {state.step + 1}: "
                                    "lower train.lr or check the inputs")
            (loss / cfg.grad_accum).backward()
            total_loss += batch_loss * len(idx)
            seen += len(idx)
            if (i + 1) % cfg.grad_accum and i + 1 < len(batches):
                continue  # accumulate gradients over grad_accum batches
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if state.step % runtime.log_every == 0 or i + 1 == len(batches):  # and every epoch's last
                state.steps.append({"step": state.step, "epoch": epoch, "train_loss": round(batch_loss, 5),
                                    "lr": scheduler.get_last_lr()[0]})
                log_step(live, state.steps[-1])
        epoch_seconds = time.perf_counter() - t0

        shard = np.arange(len(val_set))[ddp.rank::ddp.world]
        logits = predict_logits(model, val_set, make, runtime.eval_batch_size, device, num_labels, shard)
        logits = ddp.all_sum(torch.from_numpy(logits)).numpy()
        val_loss = float(nn.functional.cross_entropy(torch.from_numpy(logits),
                                                     torch.from_numpy(val_set.labels)))
        val_acc = float((logits.argmax(1) == val_set.labels).mean())
        state.epoch = epoch
        train_seconds += epoch_seconds
        state.history.append({"epoch": epoch, "train_loss": round(total_loss / seen, 5),
                              "val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5)})
        log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.4f (%.1fs, %.0f docs/s)", epoch,
                 total_loss / seen, val_loss, val_acc, epoch_seconds, seen / epoch_seconds)
        if val_acc > state.best_acc or cfg.train_on_val:
            state.best_acc, state.best_epoch, state.bad_epochs = val_acc, epoch, 0
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= cfg.patience
        if ddp.is_main:
            checkpoints.save_checkpoint(out.checkpoints / f"epoch_{epoch}", model, optimizer, scheduler,
                                        asdict(state), key)
        log_epoch(live, state.history[-1], state)
        ddp.barrier()

    # ---- outputs (rank 0): the best epoch's model, the summary, plots
    best = out.checkpoints / f"epoch_{state.best_epoch}" / checkpoints.WEIGHTS
    model.load_state_dict(load_file(best, device=str(device)))
    report = {
        "arch": cfg.arch, "best_epoch": state.best_epoch, "epochs_run": state.epoch,
        "stopped_early": state.stopped_early, "best_val_acc": round(state.best_acc, 5),
        "final_train_loss": state.history[-1]["train_loss"], "final_val_loss": state.history[-1]["val_loss"],
        "parameters": sum(p.numel() for p in model.parameters()), "trained_on_val": cfg.train_on_val,
        "bf16": use_bf16(cfg, device), "processes": ddp.world, "device": str(device),
        "train_seconds": round(train_seconds, 2),
        "train_docs_per_s": round(len(train_set) * (state.epoch - resumed_from) / max(train_seconds, 1e-9),
                                  1),
        "resumed_from_epoch": resumed_from, "key_seconds": round(key_seconds, 2),
    }
    if not ddp.is_main:
        return report
    with atomic_path(out.model, is_dir=True) as tmp:
        if isinstance(model, FineTuneClassifier):
            save_finetune(model, tmp, inputs.encoder)
        else:
            save_file(model.state_dict(), tmp / WEIGHTS)
        save_preprocessing(tmp, cfg.arch, inputs.encoder)
        write_json(tmp / CONFIG, {"format_version": FORMAT_VERSION, "model": model_cfg.to_dict(),
                                  "train": asdict(cfg), "data": meta, "encoder": read_source(inputs.encoder)})
        write_json(tmp / "labels.json", {"labels": meta.get("labels", [])})
    plot_loss(state.history, out.plots / "loss.png", title=f"{cfg.arch}: loss per epoch")
    assert live is not None
    live.end()
    checkpoints.mark_complete(out.checkpoints, key)
    return report
