"""Train a classifier over precomputed token vectors, with a checkpoint every epoch.

Reads top to bottom: config, data, model, optimizer and schedule, resume, the epoch loop
(train, validate, keep the best, checkpoint, stop early), then the outputs. A run that was
killed restarts from its last checkpoint and ends exactly as an uninterrupted run would:
batch order depends only on (seed, epoch), and the checkpoint holds the model, optimizer,
scheduler and RNG state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bertclf.atomic import atomic_path, write_json
from bertclf.batching import epoch_batches, eval_batches
from bertclf.classifier import CONFIG, FORMAT_VERSION, WEIGHTS, save_preprocessing
from bertclf.distributed import init_distributed
from bertclf.errors import BertclfError, ConfigError
from bertclf.finetune import FineTuneClassifier, layerwise_param_groups, load_finetune, save_finetune
from bertclf.model_inputs import (
    Inputs,
    batch_maker,
    check_arch,
    concat,
    data_fingerprint,
    meta_of,
    open_split,
)
from bertclf.models import NORMS, TOKEN_ARCHS, Batch, ModelConfig, build_model
from bertclf.params import choice
from bertclf.plotting import plot_loss, write_csv

log = logging.getLogger(__name__)

LR_DECAYS = ("none", "step", "exponential", "cosine", "linear")
STATE = "trainer_state.pt"


class TrainingError(BertclfError):
    """Training cannot go on (for example the loss is no longer finite)."""


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "han"
    hidden: int = 50
    depth: int = 1
    dropout: float = 0.1
    norm: str = "none"
    residual: bool = False
    attention_dim: int = 100
    lr: float = 2e-3
    lr_decay: str = "none"
    warmup_ratio: float = 0.0
    lr_gamma: float = 0.5  # step / exponential: LR multiplied by this every `lr_step_epochs`
    lr_step_epochs: int = 1
    weight_decay: float = 0.01
    batch_size: int = 64
    epochs: int = 5
    patience: int = 3
    seed: int = 42
    class_weights: str = "none"
    grad_clip: float = 5.0
    log_every: int = 20
    eval_batch_size: int = 256
    threads: int = 0
    # Final retrain: fit on train + val for `epochs` epochs (no early stopping, last epoch kept);
    # the validation scores it reports are then not held out.
    train_on_val: bool = False
    # finetune
    layer_lr_decay: float = 1.0  # LR of layer l of L: lr * decay ** (L - 1 - l) (Sun et al. use 0.95)
    grad_accum: int = 1  # batches per optimizer step
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast for finetune where supported) | fp32 | bf16
    compile: bool = False  # torch.compile the model (GPU)
    # cnn / rnn (learned embeddings over the tokenizer's ids)
    embedding_dim: int = 128
    num_filters: int = 100
    filter_widths: tuple[int, ...] = (3, 4, 5)

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> TrainConfig:
        known = {k: p[k] for k in cls.__dataclass_fields__ if k in p and p[k] is not None}
        if "filter_widths" in known:
            known["filter_widths"] = tuple(known["filter_widths"])
        cfg = cls(**known)
        check_arch(cfg.arch)
        choice(cfg.norm, "train.norm", NORMS)
        choice(cfg.lr_decay, "train.lr_decay", LR_DECAYS)
        choice(cfg.class_weights, "train.class_weights", ("none", "balanced"))
        choice(cfg.precision, "train.precision", ("auto", "fp32", "bf16"))
        if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.grad_accum < 1:
            raise ConfigError("params.yaml: train.epochs, batch_size and grad_accum must be positive")
        if not 0 <= cfg.dropout < 1:
            raise ConfigError(f"params.yaml: train.dropout={cfg.dropout} must be in [0, 1)")
        return cfg


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs; saved in every checkpoint."""

    epoch: int = 0
    step: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
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
def predict_logits(model: nn.Module, store: Any, make: Callable[[Any, np.ndarray], Batch],
                   batch_size: int, device: torch.device | str = "cpu", num_labels: int = 0,
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


def fingerprint(cfg: TrainConfig, inputs: Inputs) -> str:
    """What a checkpoint must match to be resumed: the config and the exact inputs."""
    h = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(data_fingerprint(cfg.arch, inputs).encode())
    return h.hexdigest()[:16]


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


def build_classifier(cfg: TrainConfig, inputs: Inputs, train_set: Any,
                     num_labels: int) -> tuple[nn.Module, ModelConfig]:
    """The model of `cfg.arch`, and the config that rebuilds it."""
    pad_id = 0
    vocab = 0
    if cfg.arch in TOKEN_ARCHS:
        encoder_cfg = json.loads((inputs.encoder / "config.json").read_text())
        pad_id = int(encoder_cfg.get("pad_token_id") or 0)
        vocab = int(encoder_cfg["vocab_size"])
    model_cfg = ModelConfig(
        arch=cfg.arch, input_dim=getattr(train_set, "dim", 0), num_labels=num_labels, hidden=cfg.hidden,
        depth=cfg.depth, dropout=cfg.dropout, norm=cfg.norm, residual=cfg.residual,
        attention_dim=cfg.attention_dim, cell="lstm" if cfg.arch == "rnn" else "gru", vocab_size=vocab,
        pad_id=pad_id, embedding_dim=cfg.embedding_dim, num_filters=cfg.num_filters,
        filter_widths=tuple(cfg.filter_widths))
    if cfg.arch == "finetune":
        return load_finetune(inputs.encoder, num_labels), model_cfg
    return build_model(model_cfg), model_cfg


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]] | Any:
    if isinstance(model, FineTuneClassifier):
        return layerwise_param_groups(model, cfg.lr, cfg.layer_lr_decay, cfg.weight_decay)
    return model.parameters()


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: TrainState, print_: str) -> None:
    with atomic_path(path, is_dir=True) as tmp:
        save_file(model.state_dict(), tmp / WEIGHTS)
        torch.save({
            "fingerprint": print_,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "state": asdict(state),
        }, tmp / STATE)


def last_checkpoint(ckpt_dir: Path, print_: str) -> Path | None:
    """The newest epoch checkpoint made with the same config and features, if any."""
    found = sorted(ckpt_dir.glob("epoch_*"), key=lambda p: int(p.name.split("_")[1]))
    for path in reversed(found):
        try:
            saved = torch.load(path / STATE, weights_only=True)
        except (OSError, RuntimeError):
            continue
        if saved.get("fingerprint") == print_:
            return path
    return None


def train(cfg: TrainConfig, inputs: Inputs, model_out: Path, ckpt_dir: Path, metrics: Path,
          plots: Path) -> dict[str, Any]:
    """Train on the train split, select on val; write the best model, metrics and plot data."""
    # ---- setup
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ddp = init_distributed()
    device = resolve_device(cfg.device)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
    meta = meta_of(cfg.arch, inputs)
    train_set, val_set = open_split(cfg.arch, inputs, "train"), open_split(cfg.arch, inputs, "val")
    if cfg.train_on_val:
        train_set = concat(train_set, val_set)
    num_labels = max(len(meta.get("labels", [])), int(train_set.labels.max()) + 1)
    model, model_cfg = build_classifier(cfg, inputs, train_set, num_labels)
    model.to(device)
    make = batch_maker(cfg.arch, model_cfg.pad_id, max(model_cfg.filter_widths))
    optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(train_set) / cfg.batch_size) / cfg.grad_accum)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    weights = class_weights(train_set.labels, num_labels, cfg.class_weights)
    if weights is not None:
        weights = weights.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg, device))
    state = TrainState()
    print_ = fingerprint(cfg, inputs)
    log.info("%s on %s: %d parameters, %d train / %d val docs, %d optimizer steps per epoch", cfg.arch,
             device, sum(p.numel() for p in model.parameters()), len(train_set), len(val_set),
             steps_per_epoch)

    # ---- resume from the last checkpoint of the same run, if there is one
    if (resume := last_checkpoint(ckpt_dir, print_)) is not None:
        saved = torch.load(resume / STATE, weights_only=True)
        model.load_state_dict(load_file(resume / WEIGHTS, device=str(device)))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        state = TrainState(**saved["state"])
        log.info("resuming after epoch %d from %s", state.epoch, resume)
    elif ckpt_dir.exists() and ddp.is_main:
        shutil.rmtree(ckpt_dir)  # checkpoints of another config or data: not ours to resume
    ddp.barrier()
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    wrapped = DistributedDataParallel(model) if ddp.world > 1 else model
    forward = torch.compile(wrapped) if cfg.compile else wrapped

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
            batch = make(train_set, mine if len(mine) else idx[:1]).to(device)
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
            if state.step % cfg.log_every == 0:
                state.steps.append({"step": state.step, "epoch": epoch, "train_loss": round(batch_loss, 5),
                                    "lr": scheduler.get_last_lr()[0]})
        epoch_seconds = time.perf_counter() - t0

        shard = np.arange(len(val_set))[ddp.rank::ddp.world]
        logits = predict_logits(model, val_set, make, cfg.eval_batch_size, device, num_labels, shard)
        logits = ddp.all_sum(torch.from_numpy(logits)).numpy()
        val_loss = float(nn.functional.cross_entropy(torch.from_numpy(logits),
                                                     torch.from_numpy(val_set.labels)))
        val_acc = float((logits.argmax(1) == val_set.labels).mean())
        state.epoch = epoch
        state.train_seconds += epoch_seconds
        state.history.append({"epoch": epoch, "train_loss": round(total_loss / seen, 5),
                              "val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5),
                              "lr": scheduler.get_last_lr()[0], "seconds": round(epoch_seconds, 2)})
        log.info("epoch %d: train loss %.4f, val loss %.4f, val acc %.4f (%.1fs, %.0f docs/s)", epoch,
                 total_loss / seen, val_loss, val_acc, epoch_seconds, seen / epoch_seconds)
        improved = val_acc > state.best_acc or cfg.train_on_val
        if improved:
            state.best_acc, state.best_epoch, state.bad_epochs = val_acc, epoch, 0
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= cfg.patience
        if ddp.is_main:
            if improved:
                with atomic_path(ckpt_dir / "best", is_dir=True) as tmp:
                    save_file(model.state_dict(), tmp / WEIGHTS)
            save_checkpoint(ckpt_dir / f"epoch_{epoch}", model, optimizer, scheduler, state, print_)
        ddp.barrier()

    # ---- outputs (rank 0): the best model, metrics, plot data
    model.load_state_dict(load_file(ckpt_dir / "best" / WEIGHTS, device=str(device)))
    report = {
        "arch": cfg.arch,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "best_val_acc": round(state.best_acc, 5),
        "final_train_loss": state.history[-1]["train_loss"],
        "final_val_loss": state.history[-1]["val_loss"],
        "train_seconds": round(state.train_seconds, 2),
        "train_docs_per_s": round(len(train_set) * state.epoch / max(state.train_seconds, 1e-9), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_on_val": cfg.train_on_val,
        "device": str(device),
        "bf16": use_bf16(cfg, device),
        "processes": ddp.world,
    }
    if not ddp.is_main:
        return report
    with atomic_path(model_out, is_dir=True) as tmp:
        if isinstance(model, FineTuneClassifier):
            save_finetune(model, tmp, inputs.encoder)
        else:
            save_file(model.state_dict(), tmp / WEIGHTS)
        save_preprocessing(tmp, cfg.arch, inputs.encoder)
        write_json(tmp / CONFIG, {"format_version": FORMAT_VERSION, "model": model_cfg.to_dict(),
                                  "train": asdict(cfg), "data": meta})
        write_json(tmp / "labels.json", {"labels": meta.get("labels", [])})
    write_json(metrics, report)
    write_csv(plots / "loss.csv", state.history)
    write_csv(plots / "steps.csv", state.steps, ["step", "epoch", "train_loss", "lr"])
    plot_loss(state.history, plots / "loss.png", title=f"{cfg.arch}: loss per epoch")
    return report
