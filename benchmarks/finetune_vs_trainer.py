"""Fine-tuning throughput: bertclf's training step vs Hugging Face `Trainer`, same everything.

Same model (the encoder + a classification head), same documents (a seeded sample of a
tokenized split), same batch size and max length, same number of optimizer steps, on this
machine. The Trainer is configured at its best for this setting: dynamic padding
(`DataCollatorWithPadding`) and length grouping (`group_by_length=True`; in transformers 5
`train_sampling_strategy="group_by_length"`); it is measured in fp32 and, for fairness, with its
own `bf16=True` as well.

    python benchmarks/finetune_vs_trainer.py --tokens data/tokens/train.parquet --encoder models/encoder \
        --docs 512 --batch-size 16 --max-length 128 --out benchmarks/results/finetune_vs_trainer.json
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

import numpy as np
import torch

from bertclf.batching import epoch_batches
from bertclf.finetune import layerwise_param_groups, load_finetune
from bertclf.token_data import TokenStore, make_token_batch


def sample(tokens: Path, docs: int, max_length: int, seed: int) -> TokenStore:
    """A TokenStore of `docs` documents cut to `max_length` (keeping the final [SEP])."""
    store = TokenStore(tokens.parent, tokens.stem)
    pick = np.sort(np.random.default_rng(seed).choice(len(store), size=min(docs, len(store)), replace=False))
    ids = []
    for i in pick:
        x = store.input_ids(int(i))
        ids.append(x if len(x) <= max_length else np.concatenate([x[: max_length - 1], x[-1:]]))
    out = TokenStore.__new__(TokenStore)
    out.values = np.concatenate(ids)
    out.lengths = np.array([len(x) for x in ids])
    out.offsets = np.concatenate([[0], np.cumsum(out.lengths)])
    out.labels = store.labels[pick]
    out.ids = [store.ids[i] for i in pick]
    out.meta = store.meta
    return out


def ours(store: TokenStore, encoder: Path, batch_size: int, bf16: bool, seed: int) -> float:
    """Samples/s of bertclf's step: length-grouped batches, SDPA, optional bf16 autocast."""
    torch.manual_seed(seed)
    num_labels = int(store.labels.max()) + 1
    model = load_finetune(encoder, num_labels).train()
    pad = model.model.config.pad_token_id or 0
    opt = torch.optim.AdamW(layerwise_param_groups(model, 5e-5, 1.0, 0.01), lr=5e-5)
    batches = epoch_batches(store.lengths, batch_size, seed, 1)
    t0 = time.perf_counter()
    for idx in batches:
        batch = make_token_batch(store, idx, pad)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch).float()
        loss = torch.nn.functional.cross_entropy(logits, batch.labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return len(store) / (time.perf_counter() - t0)


def trainer(store: TokenStore, encoder: Path, batch_size: int, bf16: bool, seed: int) -> float:
    """Samples/s of `Trainer.train()` (dynamic padding + group_by_length), training loop only."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    num_labels = int(store.labels.max()) + 1
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=num_labels,
                                                               attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(encoder)
    # a plain list of examples: Trainer's length-grouped sampler reads each one's input_ids
    data = [{"input_ids": store.input_ids(i).tolist(), "labels": int(store.labels[i])}
            for i in range(len(store))]
    with tempfile.TemporaryDirectory() as tmp:
        # group by length: `group_by_length=True` before transformers 5, a sampling strategy since
        grouping = ({"train_sampling_strategy": "group_by_length"}
                    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__
                    else {"group_by_length": True})
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch_size, num_train_epochs=1,
                                 learning_rate=5e-5, bf16=bf16, use_cpu=True, report_to=[],
                                 save_strategy="no", logging_strategy="no", seed=seed,
                                 dataloader_num_workers=0, disable_tqdm=True, **grouping)
        run = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok))
        t0 = time.perf_counter()
        run.train()
        return len(store) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=Path, default=Path("data/tokens/train.parquet"))
    parser.add_argument("--encoder", type=Path, default=Path("models/encoder"))
    parser.add_argument("--docs", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.tokens.exists() or not args.encoder.exists():
        sys.exit(f"{args.tokens} or {args.encoder} missing: run `dvc repro tokenize` first")
    store = sample(args.tokens, args.docs, args.max_length, args.seed)
    results = {
        "bertclf_fp32": ours(store, args.encoder, args.batch_size, False, args.seed),
        "bertclf_bf16": ours(store, args.encoder, args.batch_size, True, args.seed),
        "trainer_fp32": trainer(store, args.encoder, args.batch_size, False, args.seed),
        "trainer_bf16": trainer(store, args.encoder, args.batch_size, True, args.seed),
    }
    report = {
        "data": str(args.tokens), "docs": len(store), "mean_length": round(float(store.lengths.mean()), 1),
        "batch_size": args.batch_size, "max_length": args.max_length,
        "samples_per_s": {k: round(v, 2) for k, v in results.items()},
        "speedup_vs_trainer_fp32": round(results["bertclf_bf16"] / results["trainer_fp32"], 2),
        "speedup_vs_trainer_bf16": round(results["bertclf_bf16"] / results["trainer_bf16"], 2),
        "speedup_same_precision_fp32": round(results["bertclf_fp32"] / results["trainer_fp32"], 2),
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version(),
                    "cpu_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
