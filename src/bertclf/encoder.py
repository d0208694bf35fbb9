"""The Hugging Face encoder at run time: loading it safely, its token vectors, its files.

Every model is loaded from a local directory only, from safetensors, without remote code
(`from_local`); the token vectors of a batch come from `encoder_vectors` (the layer combination
`featurize.layers` names), and of whole documents from `encode_documents`; a model directory gets
the tokenizer files it needs from `copy_tokenizer_files`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertclf.data.encoder_source import SOURCE_FILE
from bertclf.data.stores import length_batches, pad_ids
from bertclf.errors import BertclfError, explain
from bertclf.progress import track

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def from_local(auto_class: Any, model_dir: Path, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(model_dir)`: local files, safetensors, no remote code, SDPA
    attention where the class takes it, no progress bars, fp32 weights.

    transformers 5 loads a checkpoint in the dtype it was saved in: an encoder shipped in fp16
    would otherwise train fp16 master weights (AdamW's second moments round to zero), and run
    fp16 where the CPU has no fp16 kernels. Precision is chosen at run time instead (bf16 / fp16
    weights or autocast, `bertclf.inference.resolve_precision`)."""
    from safetensors import SafetensorError
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    def load(**extra: Any) -> Any:
        return auto_class.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False,
                                          use_safetensors=True, **{"dtype": torch.float32, **extra})

    try:
        try:
            return load(**kwargs)
        except ValueError as exc:  # a class without SDPA (MPNet) keeps its own attention
            if kwargs.get("attn_implementation") != "sdpa" or "scaled_dot_product_attention" not in str(exc):
                raise
            return load(**{k: v for k, v in kwargs.items() if k != "attn_implementation"})
    except (OSError, ValueError, SafetensorError) as exc:
        if explain(exc):  # a full or read-only disk says so itself
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if isinstance(exc, SafetensorError):
            weights = ", ".join(p.name for p in sorted(Path(model_dir).glob("*.safetensors")))
            raise BertclfError(f"{Path(model_dir) / weights}: damaged or truncated weights ({first}); "
                               "re-create it (dvc repro) or copy the model directory whole again") from None
        raise BertclfError(f"{model_dir}: cannot load it as a Hugging Face model ({first}); it needs "
                           "config.json and safetensors weights: re-create it (dvc repro) or copy it "
                           "whole again") from None


def load_encoder(encoder_dir: Path, device: str = "cpu") -> torch.nn.Module:
    """The frozen encoder, in eval mode."""
    from transformers import AutoModel

    return from_local(AutoModel, encoder_dir).eval().to(device)


def copy_tokenizer_files(src: Path, dst: Path, source: bool = False) -> None:
    """The tokenizer files of `src` into `dst` (and its ``source.json`` with `source`), where missing."""
    for name in (*TOKENIZER_FILES, *((SOURCE_FILE,) if source else ())):
        if (src / name).is_file() and not (dst / name).exists():
            shutil.copyfile(src / name, dst / name)


def combine_layers(hidden_states: tuple[torch.Tensor, ...], layers: str) -> torch.Tensor:
    """Token vectors from the encoder's hidden states (embeddings first, last layer last)."""
    if layers == "last":
        return hidden_states[-1].float()
    last4 = [h.float() for h in hidden_states[-4:]]  # bf16 encoders: combined in fp32
    if layers == "mean_last_4":
        return torch.stack(last4).mean(0)
    if layers == "sum_last_4":
        return torch.stack(last4).sum(0)
    return torch.cat(last4, dim=-1)


def output_dim(config: Any, layers: str) -> int:
    """Width of the token vectors: concat_last_4 joins the last four hidden states (all of them,
    embeddings included, for an encoder with fewer than four layers)."""
    if layers == "concat_last_4":
        return int(config.hidden_size) * min(4, int(config.num_hidden_layers) + 1)
    return int(config.hidden_size)


def encoder_vectors(model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor,
                    layers: str) -> torch.Tensor:
    """The token vectors `layers` asks for, from one encoder pass."""
    want_all = layers != "last"
    out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=want_all)
    states = out.hidden_states if want_all else (out.last_hidden_state,)
    return combine_layers(states, layers)


def batch_encoder(model: torch.nn.Module, layers: str, pad_id: int,
                  device: torch.device | str = "cpu") -> Callable[[list[np.ndarray]], torch.Tensor]:
    """A function from a batch of token id arrays to their padded ``[batch, longest, dim]`` vectors."""

    @torch.inference_mode()
    def encode(ids: list[np.ndarray]) -> torch.Tensor:
        input_ids, mask = (t.to(device) for t in pad_ids(ids, pad_id))
        return encoder_vectors(model, input_ids, mask, layers).cpu()

    return encode


def quantize_rows(vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token vector as int8 times its own scale (its largest magnitude / 127): one byte a
    value where float16 takes two. ``q * scale[..., None]`` is the vector again, each value within
    half a step (scale / 2)."""
    scale = vectors.abs().amax(-1).clamp_min(1e-8) / 127
    return torch.round(vectors / scale.unsqueeze(-1)).to(torch.int8), scale


def encode_documents(encode: Callable[[list[np.ndarray]], torch.Tensor], flat_ids: np.ndarray,
                     offsets: np.ndarray, max_batch_tokens: int, out: np.ndarray, desc: str | None = None,
                     shard: tuple[int, int] = (0, 1), scales: np.ndarray | None = None) -> int:
    """Write the float16 vectors of every document (ids ``flat_ids[offsets[i]:offsets[i + 1]]``)
    into rows ``offsets[i]:offsets[i + 1]`` of `out`, batched by length; returns the padded
    tokens computed. `desc` names the work in progress reports. With ``shard=(rank, world)`` only
    every `world`-th batch from `rank` on: the batches, and so the vectors, are those of one
    process. With `scales`, `out` is int8 and each token's scale goes to `scales` (`quantize_rows`)."""
    lengths = np.diff(offsets)
    padded = 0
    rank, world = shard
    batches = length_batches(lengths, max_batch_tokens)[rank::world]
    if desc:
        batches = track(batches, sum(map(len, batches)), desc, "docs", size=len)
    for batch in batches:
        encoded = encode([flat_ids[offsets[i]:offsets[i + 1]] for i in batch])
        if scales is None:
            vectors, scale = encoded.to(torch.float16).numpy(), None
        else:
            q, s = quantize_rows(encoded.float())
            vectors, scale = q.numpy(), s.numpy()
        padded += vectors.shape[0] * vectors.shape[1]
        for row, i in enumerate(batch):
            out[offsets[i]:offsets[i + 1]] = vectors[row, : lengths[i]]
            if scale is not None:
                scales[offsets[i]:offsets[i + 1]] = scale[row, : lengths[i]]  # type: ignore[index]
    return padded
