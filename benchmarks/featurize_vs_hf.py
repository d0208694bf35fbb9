"""Featurize throughput: bertclf's length-grouped batches vs the straightforward Hugging Face way.

The straightforward way: `AutoModel` over fixed-size batches padded to `max_length`. Both run
the same encoder on the same token ids (a seeded sample of a tokenized split) on this machine;
the vectors of real tokens must agree (max abs difference <= 1e-3 in fp32).

    python benchmarks/featurize_vs_hf.py --tokens data/tokens/train.parquet --encoder models/encoder \
        --docs 1000 --out benchmarks/results/featurize_rotten_tomatoes.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bertclf.features import encode_batch, length_batches, load_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=Path("data/tokens/train.parquet"))
    parser.add_argument("--encoder", type=Path, default=Path("models/encoder"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--hf-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.tokens.exists() or not args.encoder.exists():
        sys.exit(f"{args.tokens} or {args.encoder} missing: run `dvc repro tokenize` first")

    table = pq.read_table(args.tokens, columns=["input_ids", "length"])
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(table.num_rows, size=min(args.docs, table.num_rows), replace=False))
    ids = [np.asarray(x, dtype=np.int64) for x in table.column("input_ids").take(pick).to_pylist()]
    lengths = np.array([len(x) for x in ids])
    model = load_encoder(args.encoder)
    pad = model.config.pad_token_id or 0

    # bertclf: length-grouped batches under a padded-token budget
    encode_batch(model, ids[:4], "last", pad)  # warm-up
    t0 = time.perf_counter()
    ours = [None] * len(ids)
    for batch in length_batches(lengths, args.max_batch_tokens):
        out = encode_batch(model, [ids[i] for i in batch], "last", pad)
        for row, i in enumerate(batch):
            ours[i] = out[row, : lengths[i]].clone()
    ours_s = time.perf_counter() - t0

    # Hugging Face, straightforward: fixed batches padded to max_length
    t0 = time.perf_counter()
    hf = []
    with torch.inference_mode():
        for start in range(0, len(ids), args.hf_batch_size):
            chunk = ids[start:start + args.hf_batch_size]
            input_ids = torch.full((len(chunk), args.max_length), pad, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, x in enumerate(chunk):
                input_ids[row, : len(x)] = torch.from_numpy(x)
                mask[row, : len(x)] = 1
            out = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            hf += [out[row, : len(x)].clone() for row, x in enumerate(chunk)]
    hf_s = time.perf_counter() - t0

    diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(ours, hf, strict=True))
    tokens = int(lengths.sum())
    result = {
        "data": str(args.tokens),
        "docs": len(ids),
        "real_tokens": tokens,
        "mean_length": round(float(lengths.mean()), 1),
        "max_length": args.max_length,
        "bertclf": {"seconds": round(ours_s, 2), "docs_per_s": round(len(ids) / ours_s, 1),
                    "tokens_per_s": round(tokens / ours_s, 1), "max_batch_tokens": args.max_batch_tokens},
        "hf_padded": {"seconds": round(hf_s, 2), "docs_per_s": round(len(ids) / hf_s, 1),
                      "tokens_per_s": round(tokens / hf_s, 1), "batch_size": args.hf_batch_size},
        "speedup": round(hf_s / ours_s, 2),
        "max_abs_diff_fp32": diff,
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
