"""In-domain masked-LM further pre-training of the encoder on the training texts (Sun et al. 2019).

The output directory is a model the later stages load like the downloaded encoder
(`AutoModel` for `featurize`, `AutoModelForSequenceClassification` for `finetune`). With
``pretrain.steps: 0`` the encoder is passed through unchanged.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from bertclf.atomic import atomic_path
from bertclf.config import PretrainConfig
from bertclf.data.stores import TokenStore
from bertclf.data.tokenization import load_tokenizer
from bertclf.distributed import init_distributed
from bertclf.encoder import copy_tokenizer_files, from_local
from bertclf.errors import ConfigError
from bertclf.inference import autocast, resolve_device, resolve_precision
from bertclf.progress import track

log = logging.getLogger(__name__)
CPU = torch.device("cpu")


def _chunks(store: TokenStore, idx: np.ndarray, max_length: int) -> list[list[int]]:
    return [store.input_ids(int(i))[:max_length].tolist() for i in idx]


def _on(batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.inference_mode()
def mlm_loss(model: torch.nn.Module, collator: Any, docs: list[list[int]], batch_size: int,
             seed: int, device: torch.device = CPU, precision: str = "fp32") -> float:
    """Mean masked-LM loss on `docs` with a fixed, seeded masking (comparable before/after)."""
    model.eval()
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    total, count = 0.0, 0
    for start in range(0, len(docs), batch_size):
        batch = collator([{"input_ids": d} for d in docs[start:start + batch_size]])
        n = int((batch["labels"] != -100).sum())
        if n:
            with autocast(device, precision):
                total += float(model(**_on(batch, device)).loss) * n
            count += n
    torch.set_rng_state(state)
    return total / max(count, 1)


def pretrain(tokens: Path, encoder: Path, out: Path, cfg: PretrainConfig,
             device: str = "cpu") -> dict[str, Any]:
    """Further pre-train `encoder` with masked LM on the train split on `device`; write it to
    `out`; return the held-out MLM loss before and after, and the throughput. Under torchrun each
    process takes its share of every step's batch (gradients averaged by DistributedDataParallel)
    and rank 0 writes."""
    ddp = init_distributed()
    if cfg.steps == 0:
        if ddp.is_main:
            with atomic_path(out, is_dir=True) as tmp:
                shutil.copytree(encoder, tmp, dirs_exist_ok=True)
        return {"steps": 0, "skipped": True}

    from transformers import (
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        get_linear_schedule_with_warmup,
    )

    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(encoder)
    where = ddp.device(resolve_device(device))
    # auto: 16-bit autocast on a GPU (bf16, or fp16 with a loss scaler), fp32 on a CPU as before
    asked = cfg.precision if cfg.precision != "auto" or where.type == "cuda" else "fp32"
    precision = resolve_precision(asked, where)
    model = from_local(AutoModelForMaskedLM, encoder, attn_implementation="sdpa").to(where)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mask_prob, return_tensors="pt")
    store = TokenStore(tokens, "train")
    order = np.random.default_rng(cfg.seed).permutation(len(store))
    n_eval = max(1, round(cfg.eval_fraction * len(store)))
    held_out = _chunks(store, order[:n_eval], cfg.max_length)
    pool = order[n_eval:]
    before = mlm_loss(model, collator, held_out, cfg.batch_size, cfg.seed, where, precision)

    scaler = torch.amp.GradScaler(where.type, enabled=precision == "fp16")
    forward = DistributedDataParallel(model) if ddp.world > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * cfg.steps), cfg.steps)
    rng = np.random.default_rng([cfg.seed, 1])
    model.train()
    t0 = time.perf_counter()
    seen_tokens = 0
    for step in track(range(1, cfg.steps + 1), cfg.steps, "pretrain", "steps", enabled=ddp.is_main):
        idx = rng.choice(pool, size=min(cfg.batch_size, len(pool)), replace=False)
        mine = idx[ddp.rank::ddp.world] if len(idx) >= ddp.world else idx  # this rank's share
        batch = _on(collator([{"input_ids": d} for d in _chunks(store, mine, cfg.max_length)]), where)
        with autocast(where, precision):
            loss = forward(**batch).loss
        if not torch.isfinite(loss):
            raise ConfigError(f"pretrain: the MLM loss is {loss.item()} at step {step}; lower pretrain.lr")
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen_tokens += int(batch["attention_mask"].sum())
        if step % max(1, cfg.steps // 10) == 0:
            log.info("pretrain step %d/%d: MLM loss %.4f", step, cfg.steps, loss.item())
    seconds = time.perf_counter() - t0
    seen_tokens = int(ddp.all_sum(torch.tensor(seen_tokens, dtype=torch.int64)))
    after = mlm_loss(model, collator, held_out, cfg.batch_size, cfg.seed, where, precision)
    if not ddp.is_main:
        return {}
    model.cpu()
    with atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        copy_tokenizer_files(encoder, tmp, source=True)  # and what the encoder was made from
    report = {"steps": cfg.steps, "skipped": False, "held_out_docs": n_eval,
              "mlm_loss_before": round(before, 5), "mlm_loss_after": round(after, 5),
              "perplexity_before": round(math.exp(min(before, 50)), 3),
              "perplexity_after": round(math.exp(min(after, 50)), 3),
              "seconds": round(seconds, 2), "tokens_per_s": round(seen_tokens / seconds, 1),
              "device": str(where), "precision": precision, "processes": ddp.world}
    return report
