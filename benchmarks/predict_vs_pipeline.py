"""Inference: `bertclf` prediction vs Hugging Face `pipeline("text-classification")`, same model.

Same fine-tuned model directory, same real test texts (the first `--docs` of a split parquet,
raw strings in, tokenization included), same max length and truncation (head), same threads,
on this machine. The pipeline runs with its default batch size (texts one at a time) and with
each of `--pipeline-batch-sizes`; its best is reported. Ours runs `TextClassifier.predict_proba`
(batches sorted by length) in fp32 and, on CPUs with bf16 units, bf16 autocast, and the ONNX
exports (fp32, int8) on onnxruntime. Accuracy is measured on the whole split for every variant of ours.

    python benchmarks/predict_vs_pipeline.py --model models/classifier --data data/split/test.parquet \
        --docs 1000 --out benchmarks/results/predict_vs_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bertclf.export import export_onnx
from bertclf.predictor import TextClassifier


def cpu_model() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def timed(fn: Any, texts: list[str]) -> tuple[float, Any]:
    fn(texts[:8])  # warm-up
    t0 = time.perf_counter()
    out = fn(texts)
    return time.perf_counter() - t0, out


def pipeline_runs(model: Path, texts: list[str], max_length: int, batch_sizes: list[int]) -> list[dict]:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model), tokenizer=str(model), device="cpu")
    runs = []
    for bs in [None, *batch_sizes]:
        kwargs: dict[str, Any] = {"truncation": True, "max_length": max_length}
        if bs is not None:
            kwargs["batch_size"] = bs
        seconds, _ = timed(lambda t, kw=kwargs: pipe(t, **kw), texts)
        runs.append({"name": f"pipeline batch_size={bs or 'default'}", "batch_size": bs,
                     "seconds": round(seconds, 2), "samples_per_s": round(len(texts) / seconds, 1)})
        print(runs[-1], flush=True)
    return runs


def ours_run(name: str, clf: TextClassifier, texts: list[str], all_texts: list[str],
             labels: np.ndarray) -> dict:
    seconds, _ = timed(clf.predict_proba, texts)
    acc = float((clf.logits(all_texts).argmax(1) == labels).mean())
    run = {"name": name, "batch_size": clf.batch_size, "seconds": round(seconds, 2),
           "samples_per_s": round(len(texts) / seconds, 1), "test_acc": round(acc, 5)}
    print(run, flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/classifier"))
    parser.add_argument("--data", type=Path, default=Path("data/split/test.parquet"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pipeline-batch-sizes", default="8,32,64")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predict_vs_pipeline.json"))
    args = parser.parse_args()

    df = pd.read_parquet(args.data)
    all_texts, labels = df["text"].tolist(), df["label"].to_numpy()
    texts = all_texts[: args.docs]
    clf = TextClassifier(args.model, batch_size=args.batch_size)
    if clf.arch != "finetune":
        sys.exit(f"{args.model} is a {clf.arch} model; this benchmark compares fine-tuned models")
    cfg = clf.tokenize_cfg
    if cfg.truncation != "head":
        sys.exit("the pipeline truncates the head only; use a model trained with tokenize.truncation=head")
    runs = pipeline_runs(args.model, texts, cfg.max_length,
                         [int(x) for x in args.pipeline_batch_sizes.split(",")])
    ours = [ours_run("bertclf fp32", clf, texts, all_texts, labels)]
    if cpu_has_bf16():
        ours.append(ours_run("bertclf bf16", TextClassifier(args.model, batch_size=args.batch_size,
                                                            precision="bf16"), texts, all_texts, labels))
    else:
        print("bertclf bf16: skipped, this CPU has no bf16 units (autocast would be emulated)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in (None, "int8"):
            out = export_onnx(args.model, Path(tmp) / f"onnx-{quantize}", quantize)
            ours.append(ours_run(f"bertclf onnx {quantize or 'fp32'}",
                                 TextClassifier(out, batch_size=args.batch_size), texts, all_texts, labels))
    default = runs[0]["samples_per_s"]
    best = max(r["samples_per_s"] for r in runs)
    fp32 = ours[0]["samples_per_s"]
    for r in ours:
        r["vs_pipeline_default"] = round(r["samples_per_s"] / default, 2)
        r["vs_pipeline_best"] = round(r["samples_per_s"] / best, 2)
        r["vs_bertclf_fp32"] = round(r["samples_per_s"] / fp32, 2)
        r["acc_drop_points_vs_fp32"] = round(100 * (ours[0]["test_acc"] - r["test_acc"]), 2)
    report = {
        "benchmark": "predict_vs_pipeline",
        "command": "python " + " ".join(sys.argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": cpu_has_bf16(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "model": str(args.model), "data": str(args.data), "docs_timed": len(texts),
        "docs_for_accuracy": len(all_texts), "max_length": cfg.max_length,
        "mean_tokens": round(float(np.mean(clf.encode(texts)["length"])), 1),
        "pipeline": runs, "ours": ours,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({r["name"]: [r["samples_per_s"], r["vs_pipeline_default"], r["vs_pipeline_best"],
                                  r["test_acc"]] for r in ours}, indent=1))


if __name__ == "__main__":
    main()
