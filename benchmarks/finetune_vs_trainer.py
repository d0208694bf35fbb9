"""Fine-tuning throughput: bertclf's training loop against Hugging Face `Trainer` at its best.

Same model (the encoder with a fresh classification head), same documents (a seeded sample of a
tokenized split, cut to `--max-length`), same batch size and one epoch of optimizer steps:

- `bertclf_<precision>`: `bertclf.training.train`, the function the `train` stage runs
  (`train.arch=finetune`, length-grouped batches, SDPA, AdamW with layer-wise groups, clipping,
  the LR schedule, the per-step log), timed over its epoch loop (its `train_seconds`);
- `trainer_<precision>`: `Trainer.train()` configured at its best for this setting: dynamic
  padding (`DataCollatorWithPadding`), length grouping, its default optimizer (fused AdamW in
  transformers 5), timed from `on_train_begin` to `on_train_end`.

Each runs in fp32 and in bf16 (bertclf: `train.precision=bf16`, autocast; Trainer: `bf16=True`,
autocast) where the CPU has bf16 units. The headline is the same-precision ratio. A short warm-up
run of each, then `--repeats` interleaved rounds (`benchlib`).

    python benchmarks/finetune_vs_trainer.py --tokens data/tokens/train.parquet --encoder models/encoder \\
        --docs 512 --batch-size 16 --max-length 128 --out benchmarks/results/finetune_vs_trainer.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import against_peak, encoder_flops, finish, matmul_peak

from bertclf.config import Config
from bertclf.data.stores import Inputs
from bertclf.data.tokenization import SCHEMA
from bertclf.training.loop import TrainOutputs, train


def sample(tokens: Path, docs: int, max_length: int, seed: int) -> dict[str, list]:
    """`docs` documents of a tokenized split, each cut to `max_length` ids (keeping the final [SEP])."""
    table = pq.read_table(tokens, columns=["id", "label", "input_ids"])
    pick = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=min(docs, table.num_rows),
                                                      replace=False))
    ids = []
    for x in table.column("input_ids").take(pick).to_pylist():
        ids.append(x if len(x) <= max_length else [*x[: max_length - 1], x[-1]])
    return {"id": table.column("id").take(pick).to_pylist(),
            "label": table.column("label").take(pick).to_pylist(), "input_ids": ids}


def write_tokens(out: Path, docs: dict[str, list], labels: list[str]) -> None:
    """A `tokenize`-layout directory: train = the sample, val = its first 16 documents."""
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", len(docs["id"])), ("val", 16)):
        ids = docs["input_ids"][:n]
        pq.write_table(pa.table({
            "id": docs["id"][:n], "label": pa.array(docs["label"][:n], pa.int64()),
            "input_ids": pa.array(ids, pa.list_(pa.int32())),
            "length": pa.array([len(x) for x in ids], pa.int32()),
            "sentence_lengths": pa.array([[len(x)] for x in ids], pa.list_(pa.int32())),
            "full_tokens": pa.array([len(x) for x in ids], pa.int32()),
            "windows": pa.array([[] for _ in ids], pa.list_(pa.int32())),  # no sliding windows
            "window_lengths": pa.array([[] for _ in ids], pa.list_(pa.int32())),
        }, schema=SCHEMA), out / f"{split}.parquet")
    (out / "meta.json").write_text(json.dumps({"labels": labels}))


def unfused_optimizer(model: torch.nn.Module, arch: Any, config: Config) -> torch.optim.Optimizer:
    """bertclf's optimizer as it was before the fused kernel (for `--compare-unfused`)."""
    return torch.optim.AdamW(arch.param_groups(model, config), lr=config.train.lr,
                             weight_decay=config.train.weight_decay, fused=False)


def bertclf_unfused_run(tokens: Path, encoder: Path, batch_size: int, precision: str, seed: int) -> float:
    from unittest import mock

    with mock.patch("bertclf.training.loop.make_optimizer", unfused_optimizer):
        return bertclf_run(tokens, encoder, batch_size, precision, seed)


# bertclf with one or more speed levers on: the run's name -> its params overrides
NO_ATTENTION_DROPOUT = {"finetune.attention_dropout": 0.0}
FROZEN = {"finetune.freeze_embeddings": True}
NO_DROPOUT = {"finetune.hidden_dropout": 0.0, **NO_ATTENTION_DROPOUT}
LEVERS = {
    "attention_dropout_0": NO_ATTENTION_DROPOUT,  # --compare-attention-dropout
    "frozen_embeddings": FROZEN,  # --compare-frozen-embeddings
    "frozen_embeddings_attention_dropout_0": {**FROZEN, **NO_ATTENTION_DROPOUT},
    "no_dropout": NO_DROPOUT,  # --compare-no-dropout
    "frozen_embeddings_no_dropout": {**FROZEN, **NO_DROPOUT},
}


def bertclf_run(tokens: Path, encoder: Path, batch_size: int, precision: str, seed: int,
                overrides: dict[str, Any] | None = None) -> float:
    """Seconds of bertclf's epoch loop (the `train_seconds` it reports), one epoch."""
    config = Config().replace({"train.arch": "finetune", "train.epochs": 1, "train.batch_size": batch_size,
                               "train.lr": 5e-5, "train.precision": precision, "train.seed": seed,
                               "train.lr_decay": "linear", "train.warmup_ratio": 0.1,
                               "runtime.eval_batch_size": 64, **(overrides or {})})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        report = train(config, Inputs(tokens, tokens, encoder),
                       TrainOutputs(out / "model", out / "ckpt", out / "train.json", out / "plots"))
    return float(report["train_seconds"])


def trainer_run(tokens: Path, encoder: Path, batch_size: int, precision: str, seed: int) -> float:
    """Seconds of `Trainer.train()`'s loop: dynamic padding, length grouping, its default optimizer."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    table = pq.read_table(tokens / "train.parquet")
    labels = table.column("label").to_pylist()
    num_labels = len(json.loads((tokens / "meta.json").read_text())["labels"])
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=num_labels,
                                                               attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(encoder)
    data = [{"input_ids": ids, "labels": y} for ids, y in zip(table.column("input_ids").to_pylist(), labels,
                                                              strict=True)]
    times: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            times["begin"] = time.perf_counter()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            times["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        # a 10 % linear warm-up, as bertclf's run: a float warmup_steps in transformers 5
        warmup = ({"warmup_steps": 0.1} if "warmup_ratio" not in TrainingArguments.__dataclass_fields__
                  else {"warmup_ratio": 0.1})
        grouping = ({"train_sampling_strategy": "group_by_length"}
                    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__
                    else {"group_by_length": True})
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch_size, num_train_epochs=1,
                                 learning_rate=5e-5, bf16=precision == "bf16", use_cpu=True, **warmup,
                                 report_to=[], save_strategy="no", logging_strategy="no", seed=seed,
                                 dataloader_num_workers=0, disable_tqdm=True, **grouping)
        Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok),
                callbacks=[Clock()]).train()
    return times["end"] - times["begin"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=Path("data/tokens/train.parquet"))
    parser.add_argument("--encoder", type=Path, default=Path("models/encoder"))
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-unfused", action="store_true",
                        help="also bertclf with the unfused AdamW it used before (the gain of fusing)")
    parser.add_argument("--compare-attention-dropout", action="store_true",
                        help="also bertclf with finetune.attention_dropout: 0 (SDPA's fused kernel)")
    parser.add_argument("--compare-frozen-embeddings", action="store_true",
                        help="also bertclf with finetune.freeze_embeddings, alone and with "
                             "attention_dropout 0")
    parser.add_argument("--compare-no-dropout", action="store_true",
                        help="also bertclf with no dropout (hidden and attention 0), alone and with "
                             "frozen word embeddings")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.tokens.exists() or not args.encoder.exists():
        sys.exit(f"{args.tokens} or {args.encoder} missing: run `dvc repro tokenize` first")
    load_before = os.getloadavg()
    meta = json.loads((args.tokens.parent / "meta.json").read_text())
    docs = sample(args.tokens, args.docs, args.max_length, args.seed)
    bf16 = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    runs = [("bertclf", bertclf_run), ("trainer", trainer_run)]
    if args.compare_unfused:
        runs.append(("bertclf_unfused", bertclf_unfused_run))
    levers = [*(["attention_dropout_0"] if args.compare_attention_dropout else []),
              *(["frozen_embeddings", "frozen_embeddings_attention_dropout_0"]
                if args.compare_frozen_embeddings else []),
              *(["no_dropout", "frozen_embeddings_no_dropout"] if args.compare_no_dropout else [])]
    runs += [(f"bertclf_{lever}", functools.partial(bertclf_run, overrides=LEVERS[lever]))
             for lever in levers]
    methods = {f"{who}_{p}": (fn, p) for p in precisions for who, fn in runs}
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    with tempfile.TemporaryDirectory() as tmp:
        full, small = Path(tmp) / "full", Path(tmp) / "warmup"
        write_tokens(full, docs, meta["labels"])
        write_tokens(small, {k: v[:64] for k, v in docs.items()}, meta["labels"])
        for fn, p in methods.values():  # warm-up: a short run of each
            fn(small, args.encoder, args.batch_size, p, args.seed)
        for _ in range(args.repeats):  # interleaved rounds
            for name, (fn, p) in methods.items():
                seconds[name].append(fn(full, args.encoder, args.batch_size, p, args.seed))
                print(name, round(len(docs["id"]) / seconds[name][-1], 2), "samples/s", flush=True)
    n = len(docs["id"])
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.encoder)
    peak = matmul_peak(config.hidden_size, config.intermediate_size)
    # useful work: forward + backward (3x the forward's matmul FLOPs) over the real tokens
    flops = 3 * sum(encoder_flops(config, len(x)) for x in docs["input_ids"])
    rate = {name: {"samples_per_s": round(n / float(np.median(s)), 2),
                   "samples_per_s_range": [round(n / max(s), 2), round(n / min(s), 2)],
                   "seconds": [round(x, 2) for x in s],
                   **against_peak(flops, float(np.median(s)), peak, methods[name][1])}
            for name, s in seconds.items()}
    result: dict[str, Any] = {
        "data": str(args.tokens), "docs": n,
        "mean_length": round(float(np.mean([len(x) for x in docs["input_ids"]])), 1),
        "batch_size": args.batch_size, "max_length": args.max_length, "repeats": args.repeats,
        "matmul_peak": peak, "methods": rate,
        "same_precision": {p: round(rate[f"bertclf_{p}"]["samples_per_s"]
                                    / rate[f"trainer_{p}"]["samples_per_s"], 2) for p in precisions},
    }
    if args.compare_unfused:
        result["fused_gain"] = {p: round(rate[f"bertclf_{p}"]["samples_per_s"]
                                         / rate[f"bertclf_unfused_{p}"]["samples_per_s"], 2)
                                for p in precisions}
    for lever in levers:
        speed = {p: rate[f"bertclf_{lever}_{p}"]["samples_per_s"] for p in precisions}
        result[f"{lever}_gain"] = {p: round(speed[p] / rate[f"bertclf_{p}"]["samples_per_s"], 2)
                                   for p in precisions}
        result[f"{lever}_vs_trainer"] = {p: round(speed[p] / rate[f"trainer_{p}"]["samples_per_s"], 2)
                                         for p in precisions}
    finish(result, args.out, load_before)


if __name__ == "__main__":
    main()
