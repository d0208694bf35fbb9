"""Featurize throughput: bertclf's length-grouped batches against Hugging Face at its best.

Ways to run the same encoder over the same token ids (a seeded sample of a tokenized split):

- `bertclf`: `bertclf.features` as the featurize stage runs it, batches grouped by length under a
  padded-token budget (`--max-batch-tokens`), fp32; `bertclf_bf16`: the same on bf16 weights
  (what `featurize.precision: auto` does on a CPU with bf16 units);
- `bertclf_before`: as the stage ran before bf16 and the smaller budget (fp32, 8,192 tokens);
- `hf_sorted`: what a careful Hugging Face user does: documents sorted by length, fixed batches
  of `--hf-batch-size` padded to the longest in the batch (`DataCollatorWithPadding`'s padding),
  fp32 and (`hf_sorted_bf16`) on bf16 weights;
- `hf_padded_max_length`: the straightforward way, fixed batches padded to `--max-length`.

The headline is bertclf against `hf_sorted` at the same precision; the fp32 vectors of real tokens
must agree (max abs difference). Each method's useful work (the encoder's matmul FLOPs over real
tokens) is reported in GFLOP/s and as a fraction of this CPU's matmul peak on the encoder's own
shapes (`benchlib.matmul_peak`). Warm-up, then `--repeats` interleaved rounds; medians with their
range (`benchlib`).

    python -m benchmarks.featurize_vs_hf --tokens data/tokens/train.parquet --encoder models/encoder \\
        --docs 1000 --out benchmarks/results/featurize_rotten_tomatoes.json
"""

from __future__ import annotations

import os

import numpy as np
import torch

from benchmarks.benchlib import figures, finish, interleaved, sample, sample_parser, useful_work
from bertclf.data.stores import length_batches
from bertclf.encoder import batch_encoder, load_encoder


def main() -> None:
    parser = sample_parser(__doc__, docs=1000, max_length=256)
    parser.add_argument("--hf-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-tokens", type=int, default=2048)
    args = parser.parse_args()
    load_before = os.getloadavg()

    ids = [np.asarray(x, dtype=np.int64) for x in sample(args, ["input_ids"])["input_ids"]]
    lengths = np.array([len(x) for x in ids])
    model = load_encoder(args.encoder)
    model_bf16 = load_encoder(args.encoder).to(torch.bfloat16)
    pad = model.config.pad_token_id or 0
    vectors: dict[str, list[torch.Tensor]] = {}

    def bertclf_way(name: str, encoder: torch.nn.Module, budget: int) -> None:
        encode = batch_encoder(encoder, "last", pad)
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        for batch in length_batches(lengths, budget):
            enc = encode([ids[i] for i in batch])
            for row, i in enumerate(batch):
                out[i] = enc[row, : lengths[i]].clone()
        vectors[name] = out

    def hf(order: np.ndarray, width: int | None, name: str, model: torch.nn.Module = model) -> None:
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
        "bertclf": lambda: bertclf_way("bertclf", model, args.max_batch_tokens),
        "bertclf_bf16": lambda: bertclf_way("bertclf_bf16", model_bf16, args.max_batch_tokens),
        "bertclf_before": lambda: bertclf_way("bertclf_before", model, 8192),
        "hf_sorted": lambda: hf(by_length, None, "hf_sorted"),
        "hf_sorted_bf16": lambda: hf(by_length, None, "hf_sorted_bf16", model_bf16),
        "hf_padded_max_length": lambda: hf(np.arange(len(ids)), args.max_length, "hf_padded_max_length"),
    }
    peak, flops = useful_work(model.config, lengths)
    timings = interleaved(methods, repeats=args.repeats)
    tokens = int(lengths.sum())
    result = {
        "data": str(args.tokens), "docs": len(ids), "real_tokens": tokens,
        "mean_length": round(float(lengths.mean()), 1), "max_length": args.max_length,
        "settings": {"max_batch_tokens": args.max_batch_tokens, "hf_batch_size": args.hf_batch_size,
                     "repeats": args.repeats},
        "matmul_peak": peak,
        "methods": {name: {**figures(t, len(ids), "docs", flops=flops, peak=peak,
                                     precision="bf16" if "bf16" in name else "fp32"),
                           "tokens_per_s": round(tokens / t["median_s"], 1)}
                    for name, t in timings.items()},
    }

    def ratio(slow: str, fast: str) -> float:
        return round(timings[slow]["median_s"] / timings[fast]["median_s"], 2)

    best_hf = min(("hf_sorted", "hf_padded_max_length"), key=lambda n: timings[n]["median_s"])
    result["speedup"] = {
        "bertclf_vs_hf_best_fp32": ratio(best_hf, "bertclf"),
        "bertclf_bf16_vs_hf_sorted_bf16": ratio("hf_sorted_bf16", "bertclf_bf16"),
        "bertclf_bf16_vs_bertclf_before": ratio("bertclf_before", "bertclf_bf16"),
        "bertclf_vs_bertclf_before": ratio("bertclf_before", "bertclf"),
        "bertclf_vs_hf_padded_max_length": ratio("hf_padded_max_length", "bertclf"),
    }
    result["hf_best_fp32"] = best_hf

    def max_diff(a_name: str, b_name: str) -> float:
        return max(float((a.float() - b.float()).abs().max())
                   for a, b in zip(vectors[a_name], vectors[b_name], strict=True))

    result["max_abs_diff"] = {"fp32_vs_hf_sorted": max_diff("bertclf", "hf_sorted"),
                              "fp32_vs_hf_padded_max_length": max_diff("bertclf", "hf_padded_max_length"),
                              "bf16_vs_fp32": max_diff("bertclf_bf16", "bertclf")}
    finish(result, args.out, load_before)


if __name__ == "__main__":
    main()
