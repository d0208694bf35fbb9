"""Running a model: the device and precision it runs at, and its logits over a store, in order.

Shared by training (validation), evaluate and prediction, so the three compute the same numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from bertclf.data.stores import Batch, eval_batches, length_batches
from bertclf.errors import BertclfError
from bertclf.progress import track


def resolve_device(name: str) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU; `cuda` (or `cuda:N`) must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit())):
        raise BertclfError(f"device {name!r} is not one of auto, cpu, cuda (or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = "this PyTorch is a CPU build" if torch.version.cuda is None else "no GPU is visible"
        raise BertclfError(f"device {name!r}: {build}; use cpu or auto")
    return torch.device(name)


def has_bf16_units(device: torch.device) -> bool:
    """GPUs with bf16, and CPUs with AMX or AVX512-BF16, where bf16 matmuls run several times faster."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}  # the 16-bit precisions and their dtypes


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is bf16 where `device` has bf16 units (there bf16 runs several times faster at the
    same accuracy), fp16 on a GPU without them (V100, T4: tensor cores, with a gradient scaler when
    training), else exact fp32; an explicit fp32, bf16 or fp16 stays as it is."""
    if precision not in PRECISIONS:
        raise BertclfError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    if has_bf16_units(device):
        return "bf16"
    return "fp16" if device.type == "cuda" else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast to `precision`'s 16-bit type on `device` (bf16, fp16), or nothing (fp32)."""
    dtype = HALF.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@torch.inference_mode()
def predict_logits(model: nn.Module, store: Any, make: Callable[[Any, np.ndarray], Batch], batch_size: int,
                   device: torch.device | str = "cpu", num_labels: int = 0,
                   subset: np.ndarray | None = None, desc: str | None = None,
                   max_batch_tokens: int = 0) -> np.ndarray:
    """Logits for the documents of `store` (or `subset` of them), in the store's order; rows
    outside the subset stay zero. Batched longest first, `batch_size` documents a batch (and no
    more than `max_batch_tokens` padded tokens when > 0), `make(store, idx)` building each batch;
    `desc` names the work in progress reports."""
    model.eval()
    rows = np.arange(len(store)) if subset is None else subset
    out: np.ndarray | None = np.zeros((len(store), num_labels), dtype=np.float32) if num_labels else None
    lengths = store.lengths[rows]
    batches = (length_batches(lengths, max_batch_tokens, batch_size) if max_batch_tokens > 0
               else eval_batches(lengths, batch_size))
    for batch_rows in track(batches, len(rows), desc or "", "docs", size=len, enabled=desc is not None):
        idx = rows[batch_rows]
        logits = model(make(store, idx).to(device)).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(store), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    assert out is not None
    return out
