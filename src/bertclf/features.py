"""The featurize stage: frozen BERT token vectors, one float16 row per token, memory-mapped.

The encoder (`bertclf.encoder`) runs in ``torch.inference_mode()`` over batches of documents of
similar length, so almost no padding is computed, and vectors are written straight into the
memory map: the whole feature set is never held in RAM. The directory layout is
`bertclf.data.stores`' (``<split>.npy``, ``<split>.index.parquet``, ``meta.json``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from bertclf.atomic import atomic_path, write_json
from bertclf.config import FeaturizeConfig
from bertclf.data.stores import INDEX_SUFFIX
from bertclf.encoder import batch_encoder, encode_documents, load_encoder, output_dim


def featurize_split(model: torch.nn.Module, tokens: Path, out_dir: Path, cfg: FeaturizeConfig,
                    pad_id: int) -> dict[str, Any]:
    """Write ``<split>.npy`` and ``<split>.index.parquet`` for one tokenized split."""
    table = pq.read_table(tokens, columns=["id", "label", "input_ids", "length", "sentence_lengths"])
    lengths = table.column("length").to_numpy().astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat_ids = table.column("input_ids").combine_chunks().flatten().to_numpy()
    dim = output_dim(model.config, cfg.layers)
    name = tokens.stem
    t0 = time.perf_counter()
    store = np.lib.format.open_memmap(out_dir / f"{name}.npy", mode="w+", dtype=np.float16,
                                      shape=(int(offsets[-1]), dim))
    padded = encode_documents(batch_encoder(model, cfg.layers, pad_id), flat_ids, offsets,
                              cfg.max_batch_tokens, store)
    store.flush()
    del store
    seconds = time.perf_counter() - t0
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
        "bytes": (out_dir / f"{name}.npy").stat().st_size,
    }


def featurize(tokens_dir: Path, encoder_dir: Path, out: Path, cfg: FeaturizeConfig, encoder_name: str = "",
              needed: bool = True, threads: int = 0) -> dict[str, Any]:
    """Featurize every tokenized split in `tokens_dir` into `out` (atomically); return the counts
    and throughput.

    With `needed` false (an arch that reads token ids), only the metadata is written: no
    encoder pass, and DVC keeps the features of earlier runs in its cache for when they return.
    """
    if not needed:
        with atomic_path(out, is_dir=True) as tmp:
            write_json(tmp / "meta.json", {"skipped": "the arch reads token ids, not features"})
        return {"skipped": True, "docs": 0, "tokens": 0, "bytes": 0}
    if threads:
        torch.set_num_threads(threads)
    model = load_encoder(encoder_dir)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    tok_meta_path = tokens_dir / "meta.json"
    tok_meta = json.loads(tok_meta_path.read_text()) if tok_meta_path.exists() else {}
    report: dict[str, Any] = {"skipped": False, "layers": cfg.layers, "threads": torch.get_num_threads(),
                              "splits": {}}
    with atomic_path(out, is_dir=True) as tmp:
        for tokens in sorted(tokens_dir.glob("*.parquet")):
            report["splits"][tokens.stem] = featurize_split(model, tokens, tmp, cfg, pad_id)
        dim = output_dim(model.config, cfg.layers)
        write_json(tmp / "meta.json", {**tok_meta, "encoder": encoder_name, "layers": cfg.layers,
                                       "dim": dim})
    parts = list(report["splits"].values())
    seconds = sum(p["seconds"] for p in parts)
    tokens = sum(p["tokens"] for p in parts)
    docs = sum(p["docs"] for p in parts)
    report.update(docs=docs, tokens=tokens, seconds=round(seconds, 3),
                  bytes=sum(p["bytes"] for p in parts),
                  docs_per_s=round(docs / seconds, 1) if seconds else None,
                  tokens_per_s=round(tokens / seconds, 1) if seconds else None)
    return report
