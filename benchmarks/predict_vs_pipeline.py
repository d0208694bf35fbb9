"""Inference: `bertclf` prediction against Hugging Face `pipeline("text-classification")` at its best.

Same fine-tuned model directory, same real test texts (the first `--docs` of a split parquet, raw
strings in, tokenization included), same max length and truncation (head), same threads.

- the pipeline in file order, with its default batch size (one text at a time) and with each of
  `--pipeline-batch-sizes`; and with the texts sorted by length first (what a careful user does
  to cut padding; results put back in order), at each batch size; in fp32, and with the model in
  bf16 (`torch_dtype=torch.bfloat16`) where the CPU has bf16 units;
- ours: `bertclf.load(...).predict_proba` (batches of `--batch-size` sorted by length) in fp32,
  bf16 autocast where the CPU has bf16 units, torch's dynamic int8 linear layers
  (`precision="int8"`), and the ONNX exports (fp32, dynamic int8) on onnxruntime.

On a CPU with bf16 units, `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` makes oneDNN and
PyTorch's kernels use AVX2 only (and `has_bf16_units` answer no): an imitation of an AVX2-only
CPU, said so in the result (`machine.isa_limit`).

The headline compares each of ours with the pipeline's best at the same precision. A warm-up on a
few texts, then `--repeats` interleaved rounds (`benchlib`); accuracy on the whole split.

    python -m benchmarks.predict_vs_pipeline --model models/classifier --data data/split/test.parquet \\
        --docs 1000 --out benchmarks/results/predict_vs_pipeline.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.benchlib import figures, finish, interleaved, useful_work
from bertclf.inference import has_bf16_units
from bertclf.serving.export import export_onnx
from bertclf.serving.predictor import TextClassifier


def pipeline_methods(model: Path, texts: list[str], order: np.ndarray, max_length: int,
                     batch_sizes: list[int], bf16: bool) -> dict[str, Callable[[], Any]]:
    """`pipe(texts)` in file order and in length order, per batch size (and precision)."""
    from transformers import pipeline

    methods: dict[str, Callable[[], Any]] = {}
    for precision in ("fp32", "bf16") if bf16 else ("fp32",):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        pipe = pipeline("text-classification", model=str(model), tokenizer=str(model), device="cpu",
                        dtype=dtype)
        pipe(texts[:4], truncation=True, max_length=max_length)  # warm-up
        sorted_texts = [texts[i] for i in order]
        for bs in [None, *batch_sizes]:
            kwargs: dict[str, Any] = {"truncation": True, "max_length": max_length}
            if bs is not None:
                kwargs["batch_size"] = bs
            label = f"pipeline {precision} batch {bs or 'default (1)'}"
            methods[label] = lambda p=pipe, kw=kwargs: p(texts, **kw)
            if bs is not None:
                methods[f"{label}, sorted by length"] = lambda p=pipe, kw=kwargs, t=sorted_texts: p(t, **kw)
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/classifier"))
    parser.add_argument("--data", type=Path, default=Path("data/split/test.parquet"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pipeline-batch-sizes", default="8,32,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predict_vs_pipeline.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()

    df = pd.read_parquet(args.data)
    all_texts, labels = df["text"].tolist(), df["label"].to_numpy()
    texts = all_texts[: args.docs]
    clf = TextClassifier(args.model, batch_size=args.batch_size)
    if clf.arch != "finetune":
        sys.exit(f"{args.model} is a {clf.arch} model; this benchmark compares fine-tuned models")
    cfg = clf.tokenize_cfg
    if cfg.truncation != "head":
        sys.exit("the pipeline truncates the head only; use a model trained with tokenize.truncation=head")
    lengths = np.asarray(clf.encode(texts)["length"])
    order = np.argsort(-lengths, kind="stable")
    bf16 = has_bf16_units(torch.device("cpu"))

    ours: dict[str, TextClassifier] = {"bertclf fp32": clf}
    if bf16:
        ours["bertclf bf16"] = TextClassifier(args.model, batch_size=args.batch_size, precision="bf16")
    ours["bertclf int8"] = TextClassifier(args.model, batch_size=args.batch_size, precision="int8")
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in (None, "int8"):
            out = export_onnx(args.model, Path(tmp) / f"onnx-{quantize}", quantize)
            ours[f"bertclf onnx {quantize or 'fp32'}"] = TextClassifier(out, batch_size=args.batch_size)
        for model in ours.values():
            model.predict_proba(texts[:8])  # warm-up
        methods = {name: (lambda m=model: m.predict_proba(texts)) for name, model in ours.items()}
        methods.update(pipeline_methods(args.model, texts, order, cfg.max_length,
                                        [int(x) for x in args.pipeline_batch_sizes.split(",")], bf16))
        timings = interleaved(methods, repeats=args.repeats, warmup=False)
        accuracy = {name: round(float((m.logits(all_texts).argmax(1) == labels).mean()), 5)
                    for name, m in ours.items()}

    config = getattr(getattr(clf.model, "model", clf.model), "config", None)  # the HF model's
    peak, flops = useful_work(config, lengths) if config else ({}, 0.0)
    rows = {name: figures(t, len(texts), flops=0.0 if "onnx" in name else flops, peak=peak,
                          precision="bf16" if "bf16" in name else "fp32")
            for name, t in timings.items()}
    for name, acc in accuracy.items():
        rows[name]["test_acc"] = acc
    best = {p: max((n for n in rows if n.startswith(f"pipeline {p}")), key=lambda n: rows[n]["per_s"])
            for p in (("fp32", "bf16") if bf16 else ("fp32",))}
    default = rows["pipeline fp32 batch default (1)"]["per_s"]
    for name in ours:
        precision = "bf16" if name == "bertclf bf16" else "fp32"
        rows[name]["vs_pipeline_default_fp32"] = round(rows[name]["per_s"] / default, 2)
        rows[name][f"vs_pipeline_best_{precision}"] = round(
            rows[name]["per_s"] / rows[best[precision]]["per_s"], 2)
        rows[name]["acc_drop_points_vs_fp32"] = round(100 * (accuracy["bertclf fp32"] - accuracy[name]), 2)
    result = {
        "benchmark": "predict_vs_pipeline", "model": str(args.model), "data": str(args.data),
        "docs_timed": len(texts), "docs_for_accuracy": len(all_texts), "max_length": cfg.max_length,
        "mean_tokens": round(float(lengths.mean()), 1), "repeats": args.repeats,
        "matmul_peak": peak, "pipeline_best": best, "samples_per_s": rows,
    }
    limit = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ}
    finish(result, args.out, load_before, {"isa_limit": limit} if limit else None)


if __name__ == "__main__":
    main()
