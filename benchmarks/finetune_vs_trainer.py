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

    python -m benchmarks.finetune_vs_trainer --tokens data/tokens/train.parquet --encoder models/encoder \\
        --docs 512 --batch-size 16 --max-length 128 --out benchmarks/results/finetune_vs_trainer.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmarks.benchlib import figures, finish, interleaved, sample, sample_parser, useful_work
from bertclf.config import Config, TrainConfig
from bertclf.data.stores import Inputs
from bertclf.data.tokenization import SCHEMA
from bertclf.inference import has_bf16_units
from bertclf.training.loop import TrainOutputs, train


def cut_sample(args: argparse.Namespace) -> dict[str, list]:
    """`benchlib.sample`'s documents, each cut to `--max-length` ids (keeping the final [SEP])."""
    docs = sample(args, ["id", "label", "input_ids"])
    n = args.max_length
    docs["input_ids"] = [x if len(x) <= n else [*x[: n - 1], x[-1]] for x in docs["input_ids"]]
    return docs


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


def unfused_optimizer(model: torch.nn.Module, arch: Any, recipe: TrainConfig,
                      knobs: Any) -> torch.optim.Optimizer:
    """bertclf's optimizer as it was before the fused kernel (for `--compare-unfused`)."""
    return torch.optim.AdamW(arch.param_groups(model, recipe, knobs), lr=recipe.lr,
                             weight_decay=recipe.weight_decay, fused=False)


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
    parser = sample_parser(__doc__, docs=512, max_length=128)
    parser.add_argument("--batch-size", type=int, default=16)
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
    args = parser.parse_args()
    load_before = os.getloadavg()
    docs = cut_sample(args)
    meta = json.loads((args.tokens.parent / "meta.json").read_text())
    precisions = ["fp32", "bf16"] if has_bf16_units(torch.device("cpu")) else ["fp32"]
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
    n = len(docs["id"])
    with tempfile.TemporaryDirectory() as tmp:
        full, small = Path(tmp) / "full", Path(tmp) / "warmup"
        write_tokens(full, docs, meta["labels"])
        write_tokens(small, {k: v[:64] for k, v in docs.items()}, meta["labels"])
        for fn, p in methods.values():  # warm-up: a short run of each
            fn(small, args.encoder, args.batch_size, p, args.seed)
        timings = interleaved(
            {name: functools.partial(fn, full, args.encoder, args.batch_size, p, args.seed)
             for name, (fn, p) in methods.items()},
            args.repeats, warmup=False, self_timed=True,
            on_run=lambda name, s: print(name, round(n / s, 2), "samples/s", flush=True))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.encoder)
    # useful work: forward + backward (3x the forward's matmul FLOPs) over the real tokens
    peak, flops = useful_work(config, [len(x) for x in docs["input_ids"]], passes=3)
    rate = {name: figures(t, n, "samples", digits=2, flops=flops, peak=peak, precision=methods[name][1])
            for name, t in timings.items()}
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
