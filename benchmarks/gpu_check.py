"""The GPU check: what bertclf does on a CUDA machine, in one run of a few minutes.

1. the machine: GPU, driver, torch, CUDA, bf16 support;
2. the matmul peak on the GPU (bf16 and fp32, 8192³), the yardstick for every figure below;
3. the tests that touch CUDA (`tests/test_cuda.py`, pytest);
4. throughput of encoders built from a config (random weights): MiniLM-L6-sized (6 × 384) and
   BERT-base-sized (12 × 768), sequence 128: inference at batch 256 (bf16 weights, SDPA), and
   training steps at batch 32 (bf16 autocast, fused AdamW); sequences/s and the achieved
   fraction of the bf16 matmul peak;
5. fine-tuning on R8 for one epoch with bertclf's own pieces (its tokenizer settings, length-grouped
   batches, `FineTuneClassifier`, layer-wise LR groups, fused AdamW, bf16 autocast, SDPA,
   `torch.compile`): samples/s, and validation accuracy when real encoder weights are at hand.

Everything goes to one JSON file. `--dry` runs the same code on the CPU with tiny sizes (no
compile), so a test can check the script without a GPU.

    bash benchmarks/gpu_check.sh OUT_DIR          # on the GPU machine, see gpu_check.sh
    python -m benchmarks.gpu_check --dry --out OUT/gpu_check.json   # what it runs, here
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import benchlib
from benchmarks.benchlib import encoder_flops, rounds
from bertclf.inference import has_bf16_units

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Any, device: torch.device, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs after one warm-up, the device synchronised."""

    def run() -> None:
        fn()
        sync(device)

    return statistics.median(rounds({"run": run}, repeats)["run"])


def machine(device: torch.device) -> dict[str, Any]:
    """`benchlib.machine()` with the CUDA build, the device and the GPU's properties."""
    facts: dict[str, Any] = {**benchlib.machine(), "cuda": torch.version.cuda, "device": str(device),
                             "bf16": has_bf16_units(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
        )
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            query = ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv,noheader"]
            facts["nvidia_smi"] = subprocess.run(
                query, capture_output=True, text=True, timeout=30
            ).stdout.strip()
    return facts


def significant(x: float, digits: int = 4) -> float:
    """`x` to `digits` significant figures: a tiny model's TFLOP/s on a CPU (the dry run) stays
    non-zero, as decimal places would not keep it."""
    return float(f"{x:.{digits}g}")


def matmul_peak(device: torch.device, n: int, repeats: int) -> dict[str, float]:
    """TFLOP/s of an n×n×n product, bf16 and fp32 (TF32 off: the fp32 figure is true fp32)."""
    out = {}
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = timed(lambda a=a, b=b: a @ b, device, repeats)
        out[f"{name}_tflops"] = significant(2 * n**3 / seconds / 1e12)
    return out


def encoder_config(kind: str, vocab: int = 30522) -> Any:
    from transformers import BertConfig

    if kind == "minilm":
        return BertConfig(
            vocab_size=vocab,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
        )
    if kind == "bert-base":
        return BertConfig(vocab_size=vocab)
    return BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )  # "tiny", for --dry


def encoder_throughput(
    kind: str,
    device: torch.device,
    seq: int,
    infer_batch: int,
    train_batch: int,
    repeats: int,
    peak_tflops: float,
) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification

    config = encoder_config(kind)
    config.num_labels = 8
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").to(device)
    ids = torch.randint(1000, config.vocab_size, (infer_batch, seq), device=device)
    mask = torch.ones_like(ids)
    flops = encoder_flops(config, seq)
    result: dict[str, Any] = {"seq": seq, "parameters": sum(p.numel() for p in model.parameters())}

    infer = model.to(torch.bfloat16).eval() if device.type == "cuda" else model.eval()
    with torch.inference_mode():
        seconds = timed(lambda: infer(input_ids=ids, attention_mask=mask).logits, device, repeats)
    result["inference"] = {
        "batch": infer_batch,
        "dtype": "bf16 weights" if device.type == "cuda" else "fp32",
        "seq_per_s": round(infer_batch / seconds, 1),
        "tflops": significant(infer_batch * flops / seconds / 1e12),
    }
    result["inference"]["fraction_of_peak"] = significant(result["inference"]["tflops"] / peak_tflops)

    model = model.float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    tids, tmask = ids[:train_batch], mask[:train_batch]
    labels = torch.randint(0, 8, (train_batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=tids, attention_mask=tmask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(step, device, repeats)
    result["training"] = {
        "batch": train_batch,
        "dtype": "bf16 autocast, fp32 weights, fused AdamW",
        "samples_per_s": round(train_batch / seconds, 1),
        "tflops": significant(3 * train_batch * flops / seconds / 1e12),
    }
    result["training"]["fraction_of_peak"] = significant(result["training"]["tflops"] / peak_tflops)
    return result


def read_r8(folder: Path, limit: int | None) -> tuple[list[str], list[str], list[str], list[str]]:
    from bertclf.data.readers import read_label_tsv

    train = read_label_tsv(folder / "r8-train-all-terms.tsv")
    test = read_label_tsv(folder / "r8-test-all-terms.tsv")
    if limit:
        train, test = train.iloc[:limit], test.iloc[: max(limit // 4, 8)]
    return train["text"].tolist(), train["label"].tolist(), test["text"].tolist(), test["label"].tolist()


def finetune_r8(
    device: torch.device,
    r8: Path,
    encoder: Path | None,
    tokenizer_dir: Path,
    compile_model: bool,
    limit: int | None,
    batch_size: int,
    max_length: int,
) -> dict[str, Any]:
    """One epoch of bertclf's fine-tuning recipe on R8, timed; accuracy on R8's test set."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertclf.data.stores import epoch_batches, eval_batches, pad_ids
    from bertclf.models.finetune import FineTuneClassifier, layerwise_param_groups

    texts, labels, test_texts, test_labels = read_r8(r8, limit)
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    y_test = np.array([names.index(label) if label in names else -1 for label in test_labels])
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)

    def encode(docs: list[str]) -> list[np.ndarray]:
        return [
            np.array(x, dtype=np.int64)
            for x in tok(docs, truncation=True, max_length=max_length)["input_ids"]
        ]

    ids, test_ids = encode(texts), encode(test_texts)
    torch.manual_seed(0)
    if encoder is not None:
        hf = AutoModelForSequenceClassification.from_pretrained(
            encoder, num_labels=len(names), attn_implementation="sdpa"
        )
    else:
        config = encoder_config("minilm" if device.type == "cuda" else "tiny", vocab=tok.vocab_size)
        config.num_labels = len(names)
        hf = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    model = FineTuneClassifier(hf).to(device)
    optimizer = torch.optim.AdamW(layerwise_param_groups(model, 1e-4, 0.95, 0.01), lr=1e-4, fused=True)
    forward = torch.compile(model.model, dynamic=True) if compile_model else model.model
    lengths = np.array([len(x) for x in ids])

    def batch(rows: np.ndarray, source: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, mask = pad_ids([source[i] for i in rows], tok.pad_token_id or 0)
        return input_ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)

    model.train()
    sync(device)
    t0 = time.perf_counter()
    for rows in epoch_batches(lengths, batch_size, 0, 1):
        input_ids, mask = batch(rows, ids)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = forward(input_ids=input_ids, attention_mask=mask).logits.float()
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[rows]).to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    seconds = time.perf_counter() - t0
    model.eval()
    predicted = np.zeros(len(test_ids), dtype=np.int64)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
        for rows in eval_batches(np.array([len(x) for x in test_ids]), 256):
            input_ids, mask = batch(rows, test_ids)
            predicted[rows] = forward(input_ids=input_ids, attention_mask=mask).logits.argmax(1).cpu().numpy()
    return {
        "docs": len(ids),
        "max_length": max_length,
        "batch_size": batch_size,
        "compiled": compile_model,
        "weights": str(encoder) if encoder else "random (no encoder weights at hand)",
        "seconds": round(seconds, 2),
        "samples_per_s": round(len(ids) / seconds, 1),
        "test_acc": round(float((predicted == y_test).mean()), 4),
        "test_docs": len(test_ids),
    }


def cuda_tests() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)},
    )
    lines = done.stdout.strip().splitlines()
    return {"exit_code": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--dry", action="store_true", help="the CPU, tiny sizes, no compile: checks the script"
    )
    parser.add_argument("--r8", type=Path, default=None, help="folder with R8's two tsv files")
    parser.add_argument("--encoder", type=Path, default=None, help="a model directory (weights) for R8")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer files (default: --encoder's)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.dry else "cuda")
    if not args.dry and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --dry to check the script on the CPU")
    sizes = (
        {"n": 256, "seq": 16, "infer": 4, "train": 2, "repeats": 2, "limit": 48, "kinds": ("tiny",)}
        if args.dry
        else {
            "n": 8192,
            "seq": 128,
            "infer": 256,
            "train": 32,
            "repeats": 10,
            "limit": None,
            "kinds": ("minilm", "bert-base"),
        }
    )
    result: dict[str, Any] = {"check": "gpu_check", "dry": args.dry, "machine": machine(device)}
    t_start = time.perf_counter()
    result["matmul_peak"] = matmul_peak(device, sizes["n"], sizes["repeats"])
    result["cuda_tests"] = cuda_tests()
    peak = result["matmul_peak"]["bf16_tflops"]
    result["encoders"] = {
        kind: encoder_throughput(
            kind, device, sizes["seq"], sizes["infer"], sizes["train"], sizes["repeats"], peak
        )
        for kind in sizes["kinds"]
    }
    r8 = args.r8 or next(
        (
            p
            for p in (ROOT / ".device/r8", Path(os.environ.get("BERTCLF_MIRROR", "/nonexistent")) / "r8")
            if p.is_dir()
        ),
        None,
    )
    tokenizer = (
        args.tokenizer
        or args.encoder
        or next(
            (
                p
                for p in (ROOT / ".device/encoder", ROOT / "models/encoder")
                if (p / "tokenizer.json").is_file()
            ),
            None,
        )
    )
    if r8 is not None and tokenizer is not None:
        result["finetune_r8"] = finetune_r8(
            device,
            r8,
            args.encoder,
            tokenizer,
            not args.dry,
            sizes["limit"],
            16 if args.dry else 32,
            32 if args.dry else 256,
        )
    else:
        result["finetune_r8"] = {"skipped": "no R8 files or tokenizer: pass --r8 and --tokenizer"}
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
