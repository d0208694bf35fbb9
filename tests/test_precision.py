"""Where and at what precision each stage runs: `auto` picks bf16 where the device has bf16 units,
fp16 on a GPU without them (autocast with a gradient scaler when training), fp32 on other CPUs;
encoders shipped in 16-bit load as fp32 master weights; fp16 training runs, and its loss scale is
part of the checkpoint. (`tests/test_cuda.py` runs each stage on a GPU where one is visible.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bertclf.config import RuntimeConfig
from bertclf.errors import BertclfError, ConfigError
from bertclf.inference import autocast, resolve_precision
from bertclf.training import checkpoints
from tests.conftest import run_split_stage, run_train, tiny_inputs
from tests.test_ordinal import write_ratings_csv

CPU, GPU = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    ("device", "bf16_units", "expected"),
    [(GPU, True, "bf16"), (GPU, False, "fp16"), (CPU, True, "bf16"), (CPU, False, "fp32")],
)
def test_auto_precision_by_device(
    monkeypatch: pytest.MonkeyPatch, device: torch.device, bf16_units: bool, expected: str
) -> None:
    monkeypatch.setattr("bertclf.inference.has_bf16_units", lambda d: bf16_units)
    assert resolve_precision("auto", device) == expected
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, device) == explicit
    with pytest.raises(BertclfError, match="precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("int4", device)


def test_autocast_is_the_16_bit_type_asked_for() -> None:
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        with autocast(CPU, precision):
            assert (x @ w).dtype == dtype


def test_runtime_takes_a_numbered_gpu_and_a_process_count() -> None:
    assert RuntimeConfig(device="cuda:1", processes="auto").processes == "auto"
    RuntimeConfig(device="cuda:1").check()
    for bad in ({"device": "gpu"}, {"device": "cuda:x"}, {"processes": 0}):
        with pytest.raises(ConfigError, match="runtime"):
            RuntimeConfig(**bad).check()


def test_an_encoder_shipped_in_fp16_loads_as_fp32_master_weights(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """transformers 5 loads a checkpoint in its saved dtype: an fp16 copy (the GPU check ships one)
    would otherwise train fp16 weights, whose AdamW second moments round to zero."""
    from bertclf.encoder import load_encoder
    from bertclf.models.finetune import load_finetune

    half = tmp_path / "half"
    half.mkdir()
    for f in tiny_bert_dir.iterdir():
        if f.suffix != ".safetensors":
            (half / f.name).write_bytes(f.read_bytes())
    config = json.loads((tiny_bert_dir / "config.json").read_text())
    (half / "config.json").write_text(json.dumps({**config, "dtype": "float16"}))
    weights = load_file(tiny_bert_dir / "model.safetensors")
    save_file(
        {k: v.half() for k, v in weights.items()}, half / "model.safetensors", metadata={"format": "pt"}
    )
    model = load_finetune(half, num_labels=3)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.dtype for p in load_encoder(half).parameters()} == {torch.float32}


def test_fp16_fine_tuning_learns_and_checkpoints_its_loss_scale(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = write_ratings_csv(tmp_path / "reviews.csv", 400)
    run_split_stage(
        tmp_path, {"name": "file", "path": str(src), "text_column": "review", "label_column": "stars"}
    )
    inputs = tiny_inputs(tmp_path, tiny_bert_dir)
    report = run_train(
        inputs,
        tmp_path / "fp16",
        train={
            "arch": "finetune",
            "lr": 2e-3,
            "epochs": 8,
            "batch_size": 16,
            "patience": 10,
            "precision": "fp16",
        },
        runtime={"device": "cpu"},
    )
    assert report["precision"] == "fp16"
    assert report["best_val_acc"] > 0.35  # five classes: a fifth is chance (fp32 here: 0.42)
    saved = checkpoints.load_state(tmp_path / "fp16" / "ckpt" / "epoch_8")
    assert saved is not None and saved["scaler"]["scale"] > 0
    scaler = torch.amp.GradScaler("cpu")
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ckpt = checkpoints.Checkpoint(
        tmp_path / "fp16" / "ckpt" / "epoch_8",
        {**saved, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
    )
    weights = tmp_path / "linear"
    weights.mkdir()
    save_file(model.state_dict(), weights / checkpoints.WEIGHTS)
    checkpoints.restore(checkpoints.Checkpoint(weights, ckpt.saved), model, optimizer, scheduler, CPU, scaler)
    assert scaler.get_scale() == saved["scaler"]["scale"]


def test_auto_keeps_the_other_archs_in_fp32(tmp_path: Path, tiny_bert_dir: Path) -> None:
    src = write_ratings_csv(tmp_path / "reviews.csv", 60)
    run_split_stage(
        tmp_path, {"name": "file", "path": str(src), "text_column": "review", "label_column": "stars"}
    )
    report = run_train(
        tiny_inputs(tmp_path, tiny_bert_dir),
        tmp_path / "han",
        train={"arch": "han", "epochs": 1},
        han={"hidden": 8, "attention_dim": 8},
    )
    assert report["precision"] == "fp32"
