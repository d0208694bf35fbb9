"""`bertclf bench`: inference throughput and latency of a saved (or exported) model on real texts.

For each batch size the texts are sent in their file order, `batch` at a time, as a user calling
`predict` would. Two timings per batch size: tokenization included (raw strings in) and
excluded (token ids in: the model, and for han/bigru the encoder, alone). Latency is per call;
p50 and p95 are over the calls. The padding fraction is the share of computed positions that are
padding (1 - real tokens / batch x longest).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bertclf.atomic import atomic_path, write_json
from bertclf.errors import BertclfError
from bertclf.progress import progress
from bertclf.serving.predictor import TextClassifier


def read_bench_texts(path: Path, limit: int | None) -> list[str]:
    """The texts of a split parquet (or any parquet with a text column), first `limit` of them."""
    if not path.is_file():
        raise BertclfError(f"{path}: no such file; run `dvc repro split` or pass --data")
    df = pd.read_parquet(path, columns=["text"])
    texts = df["text"].tolist()[:limit] if limit else df["text"].tolist()
    if not texts:
        raise BertclfError(f"{path}: holds no texts")
    return texts


def _timed_calls(fn: Any, chunks: list[Any], desc: str) -> np.ndarray:
    seconds = []
    with progress(len(chunks), desc, "calls") as bar:
        for chunk in chunks:
            t0 = time.perf_counter()
            fn(chunk)
            seconds.append(time.perf_counter() - t0)
            bar.update()  # outside the timed call
    return np.asarray(seconds)


def bench_batch_size(clf: TextClassifier, texts: list[str], batch: int) -> dict[str, Any]:
    chunks = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    clf.batch_size = max(batch, 1)
    clf.logits(chunks[0])  # warm-up: allocator, kernels, onnxruntime's first run
    with_tok = _timed_calls(clf.logits, chunks, f"bench batch {batch}")
    encoded = [clf.encode(c) for c in chunks]
    model_only = _timed_calls(lambda enc: clf.logits_of(clf.store(enc)), encoded,
                              f"bench batch {batch}, model only")
    real = sum(sum(e["length"]) for e in encoded)
    padded = sum(len(e["length"]) * max(e["length"]) for e in encoded)
    return {
        "batch_size": batch,
        "texts": len(texts),
        "samples_per_s": round(len(texts) / with_tok.sum(), 1),
        "samples_per_s_model_only": round(len(texts) / model_only.sum(), 1),
        "latency_ms_p50": round(float(np.percentile(with_tok, 50)) * 1000, 2),
        "latency_ms_p95": round(float(np.percentile(with_tok, 95)) * 1000, 2),
        "model_latency_ms_p50": round(float(np.percentile(model_only, 50)) * 1000, 2),
        "model_latency_ms_p95": round(float(np.percentile(model_only, 95)) * 1000, 2),
        "padding_fraction": round(1 - real / max(padded, 1), 4),
        "mean_tokens": round(real / len(texts), 1),
    }


def run_bench(clf: TextClassifier, texts: list[str], batch_sizes: list[int]) -> dict[str, Any]:
    if not batch_sizes or min(batch_sizes) < 1:
        raise BertclfError("--batch-sizes must be positive integers, e.g. 1,8,32,128")
    info = clf.describe()
    info["cpu_threads"] = torch.get_num_threads()
    return {**info, "results": [bench_batch_size(clf, texts, b) for b in batch_sizes]}


def markdown(report: dict[str, Any]) -> str:
    runtime = report["runtime"] + (f" {report['quantize']}" if report.get("quantize") else "")
    lines = [f"`{report['model']}` ({report['arch']}, {runtime}, {report['precision']}) on "
             f"{report['device']}, {report['threads']} threads, max_length {report['max_length']}", "",
             "| model | device | batch | samples/s | samples/s (model only) | p50 ms | p95 ms | padding |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {report['arch']} ({runtime}) | {report['device']} | {r['batch_size']} | "
                     f"{r['samples_per_s']:,} | {r['samples_per_s_model_only']:,} | {r['latency_ms_p50']} | "
                     f"{r['latency_ms_p95']} | {r['padding_fraction'] * 100:.1f} % |")
    return "\n".join(lines) + "\n"


def write_bench(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """`out`.json and `out`.md."""
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    write_json(json_path, report)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path
