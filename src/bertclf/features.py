"""The featurize stage: frozen BERT token vectors, one float16 row per token, memory-mapped.

The encoder (`bertclf.encoder`) runs in ``torch.inference_mode()`` over batches of documents of
similar length, so almost no padding is computed, and vectors are written straight into the
memory map: the whole feature set is never held in RAM. The directory layout is
`bertclf.data.stores`' (``<split>.npy``, ``<split>.index.parquet``, ``meta.json``). With
``featurize.precision`` bf16 (or auto on a CPU or GPU with bf16 units) the encoder runs on bf16
weights, with fp16 on fp16 weights (auto on a GPU without bf16); its layers are combined in fp32.
``runtime.device`` says where it runs, ``runtime.processes`` in how many processes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from bertclf.atomic import atomic_path, recover, write_json
from bertclf.config import FeaturizeConfig
from bertclf.data.stores import INDEX_SUFFIX, SCALE_SUFFIX
from bertclf.distributed import SINGLE, Dist, init_distributed
from bertclf.encoder import batch_encoder, encode_documents, load_encoder, output_dim
from bertclf.errors import BertclfError
from bertclf.inference import HALF, resolve_device, resolve_precision


def featurize_split(model: torch.nn.Module, tokens: Path, out_dir: Path, cfg: FeaturizeConfig,
                    pad_id: int, device: torch.device, ddp: Dist = SINGLE) -> dict[str, Any]:
    """Write ``<split>.npy`` and ``<split>.index.parquet`` for one tokenized split; with several
    processes each encodes every `world`-th batch into the one memory map rank 0 made, so the
    store is the one a single process writes."""
    table = pq.read_table(tokens, columns=["id", "label", "input_ids", "length", "sentence_lengths"])
    lengths = table.column("length").to_numpy().astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat_ids = table.column("input_ids").combine_chunks().flatten().to_numpy()
    dim = output_dim(model.config, cfg.layers)
    name = tokens.stem
    t0 = time.perf_counter()
    path, scale_path = out_dir / f"{name}.npy", out_dir / f"{name}{SCALE_SUFFIX}"
    int8 = cfg.store == "int8"
    if ddp.is_main:
        store = np.lib.format.open_memmap(path, mode="w+", dtype=np.int8 if int8 else np.float16,
                                          shape=(int(offsets[-1]), dim))
        reserve(path)
        if int8:
            np.lib.format.open_memmap(scale_path, mode="w+", dtype=np.float32, shape=(len(flat_ids),)).flush()
    ddp.barrier()
    if not ddp.is_main:
        store = np.lib.format.open_memmap(path, mode="r+")
    scales = np.lib.format.open_memmap(scale_path, mode="r+") if int8 else None
    padded = encode_documents(batch_encoder(model, cfg.layers, pad_id, device), flat_ids, offsets,
                              cfg.max_batch_tokens, store, desc=f"featurize {name}" if ddp.is_main else None,
                              shard=(ddp.rank, ddp.world), scales=scales)
    store.flush()
    del store
    if scales is not None:
        scales.flush()
        del scales
    padded = int(ddp.all_sum(torch.tensor(padded, dtype=torch.int64)))
    ddp.barrier()  # every rank's rows are on disk
    seconds = time.perf_counter() - t0
    if not ddp.is_main:
        return {}
    pq.write_table(pa.table({
        "id": table.column("id"),
        "label": table.column("label"),
        "offset": pa.array(offsets[:-1]),
        "length": table.column("length"),
        "sentence_lengths": table.column("sentence_lengths"),
    }), out_dir / f"{name}{INDEX_SUFFIX}")
    tokens_total = int(offsets[-1])
    return {
        "docs": len(lengths),
        "tokens": tokens_total,
        "padding_fraction": round(1 - tokens_total / max(padded, 1), 4),
        "seconds": round(seconds, 3),
        "docs_per_s": round(len(lengths) / seconds, 1) if seconds else None,
        "tokens_per_s": round(tokens_total / seconds, 1) if seconds else None,
        "bytes": path.stat().st_size + (scale_path.stat().st_size if int8 else 0),
    }


def check_space(tokens_dir: Path, out: Path, dim: int, store: str = "float16") -> None:
    """Refuse, before any work, to featurize into a disk that cannot hold the vectors (float16:
    tokens x dim x 2 bytes; int8: tokens x (dim + 4)): a memory map writing past the end of the
    disk dies with SIGBUS."""
    tokens = sum(int(pc.sum(pq.read_table(p, columns=["length"]).column("length")).as_py() or 0)
                 for p in tokens_dir.glob("*.parquet"))
    per_token = dim + 4 if store == "int8" else dim * 2
    need = tokens * per_token + (64 << 20)  # and room for the indexes and the file system's own
    out.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out.parent).free
    if free < need:
        raise BertclfError(f"{out}: featurize needs {_size(need)} for {tokens:,} token vectors of {dim} "
                           f"{store} values, and {_size(free)} are free there: free some space, lower "
                           "split.max_train / tokenize.max_length, or set featurize.store: int8")


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def reserve(path: Path) -> None:
    """Allocate the memory map's file on disk now, so a full disk is an error here, not a SIGBUS
    later (where the file system supports it)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, path.stat().st_size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return  # no preallocation on this file system; check_space has looked already
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def featurize(tokens_dir: Path, encoder_dir: Path, out: Path, cfg: FeaturizeConfig, encoder_name: str = "",
              needed: bool = True, threads: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Featurize every tokenized split in `tokens_dir` into `out` (atomically) on `device` (auto,
    cpu, cuda, cuda:N); return the counts and throughput. Under torchrun the processes share the
    documents and rank 0 returns the report (the others an empty one).

    With `needed` false (an arch that reads token ids), only the metadata is written: no
    encoder pass, and DVC keeps the features of earlier runs in its cache for when they return.
    """
    splits = sorted(tokens_dir.glob("*.parquet"))
    if needed and not splits:
        raise BertclfError(f"{tokens_dir}: no tokenized splits (*.parquet) there: run the tokenize stage "
                           "first (dvc repro tokenize)")
    ddp = init_distributed()
    if not needed:
        if ddp.is_main:
            with atomic_path(out, is_dir=True) as tmp:
                write_json(tmp / "meta.json", {"skipped": "the arch reads token ids, not features"})
        return {"skipped": True, "docs": 0, "tokens": 0, "bytes": 0}
    if ddp.is_main:
        recover(out)  # a killed run's temporaries (gigabytes for IMDB) go before the space is counted
    if threads:
        torch.set_num_threads(threads)
    where = ddp.device(resolve_device(device))
    model = load_encoder(encoder_dir, str(where))
    precision = resolve_precision(cfg.precision, where)
    if precision in HALF:  # the encoder on 16-bit weights; its layers are combined in fp32
        model.to(HALF[precision])
    if ddp.is_main:
        check_space(tokens_dir, out, output_dim(model.config, cfg.layers), cfg.store)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    tok_meta_path = tokens_dir / "meta.json"
    tok_meta = json.loads(tok_meta_path.read_text()) if tok_meta_path.exists() else {}
    report: dict[str, Any] = {"skipped": False, "layers": cfg.layers, "precision": precision,
                              "device": str(where), "processes": ddp.world,
                              "threads": torch.get_num_threads(), "splits": {}}
    with atomic_path(out, is_dir=True) if ddp.is_main else contextlib.nullcontext() as made:
        tmp = Path(ddp.broadcast(str(made) if ddp.is_main else None))
        for tokens in splits:
            try:
                report["splits"][tokens.stem] = featurize_split(model, tokens, tmp, cfg, pad_id, where, ddp)
            except OSError as exc:  # name the output the user knows, not its temporary
                if not exc.filename or str(tmp) not in str(exc.filename):
                    raise
                shown = str(exc.filename).replace(str(tmp), str(out))
                raise OSError(exc.errno, exc.strerror, shown) from None
        dim = output_dim(model.config, cfg.layers)
        if ddp.is_main:
            write_json(tmp / "meta.json", {**tok_meta, "encoder": encoder_name, "layers": cfg.layers,
                                           "dim": dim, "precision": precision, "store": cfg.store})
    if not ddp.is_main:
        return {}
    parts = list(report["splits"].values())
    seconds = sum(p["seconds"] for p in parts)
    tokens = sum(p["tokens"] for p in parts)
    docs = sum(p["docs"] for p in parts)
    report.update(docs=docs, tokens=tokens, seconds=round(seconds, 3),
                  bytes=sum(p["bytes"] for p in parts),
                  docs_per_s=round(docs / seconds, 1) if seconds else None,
                  tokens_per_s=round(tokens / seconds, 1) if seconds else None)
    return report
