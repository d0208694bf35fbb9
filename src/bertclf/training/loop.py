"""Train a classifier of any arch, with a checkpoint every epoch.

`train` reads top to bottom: set up (`start`: data, model, optimizer and schedule, the checkpoint
to resume), the epoch loop (train steps, validate, checkpoint, stop early), then the outputs
(`finish`). A killed run restarts from its last checkpoint and ends exactly as an uninterrupted
run would: batch order depends only on (seed, epoch), and the checkpoint holds the model,
optimizer, scheduler and RNG state. It resumes only its own run (`bertclf.training.checkpoints`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bertclf import tasks
from bertclf.config import Config
from bertclf.data.stores import Inputs, concat, epoch_batches
from bertclf.distributed import Dist, init_distributed
from bertclf.errors import BertclfError
from bertclf.inference import autocast, predict_logits, resolve_device, resolve_precision
from bertclf.live import StageLogger, open_live
from bertclf.model_card import model_card, model_params
from bertclf.model_dir import save_model_dir, trained_model_dir
from bertclf.models import Dims, dims_for, get
from bertclf.plotting import plot_loss
from bertclf.progress import track
from bertclf.training import checkpoints
from bertclf.training.optim import make_optimizer, make_scheduler

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
    best_score: float | None = None  # the best headline score on validation so far
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)


def train(config: Config, inputs: Inputs, out: TrainOutputs) -> dict[str, Any]:
    """Train on the train split, select on val; write the best model, metrics and plots."""
    run = start(config, inputs, out)
    cfg, state, ddp, model = config.train, run.state, run.ddp, run.model
    while state.epoch < cfg.epochs and not state.stopped_early:
        epoch = state.epoch + 1
        model.train()
        t0 = time.perf_counter()
        total_loss, seen = 0.0, 0
        batches = run.epoch_batches(epoch)
        for i, idx in enumerate(track(batches, len(batches), f"epoch {epoch}/{cfg.epochs}", "batches",
                                      enabled=ddp.is_main)):
            # this rank's share of the global batch; the loss is normalized by the whole batch (its
            # size, or its summed class weights) so that summing over ranks gives the batch mean
            mine = idx[ddp.rank::ddp.world]
            scale = float(ddp.world) if len(mine) else 0.0  # a rank with no share computes a zero loss
            rows = mine if len(mine) else idx[:1]
            batch = run.make(run.train_set, rows).to(run.device)
            labels = torch.from_numpy(run.train_set.labels[rows]).to(run.device)
            batch_labels = torch.from_numpy(run.train_set.labels[idx]).to(run.device)
            denominator = tasks.loss_weight(run.task, batch_labels, run.weights)
            with autocast(run.device, run.precision):
                logits = run.forward(batch).float()
            per_doc = tasks.loss(run.task, logits, labels, run.weights, cfg.ordinal_loss, run.scale)
            loss = per_doc.sum() * scale / denominator
            batch_loss = float(ddp.all_sum(per_doc.detach().sum() * (scale > 0)).item()) / denominator
            if not math.isfinite(batch_loss):
                raise TrainingError(f"the loss is {batch_loss} at epoch {epoch}, step {state.step + 1}: "
                                    "lower train.lr or check the inputs")
            run.scaler.scale(loss / cfg.grad_accum).backward()  # fp16: scaled, else as it is
            total_loss, seen = total_loss + batch_loss * len(idx), seen + len(idx)
            if (i + 1) % cfg.grad_accum and i + 1 < len(batches):
                continue  # accumulate gradients over grad_accum batches
            if cfg.grad_clip:
                run.scaler.unscale_(run.optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            run.scaler.step(run.optimizer)  # fp16: skipped when a gradient overflowed
            run.scaler.update()
            run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if state.step % config.runtime.log_every == 0 or i + 1 == len(batches):  # and every epoch's last
                state.steps.append({"step": state.step, "epoch": epoch, "train_loss": round(batch_loss, 5),
                                    "lr": run.scheduler.get_last_lr()[0]})
                log_step(run.live, state.steps[-1])
        run.epoch_seconds.append(round(time.perf_counter() - t0, 3))
        run.train_seconds += run.epoch_seconds[-1]

        val_loss, val_score = run.validate()
        state.epoch = epoch
        state.history.append({"epoch": epoch, "train_loss": round(total_loss / seen, 5),
                              "val_loss": round(val_loss, 5), f"val_{run.headline}": round(val_score, 5)})
        log.info("epoch %d: train loss %.4f, val loss %.4f, val %s %.4f (%.0f docs/s)", epoch,
                 total_loss / seen, val_loss, run.headline, val_score,
                 seen / max(time.perf_counter() - t0, 1e-9))
        if tasks.better(run.headline, val_score, state.best_score) or cfg.train_on_val:  # that keeps the last
            state.best_score, state.best_epoch, state.bad_epochs = val_score, epoch, 0
        else:
            state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= cfg.patience
        if ddp.is_main:
            checkpoints.save_checkpoint(out.checkpoints / f"epoch_{epoch}", model, run.optimizer,
                                        run.scheduler, asdict(state), run.key, run.scaler)
        log_epoch(run.live, state.history[-1], state)
        ddp.barrier()
    return finish(run, config, inputs, out)


@dataclass
class Run:
    """What `start` sets up for the loop."""

    arch: Any
    dims: Dims
    model: nn.Module
    forward: Any  # the model, wrapped by DDP / torch.compile where asked
    train_set: Any
    val_set: Any
    make: Any  # (store, idx) -> Batch
    optimizer: torch.optim.Optimizer
    scheduler: Any
    weights: torch.Tensor | None
    task: str
    ordinal_loss: str
    scale: tasks.Scale | None  # regression: the training targets' mean and std
    device: torch.device
    precision: str  # fp32 | bf16 | fp16: the autocast of the forward pass
    scaler: torch.amp.GradScaler  # fp16's loss scaling; a pass-through otherwise
    ddp: Dist
    key: str
    state: TrainState
    live: StageLogger | None
    seed: int
    batch_size: int
    eval_batch_size: int
    resumed_from: int = 0
    key_seconds: float = 0.0
    train_seconds: float = 0.0  # this process's: a run-log fact, kept out of the reproducible checkpoints
    epoch_seconds: list[float] = field(default_factory=list)  # the epochs this process ran (compile: the 1st)
    meta: dict[str, Any] = field(default_factory=dict)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(self.train_set.lengths, self.batch_size, self.seed, epoch)

    @property
    def headline(self) -> str:
        return tasks.HEADLINE[self.task]

    def val_logits(self) -> np.ndarray:
        """The model's logits of every validation document, each rank scoring its share."""
        shard = np.arange(len(self.val_set))[self.ddp.rank::self.ddp.world]
        logits = predict_logits(self.model, self.val_set, self.make, self.eval_batch_size, self.device,
                                self.dims.num_labels, shard,
                                desc="validate" if self.ddp.is_main else None)
        return self.ddp.all_sum(torch.from_numpy(logits)).numpy()

    def validate(self) -> tuple[float, float]:
        """Validation loss and the task's headline score."""
        logits = self.val_logits()
        loss = tasks.mean_loss(self.task, torch.from_numpy(logits), torch.from_numpy(self.val_set.labels),
                               self.ordinal_loss, self.scale)
        return loss, tasks.headline_score(self.task, self.val_set.labels, logits, scale=self.scale)


def start(config: Config, inputs: Inputs, out: TrainOutputs) -> Run:
    """Data, model, optimizer, schedule; the checkpoint of this very run to resume, if any."""
    cfg, runtime = config.train, config.runtime
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    if cfg.deterministic:  # the same numbers on GPUs too, at some cost in speed
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(cfg.seed)
    ddp = init_distributed()
    device = ddp.device(resolve_device(runtime.device))
    arch = get(cfg.arch)
    meta = inputs.meta(arch.reads)
    train_set, val_set = inputs.open(arch.reads, "train"), inputs.open(arch.reads, "val")
    if cfg.train_on_val:
        train_set = concat(train_set, val_set)
    task = tasks.task_of(meta)
    num_labels = (train_set.labels.shape[1] if task == tasks.MULTI else 1 if task == tasks.REGRESSION
                  else max(len(meta.get("labels", [])), int(train_set.labels.max()) + 1))
    dims = dims_for(arch, inputs.encoder, getattr(train_set, "dim", 0), num_labels)
    model = arch.build(config.model, dims, inputs.encoder).to(device)
    optimizer = make_optimizer(model, arch, cfg, config.model)
    steps_per_epoch = math.ceil(math.ceil(len(train_set) / cfg.batch_size) / cfg.grad_accum)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    weights = tasks.class_weights(task, train_set.labels, num_labels, cfg.class_weights)
    # auto: 16-bit autocast for the archs it pays for (finetune): bf16 where the device has bf16
    # units, fp16 on other GPUs, else fp32
    precision = resolve_precision(cfg.precision if cfg.precision != "auto" or arch.bf16_by_default
                                  else "fp32", device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    log.info("%s on %s: %d parameters, %d train / %d val docs, %d optimizer steps per epoch", arch.name,
             device, sum(p.numel() for p in model.parameters()), len(train_set), len(val_set),
             steps_per_epoch)

    t_key = time.perf_counter()
    key = checkpoints.resume_key(config, [inputs.dir(arch.reads), inputs.encoder])
    key_seconds = time.perf_counter() - t_key
    resume = checkpoints.prepare(out.checkpoints, key, ddp.is_main)
    ddp.barrier()
    state = TrainState()
    if resume is not None:
        state = TrainState(**checkpoints.restore(resume, model, optimizer, scheduler, device, scaler))
        log.info("resuming after epoch %d from %s", state.epoch, resume.path)
    live = open_live(out.metrics, out.plots) if ddp.is_main else None
    for record in state.steps:  # the series of the epochs already done, as an uninterrupted run has them
        log_step(live, record)
    for record in state.history:
        log_epoch(live, record, state)
    wrapped = DistributedDataParallel(model) if ddp.world > 1 else model
    knobs = config.model
    return Run(arch=arch, dims=dims, model=model,
               forward=torch.compile(wrapped) if runtime.compile else wrapped, train_set=train_set,
               val_set=val_set, make=lambda store, idx: arch.batch(store, idx, knobs, dims),
               optimizer=optimizer,
               scheduler=scheduler, weights=None if weights is None else weights.to(device), task=task,
               ordinal_loss=cfg.ordinal_loss, scale=tasks.target_scale(meta), device=device,
               precision=precision, scaler=scaler, ddp=ddp, key=key, state=state, live=live, seed=cfg.seed,
               batch_size=cfg.batch_size,
               eval_batch_size=runtime.eval_batch_size, resumed_from=state.epoch, key_seconds=key_seconds,
               meta=meta)


def finish(run: Run, config: Config, inputs: Inputs, out: TrainOutputs) -> dict[str, Any]:
    """The best epoch's model, the summary and plots (rank 0); the report of the run."""
    state = run.state
    best = out.checkpoints / f"epoch_{state.best_epoch}" / checkpoints.WEIGHTS
    run.model.load_state_dict(load_file(best, device=str(run.device)))
    trained = state.epoch - run.resumed_from
    report = {
        "arch": run.arch.name, "best_epoch": state.best_epoch, "epochs_run": state.epoch,
        "stopped_early": state.stopped_early, f"best_val_{run.headline}": round(state.best_score, 5),
        "final_train_loss": state.history[-1]["train_loss"], "final_val_loss": state.history[-1]["val_loss"],
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "trained_on_val": config.train.train_on_val,
        "precision": run.precision, "processes": run.ddp.world, "device": str(run.device),
        "train_seconds": round(run.train_seconds, 2), "epoch_seconds": run.epoch_seconds,
        "train_docs_per_s": round(len(run.train_set) * trained / max(run.train_seconds, 1e-9), 1),
        "resumed_from_epoch": run.resumed_from, "key_seconds": round(run.key_seconds, 2),
    }
    thresholds = None
    if run.task == tasks.MULTI:  # the decision thresholds, chosen on validation for the best model
        logits = run.val_logits()
        thresholds = tasks.choose_thresholds(run.val_set.labels, tasks.probabilities(run.task, logits),
                                             config.train.thresholds)
        report.update(thresholds=thresholds, val_jaccard_at_thresholds=round(
            tasks.headline_score(run.task, run.val_set.labels, logits, thresholds), 5))
    if run.scale is not None:  # regression: the saved model outputs the value itself
        tasks.fold_scale(run.arch.head(run.model), run.scale)
    if not run.ddp.is_main:
        return report
    md = trained_model_dir(out.model, config, run.dims, run.meta, inputs.encoder, thresholds)
    save_model_dir(md, run.model, inputs.encoder, model_card(md, model_params(config), report))
    plot_loss(state.history, out.plots / "loss.png", title=f"{run.arch.name}: loss per epoch")
    assert run.live is not None
    run.live.end()
    checkpoints.mark_complete(out.checkpoints, run.key)
    return report


def log_step(live: StageLogger | None, record: dict[str, float]) -> None:
    if live is not None:
        live.step = int(record["step"])
        live.log_metric("steps/loss", record["train_loss"])
        live.log_metric("steps/lr", record["lr"])


def log_epoch(live: StageLogger | None, record: dict[str, float], state: TrainState) -> None:
    """The epoch's series, and a summary `dvc exp show` shows while training runs."""
    if live is None:
        return
    live.step = int(record["epoch"])
    live.log_metric("train/loss", record["train_loss"])
    live.log_metric("val/loss", record["val_loss"])
    headline = next(k for k in record if k.startswith("val_") and k != "val_loss")
    live.log_metric(f"val/{headline.removeprefix('val_')}", record[headline])
    live.summary = {"best_epoch": state.best_epoch, "train": {"loss": record["train_loss"]},
                    "val": {"loss": record["val_loss"]}}
    live.make_summary()
