"""How `bertclf predict` should batch a fine-tuned model: texts per pass against padded tokens per pass.

The same model and texts, tokenized once; each plan is one pass over them, longest first, in
batches of N texts (`eval_batches`) or of at most T padded tokens (`length_batches`, what
`predict` does since this measurement: `PREDICT_BATCH_TOKENS`). Interleaved rounds (`benchlib`),
at the precision `predict` picks by default (`auto`).

    python -m benchmarks.predict_batching --model models/classifier \\
        --data r8=data/split/test.parquet --data rt=other/test.parquet --docs 600 \\
        --out benchmarks/results/predict_batching.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.benchlib import figures, finish, interleaved
from bertclf.data.stores import eval_batches, length_batches
from bertclf.serving.predictor import TextClassifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/classifier"))
    parser.add_argument("--data", action="append", required=True,
                        help="name=path of a split parquet with a text column (repeatable)")
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--texts-per-pass", default="16,32,64")
    parser.add_argument("--tokens-per-pass", default="1024,2048,4096")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    clf = TextClassifier(args.model, precision=args.precision)
    if clf.family.reads != "tokens":
        sys.exit(f"{args.model} is a {clf.arch} model; this benchmark batches token-id models")
    result: dict[str, Any] = {"model": str(args.model), "precision": clf.precision, "datasets": {}}
    for spec in args.data:
        name, _, path = spec.partition("=")
        texts = pd.read_parquet(path)["text"].tolist()[: args.docs]
        store = clf.store(clf.encode(texts))
        lengths = store.lengths
        plans = {f"{n} texts": eval_batches(lengths, n) for n in map(int, args.texts_per_pass.split(","))}
        budgets = map(int, args.tokens_per_pass.split(","))
        plans |= {f"{t} tokens": length_batches(lengths, t) for t in budgets}

        def run(batches: list[Any], store: Any = store) -> None:
            with torch.inference_mode(), clf._autocast():
                for idx in batches:
                    clf.model(clf.batch(store, idx))

        clf.model.eval()
        timings = interleaved({plan: (lambda b=batches: run(b)) for plan, batches in plans.items()},
                              repeats=args.repeats)
        rows = {plan: figures(t, len(texts)) for plan, t in timings.items()}
        best = max(rows, key=lambda p: rows[p]["per_s"])
        result["datasets"][name] = {"data": path, "texts": len(texts),
                                    "mean_tokens": round(float(store.lengths.mean()), 1),
                                    "texts_per_s": rows, "best": best,
                                    "2048_tokens_vs_64_texts": round(rows["2048 tokens"]["per_s"]
                                                                     / rows["64 texts"]["per_s"], 2)}
    finish(result, args.out, load_before)


if __name__ == "__main__":
    main()
