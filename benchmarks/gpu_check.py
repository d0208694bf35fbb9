"""The GPU check: bertclf's own stages on a CUDA machine, against its peers, in one run of minutes.

Run through `benchmarks/gpu_check.sh` (its header says how to prepare, send and run it). Phases, in
order of value, each with a time budget; the JSON is rewritten after every phase, so a timeout or a
crash keeps what was measured:

1. ``machine``: GPU, driver, versions (python, torch, CUDA, transformers, tokenizers), date, commit;
2. ``matmul_peak``: an n×n×n product in bf16 and fp32, the yardstick of every figure below;
3. ``pipeline_han``: the pipeline's own stages, run as dvc.yaml runs them (download, split,
   tokenize, pretrain, featurize, train, evaluate; `runtime.device: auto`): R8 featurized on the
   GPU, HAN trained on its vectors;
4. ``pipeline_finetune``: the encoder fine-tuned on R8 by the `train` stage (`train()`, eager), two
   epochs, the second timed as the steady state; `evaluate`;
5. ``predict``: `TextClassifier` on R8's test texts against `transformers.pipeline()` at each batch
   size, the best of each (texts/s);
6. ``trainer``: HF `Trainer` on the same tokens at the same precision (its second epoch, samples/s);
7. ``encoders``: MiniLM-sized and BERT-base-sized encoders built from a config: inference at
   sequence 128 (bf16 weights, SDPA) and training steps (bf16 autocast), sequences/s and the
   fraction of the bf16 matmul peak;
8. ``cuda_tests``: `tests/test_cuda.py` under pytest, each test's outcome named;
9. ``compile``: the fine-tuning of phase 4 with `runtime.compile`, its first (compiling) epoch and
   its second apart, beside the eager figure; a failure to compile is recorded, not fatal.

Peak GPU memory is recorded per phase. `--dry` runs every phase on the CPU at tiny sizes (compile
excepted) in an environment imitating the GPU image (see gpu_check.sh), so a test checks the
script here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import runpy
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.benchlib import stage_commands

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = (
    "download@data",
    "download@encoder",
    "split",
    "tokenize",
    "pretrain",
    "featurize",
    "train",
    "evaluate",
)


class PhaseTimeout(BaseException):
    """A phase ran past its budget (a BaseException: a stage's error boundary lets it through)."""


# ---- bookkeeping: budgets, the JSON after every phase


class Check:
    """The result being built, written to `out` after every phase; phases run under a budget."""

    def __init__(self, out: Path, total_seconds: float, dry: bool):
        self.out, self.dry = out, dry
        self.deadline = time.monotonic() + total_seconds
        self.result: dict[str, Any] = {"check": "gpu_check", "dry": dry, "phases": {}}

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        tmp.write_text(json.dumps(self.result, indent=2, default=str) + "\n")
        os.replace(tmp, self.out)

    def phase(self, name: str, budget: float, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run `fn` under min(budget, the time left); record its result, error or timeout."""
        left = self.deadline - time.monotonic()
        if left < 5:
            self.result["phases"][name] = {"skipped": "out of time"}
            self.save()
            return None
        seconds = int(min(budget, left))
        print(f"--- {name} (budget {seconds} s)", flush=True)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        outcome: dict[str, Any]
        try:
            with alarm(seconds):
                outcome = {"ok": True, **fn()}
        except PhaseTimeout:
            outcome = {"ok": False, "error": f"timed out after {seconds} s"}
        except (Exception, SystemExit) as exc:  # a phase's failure is a finding, not the end of the check
            outcome = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-3000:],
            }
        outcome["seconds"] = round(time.perf_counter() - t0, 1)
        if torch.cuda.is_available():
            outcome["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        self.result["phases"][name] = outcome
        self.save()
        print(
            json.dumps({name: {k: v for k, v in outcome.items() if k != "traceback"}}, default=str)[:2000],
            flush=True,
        )
        return outcome if outcome["ok"] else None


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise PhaseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs after one warm-up, the device synchronised."""
    fn()
    sync(device)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def significant(x: float, digits: int = 4) -> float:
    """`x` to `digits` significant figures (a tiny model's TFLOP/s in the dry run stays non-zero)."""
    return float(f"{x:.{digits}g}")


# ---- 1, 2: the machine and its peak


def commit() -> str | None:
    """The commit checked: git's, or the one `prepare` wrote (the GPU machine gets no .git)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        if done.returncode == 0:
            return done.stdout.strip()
    stamp = ROOT / ".device" / "commit.txt"
    return stamp.read_text().strip() if stamp.is_file() else None


def machine(device: torch.device) -> dict[str, Any]:
    import platform

    import tokenizers
    import transformers

    facts: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            bf16=torch.cuda.is_bf16_supported(),
            cudnn=torch.backends.cudnn.version(),
        )
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            query = ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv,noheader"]
            facts["nvidia_smi"] = subprocess.run(
                query, capture_output=True, text=True, timeout=30
            ).stdout.strip()
    return facts


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """True fp32 matmuls inside the block only (the setting is restored)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def matmul_peak(device: torch.device, n: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n}
    with no_tf32():
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            seconds = timed(lambda a=a, b=b: a @ b, device, repeats)
            out[f"{name}_tflops"] = significant(2 * n**3 / seconds / 1e12)
    return out


# ---- 3, 4, 9: the pipeline's own stages


def run_stage(work: Path, command: list[str]) -> None:
    """One stage, in this process, in `work`, exactly as `python -m <module> <args>` runs it."""
    argv, cwd = sys.argv, Path.cwd()
    sys.argv = [command[0], *command[1:]]
    os.chdir(work)
    try:
        runpy.run_module(command[0], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"stage {command[0]} exited with {exc.code}") from None
    finally:
        sys.argv = argv
        os.chdir(cwd)


def write_params(work: Path, overrides: dict[str, Any]) -> None:
    """params.yaml of `work`: the defaults with dotted `overrides` (JSON is YAML 1.2)."""
    from bertclf.config import Config, to_dict

    (work / "params.yaml").write_text(json.dumps(to_dict(Config().replace(overrides)), indent=1))


def setup_work(work: Path, r8: Path, encoder: Path) -> None:
    """A project directory as a clone has it, with R8 and the encoder as the user's own inputs."""
    (work / "inputs" / "data").mkdir(parents=True, exist_ok=True)
    (work / "inputs" / "encoders").mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        shutil.copyfile(r8 / f"r8-{name}-all-terms.tsv", work / "inputs" / "data" / f"r8-{name}.tsv")
    shutil.copytree(encoder, work / "inputs" / "encoders" / "encoder", dirs_exist_ok=True)


def r8_params(dry: bool) -> dict[str, Any]:
    return {
        "data.name": "file",
        "data.path": "inputs/data/r8-train.tsv",
        "data.test_path": "inputs/data/r8-test.tsv",
        "data.columns": ["label", "text"],
        "encoder.name": "inputs/encoders/encoder",
        "pretrain.steps": 2 if dry else 50,
        "runtime.device": "cpu" if dry else "auto",
        # a GPU takes far more tokens per encoder pass than the CPU default
        "featurize.max_batch_tokens": 2048 if dry else 16384,
        **({"split.max_train": 40, "tokenize.max_length": 32} if dry else {}),
    }


def reports(work: Path, *names: str) -> dict[str, Any]:
    """Each stage's report (reports/pipeline/) with its run facts (logs/: device, timings) on top."""
    out: dict[str, Any] = {}
    for name in names:
        out[name] = {}
        for path in (work / "reports" / "pipeline" / f"{name}.json", work / "logs" / f"{name}.json"):
            if path.is_file():
                out[name].update(json.loads(path.read_text()))
    return out


def pipeline_han(work: Path, dry: bool) -> dict[str, Any]:
    commands = stage_commands(ROOT / "dvc.yaml")
    write_params(work, {**r8_params(dry), "train.arch": "han", "train.epochs": 2})
    seconds = {}
    for name in PIPELINE:
        t0 = time.perf_counter()
        run_stage(work, commands[name])
        seconds[name] = round(time.perf_counter() - t0, 2)
    got = reports(work, "featurize", "pretrain", "train", "eval")
    feat = got["featurize"]
    return {
        "stage_seconds": seconds,
        "featurize": {
            k: feat.get(k)
            for k in ("device", "precision", "docs", "tokens", "tokens_per_s", "docs_per_s", "seconds")
        },
        "pretrain": {
            k: got["pretrain"].get(k)
            for k in ("device", "precision", "steps", "tokens_per_s", "mlm_loss_before", "mlm_loss_after")
        },
        "train": {
            k: got["train"].get(k)
            for k in (
                "device",
                "precision",
                "epochs_run",
                "train_docs_per_s",
                "epoch_seconds",
                "best_val_acc",
            )
        },
        "eval": {k: got["eval"].get(k) for k in ("device", "val_acc", "test_acc", "test_docs_per_s")},
    }


def finetune_params(dry: bool, compile_model: bool = False) -> dict[str, Any]:
    return {
        **r8_params(dry),
        "train.arch": "finetune",
        "train.epochs": 2,
        "train.lr": 1e-4,
        "train.batch_size": 32,
        "train.lr_decay": "linear",
        "train.warmup_ratio": 0.1,
        "finetune.layer_lr_decay": 0.95,
        "runtime.compile": compile_model,
    }


def pipeline_finetune(work: Path, dry: bool, compile_model: bool = False) -> dict[str, Any]:
    """`train` then `evaluate` with train.arch finetune (the stages before it have run)."""
    commands = stage_commands(ROOT / "dvc.yaml")
    write_params(work, finetune_params(dry, compile_model))
    seconds = {}
    for name in ("featurize", "train", "evaluate"):
        t0 = time.perf_counter()
        run_stage(work, commands[name])
        seconds[name] = round(time.perf_counter() - t0, 2)
    import pyarrow.parquet as pq

    got = reports(work, "train", "eval")
    train, epochs = got["train"], got["train"]["epoch_seconds"]
    n = pq.read_metadata(work / "data" / "tokens" / "train.parquet").num_rows  # documents per epoch
    return {
        "stage_seconds": seconds,
        "compiled": compile_model,
        "docs": n,
        "epoch_seconds": epochs,
        "samples_per_s_first_epoch": round(n / epochs[0], 1),
        "samples_per_s": round(n / epochs[-1], 1),  # the steady state: the last epoch
        "precision": train["precision"],
        "device": train["device"],
        "best_val_acc": train["best_val_acc"],
        "test_acc": got["eval"]["test_acc"],
        "eval_device": got["eval"].get("device"),
        "test_docs_per_s": got["eval"]["test_docs_per_s"],
    }


# ---- 5, 6: the peers, on the same GPU in the same run


def test_texts(work: Path) -> list[str]:
    import pyarrow.parquet as pq

    return (
        pq.read_table(work / "data" / "split" / "test.parquet", columns=["text"]).column("text").to_pylist()
    )


def predict_vs_pipeline(work: Path, device: torch.device, dry: bool) -> dict[str, Any]:
    from transformers import pipeline

    from bertclf.serving.predictor import TextClassifier

    texts = test_texts(work)
    model = work / "models" / "classifier"
    sizes = [8, 32] if dry else [64, 256, 1024]
    ours: dict[str, float] = {}
    for bs in sizes:
        clf = TextClassifier(model, device=str(device), precision="auto", batch_size=bs)
        seconds = timed(lambda clf=clf: clf.logits(texts), device, 1 if dry else 3)
        ours[str(bs)] = round(len(texts) / seconds, 1)
    precision = clf.precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    pipe = pipeline("text-classification", model=str(model), tokenizer=str(model), device=device, dtype=dtype)
    max_length = (
        json.loads((model / "bertclf.json").read_text())["tokenize"]["max_length"]
        if (model / "bertclf.json").is_file()
        else 256
    )
    theirs: dict[str, float] = {}
    for bs in [8, 32] if dry else [32, 64, 128, 256, 512]:
        seconds = timed(
            lambda bs=bs: pipe(texts, batch_size=bs, truncation=True, max_length=max_length),
            device,
            1 if dry else 2,
        )
        theirs[str(bs)] = round(len(texts) / seconds, 1)
    best_ours, best_theirs = max(ours.values()), max(theirs.values())
    return {
        "texts": len(texts),
        "precision": precision,
        "bertclf_texts_per_s": ours,
        "pipeline_texts_per_s": theirs,
        "best_bertclf": best_ours,
        "best_pipeline": best_theirs,
        "ratio": round(best_ours / best_theirs, 2),
    }


def trainer_epoch(work: Path, device: torch.device, precision: str, dry: bool) -> dict[str, Any]:
    """HF Trainer on the stage's own tokens (train split), the fine-tuning recipe's batch, LR and
    precision: the seconds of its second epoch (its first warms up, as bertclf's does)."""
    import pyarrow.parquet as pq
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokens, encoder = work / "data" / "tokens", work / "models" / "pretrained"
    table = pq.read_table(tokens / "train.parquet", columns=["input_ids", "label"])
    num_labels = len(json.loads((tokens / "meta.json").read_text())["labels"])
    data = [
        {"input_ids": ids, "labels": y}
        for ids, y in zip(
            table.column("input_ids").to_pylist(), table.column("label").to_pylist(), strict=True
        )
    ]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=num_labels, dtype=torch.float32, attn_implementation="sdpa"
    )
    tok = AutoTokenizer.from_pretrained(encoder)
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_epoch_begin(self, *args: Any, **kwargs: Any) -> None:
            sync(device)
            marks.append(time.perf_counter())

        def on_epoch_end(self, *args: Any, **kwargs: Any) -> None:
            sync(device)
            marks.append(time.perf_counter())

    fields = TrainingArguments.__dataclass_fields__
    grouping = (
        {"train_sampling_strategy": "group_by_length"}
        if "train_sampling_strategy" in fields
        else {"group_by_length": True}
    )
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=32,
            num_train_epochs=2,
            learning_rate=1e-4,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            use_cpu=device.type == "cpu",
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            seed=0,
            dataloader_num_workers=0,
            disable_tqdm=True,
            **grouping,
        )
        Trainer(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=DataCollatorWithPadding(tok),
            callbacks=[Clock()],
        ).train()
    epoch2 = marks[3] - marks[2]
    return {
        "docs": len(data),
        "precision": precision,
        "epoch_seconds": [round(marks[1] - marks[0], 3), round(epoch2, 3)],
        "samples_per_s": round(len(data) / epoch2, 1),
    }


# ---- 7: encoders from a config


def encoder_config(kind: str) -> Any:
    from transformers import BertConfig

    if kind == "minilm":
        return BertConfig(
            hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
        )
    if kind == "bert-base":
        return BertConfig()
    return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def encoder_flops(config: Any, seq: int) -> float:
    """Forward matmul FLOPs of one sequence (projections, attention, FFN)."""
    h, layers, ffn = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return 2.0 * layers * seq * (4 * h * h + 2 * h * ffn + 2 * seq * h)


def encoder_throughput(
    kind: str,
    device: torch.device,
    seq: int,
    batches: list[int],
    train_batch: int,
    repeats: int,
    peak_tflops: float,
) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification

    config = encoder_config(kind)
    config.num_labels = 8
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").to(device)
    flops = encoder_flops(config, seq)
    half = torch.bfloat16 if device.type == "cuda" else torch.float32
    infer = model.to(half).eval()
    best: dict[str, Any] = {}
    for batch in batches:
        ids = torch.randint(1000, config.vocab_size, (batch, seq), device=device)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            seconds = timed(
                lambda ids=ids, mask=mask: infer(input_ids=ids, attention_mask=mask).logits, device, repeats
            )
        rate = batch / seconds
        if rate > best.get("seq_per_s", 0):
            best = {"batch": batch, "seq_per_s": round(rate, 1)}
    tflops = best["seq_per_s"] * flops / 1e12
    result: dict[str, Any] = {
        "seq": seq,
        "parameters": sum(p.numel() for p in model.parameters()),
        "inference": {
            **best,
            "dtype": str(half).removeprefix("torch."),
            "tflops": significant(tflops),
            "fraction_of_peak": significant(tflops / peak_tflops),
        },
    }
    model = model.float().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    ids = torch.randint(1000, config.vocab_size, (train_batch, seq), device=device)
    mask, labels = torch.ones_like(ids), torch.randint(0, 8, (train_batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(step, device, repeats)
    tflops = 3 * train_batch * flops / seconds / 1e12
    result["training"] = {
        "batch": train_batch,
        "dtype": "bf16 autocast, fp32 weights, AdamW",
        "samples_per_s": round(train_batch / seconds, 1),
        "tflops": significant(tflops),
        "fraction_of_peak": significant(tflops / peak_tflops),
    }
    return result


# ---- 8: the CUDA tests


def cuda_tests(budget: int, dry: bool) -> dict[str, Any]:
    """tests/test_cuda.py: each test's outcome by name, the tail of the output on failure. The dry
    run runs them on the CPU (BERTCLF_CUDA_TESTS_ON=cpu): a test that cannot pass fails here."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    if dry:
        env["BERTCLF_CUDA_TESTS_ON"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/test_cuda.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=max(budget - 5, 10),
        env=env,
    )
    outcomes = {}
    for line in done.stdout.splitlines():
        match = re.match(r"\S+::(\S+) (PASSED|FAILED|SKIPPED|ERROR)", line)
        if match:
            outcomes[match.group(1)] = match.group(2).lower()
    lines = done.stdout.strip().splitlines()
    result = {
        "exit_code": done.returncode,
        "summary": lines[-1] if lines else done.stderr[-500:],
        "tests": outcomes,
    }
    if done.returncode not in (0, 5):
        result["output_tail"] = (done.stdout + done.stderr)[-4000:]
    return result


# ---- the run


def find_inputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """R8's two files and the encoder directory, from the arguments or .device/."""
    device_dir = ROOT / ".device"
    r8 = args.r8 or device_dir / "r8"
    encoder = args.encoder or device_dir / "encoder"
    missing = [str(p) for p in (r8 / "r8-train-all-terms.tsv", encoder / "config.json") if not p.is_file()]
    if missing:
        sys.exit(
            f"gpu_check: {', '.join(missing)} not found: run `bash benchmarks/gpu_check.sh prepare` "
            "here first and send .device along (or pass --r8 and --encoder)"
        )
    return r8, encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--dry", action="store_true", help="the CPU, tiny sizes, no compile: checks the script"
    )
    parser.add_argument(
        "--r8", type=Path, default=None, help="folder with R8's two tsv files (default .device/r8)"
    )
    parser.add_argument(
        "--encoder", type=Path, default=None, help="an encoder directory (default .device/encoder)"
    )
    parser.add_argument("--minutes", type=float, default=8.0, help="the whole check's budget")
    args = parser.parse_args()
    if not args.dry and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here: run with --dry to check the script on the CPU")
    r8, encoder = find_inputs(args)
    device = torch.device("cpu" if args.dry else "cuda")
    check = Check(args.out, args.minutes * 60, args.dry)
    check.result["machine"] = machine(device)
    check.save()
    dry = args.dry
    work = Path(tempfile.mkdtemp(prefix="bertclf-gpu-check-"))
    setup_work(work, r8, encoder)
    check.result["work"] = str(work)

    peak = check.phase("matmul_peak", 30, lambda: matmul_peak(device, 256 if dry else 8192, 2 if dry else 10))
    han = check.phase("pipeline_han", 150, lambda: pipeline_han(work, dry))
    ft = han and check.phase("pipeline_finetune", 120, lambda: pipeline_finetune(work, dry))
    if ft:
        check.phase("predict", 75, lambda: predict_vs_pipeline(work, device, dry))
        trainer = check.phase("trainer", 75, lambda: trainer_epoch(work, device, ft["precision"], dry))
        if trainer:
            check.result["finetune_vs_trainer"] = round(ft["samples_per_s"] / trainer["samples_per_s"], 2)
    peak_tflops = (peak or {}).get("bf16_tflops") or 1.0
    check.phase(
        "encoders",
        60,
        lambda: {
            kind: encoder_throughput(
                kind,
                device,
                16 if dry else 128,
                [4] if dry else [256, 1024],
                2 if dry else 32,
                2 if dry else 10,
                peak_tflops,
            )
            for kind in (("tiny",) if dry else ("minilm", "bert-base"))
        },
    )
    check.phase("cuda_tests", 120, lambda: cuda_tests(120, dry))
    if ft and not dry:  # compiling on a CPU needs a C++ toolchain and minutes: the GPU only
        compiled = check.phase("compile", 150, lambda: pipeline_finetune(work, dry, compile_model=True))
        if compiled:
            check.result["compile_gain"] = round(compiled["samples_per_s"] / ft["samples_per_s"], 2)
    check.result["seconds"] = round(args.minutes * 60 - (check.deadline - time.monotonic()), 1)
    check.save()
    shutil.rmtree(work, ignore_errors=True)
    failed = [name for name, p in check.result["phases"].items() if not p.get("ok", False)]
    print(f"gpu_check: {args.out} written; phases failed or skipped: {', '.join(failed) or 'none'}")


if __name__ == "__main__":
    main()
