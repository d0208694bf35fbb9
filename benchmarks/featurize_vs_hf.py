"""Featurize throughput: bertclf's length-grouped batches against Hugging Face at its best.

Three ways to run the same encoder over the same token ids (a seeded sample of a tokenized split):

- `bertclf`: `bertclf.features` as the featurize stage runs it, batches grouped by length under a
  padded-token budget (`--max-batch-tokens`);
- `hf_sorted`: what a careful Hugging Face user does: documents sorted by length, fixed batches
  of `--hf-batch-size` padded to the longest in the batch (`DataCollatorWithPadding`'s padding);
- `hf_padded_max_length`: the straightforward way, fixed batches padded to `--max-length`.

The headline is bertclf against `hf_sorted`, the faster of the two HF ways; the vectors of real
tokens must agree (max abs difference in fp32). Warm-up, then `--repeats` interleaved rounds;
medians with their range (`benchlib`).

    python benchmarks/featurize_vs_hf.py --tokens data/tokens/train.parquet --encoder models/encoder \\
        --docs 1000 --out benchmarks/results/featurize_rotten_tomatoes.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import finish, interleaved, per_second

from bertclf.data.stores import length_batches
from bertclf.encoder import batch_encoder, load_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=Path("data/tokens/train.parquet"))
    parser.add_argument("--encoder", type=Path, default=Path("models/encoder"))
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--hf-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.tokens.exists() or not args.encoder.exists():
        sys.exit(f"{args.tokens} or {args.encoder} missing: run `dvc repro tokenize` first")
    load_before = os.getloadavg()

    table = pq.read_table(args.tokens, columns=["input_ids", "length"])
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(table.num_rows, size=min(args.docs, table.num_rows), replace=False))
    ids = [np.asarray(x, dtype=np.int64) for x in table.column("input_ids").take(pick).to_pylist()]
    lengths = np.array([len(x) for x in ids])
    model = load_encoder(args.encoder)
    pad = model.config.pad_token_id or 0
    vectors: dict[str, list[torch.Tensor]] = {}

    encode = batch_encoder(model, "last", pad)

    def bertclf_way() -> None:
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        for batch in length_batches(lengths, args.max_batch_tokens):
            enc = encode([ids[i] for i in batch])
            for row, i in enumerate(batch):
                out[i] = enc[row, : lengths[i]].clone()
        vectors["bertclf"] = out

    def hf(order: np.ndarray, width: int | None, name: str) -> None:
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        with torch.inference_mode():
            for start in range(0, len(order), args.hf_batch_size):
                chunk = order[start:start + args.hf_batch_size]
                longest = width or int(lengths[chunk].max())
                input_ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
                mask = torch.zeros_like(input_ids)
                for row, i in enumerate(chunk):
                    input_ids[row, : lengths[i]] = torch.from_numpy(ids[i])
                    mask[row, : lengths[i]] = 1
                hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                for row, i in enumerate(chunk):
                    out[i] = hidden[row, : lengths[i]].clone()
        vectors[name] = out

    by_length = np.argsort(-lengths, kind="stable")
    methods = {
        "bertclf": bertclf_way,
        "hf_sorted": lambda: hf(by_length, None, "hf_sorted"),
        "hf_padded_max_length": lambda: hf(np.arange(len(ids)), args.max_length, "hf_padded_max_length"),
    }
    timings = interleaved(methods, repeats=args.repeats)
    tokens = int(lengths.sum())
    result = {
        "data": str(args.tokens), "docs": len(ids), "real_tokens": tokens,
        "mean_length": round(float(lengths.mean()), 1), "max_length": args.max_length,
        "settings": {"max_batch_tokens": args.max_batch_tokens, "hf_batch_size": args.hf_batch_size,
                     "repeats": args.repeats},
        "methods": {name: {**t, **{f"docs_{k}": v for k, v in per_second(t, len(ids)).items()},
                           "tokens_per_s": round(tokens / t["median_s"], 1)} for name, t in timings.items()},
    }
    best_hf = min(("hf_sorted", "hf_padded_max_length"), key=lambda n: timings[n]["median_s"])
    result["speedup_vs_hf_best"] = round(timings[best_hf]["median_s"] / timings["bertclf"]["median_s"], 2)
    result["hf_best"] = best_hf
    result["speedup_vs_hf_padded_max_length"] = round(
        timings["hf_padded_max_length"]["median_s"] / timings["bertclf"]["median_s"], 2)
    result["max_abs_diff_fp32"] = {
        name: max(float((a - b).abs().max()) for a, b in zip(vectors["bertclf"], vectors[name], strict=True))
        for name in ("hf_sorted", "hf_padded_max_length")}
    finish(result, args.out, load_before)


if __name__ == "__main__":
    main()
