"""Every stage on a GPU: featurize, pretrain, train (fp32, bf16, fp16 with a loss scaler), evaluate,
predict; each against the CPU within a stated tolerance. Skipped where no CUDA device is visible
(CI's machines); `benchmarks/gpu_check.sh` runs them on a GPU machine. Its dry run sets
BERTCLF_CUDA_TESTS_ON=cpu to run this same code on the CPU, so a test that cannot pass is caught
before a GPU is spent on it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bertclf.inference import autocast, has_bf16_units, resolve_device, resolve_precision

ON = os.environ.get("BERTCLF_CUDA_TESTS_ON", "cuda")
pytestmark = pytest.mark.skipif(
    ON == "cuda" and not torch.cuda.is_available(), reason="no CUDA device visible"
)
DEVICE = torch.device(ON)
HALF = "bf16" if has_bf16_units(DEVICE) else "fp16"  # what auto gives here (on a GPU)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> object:
    from tests.conftest import run_split_stage, tiny_inputs
    from tests.test_ordinal import write_ratings_csv

    root = tmp_path_factory.mktemp("cuda")
    src = write_ratings_csv(root / "reviews.csv", 400)
    run_split_stage(
        root, {"name": "file", "path": str(src), "text_column": "review", "label_column": "stars"}
    )
    return tiny_inputs(root, tiny_bert_dir)


def test_auto_picks_the_gpu_and_its_precision() -> None:
    if ON == "cuda":
        assert resolve_device("auto").type == "cuda"
        assert resolve_precision("auto", DEVICE) == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert resolve_device(ON) == DEVICE


def test_the_fine_tuned_model_on_the_gpu_matches_the_cpu(tiny_bert_dir: Path) -> None:
    from bertclf.data.stores import Batch, pad_ids
    from bertclf.models.finetune import load_finetune

    torch.manual_seed(0)
    model = load_finetune(tiny_bert_dir, num_labels=3).eval()
    ids, mask = pad_ids([np.arange(5, 5 + n) for n in (3, 17, 40)], 0)
    with torch.inference_mode():
        cpu = model(Batch(input_ids=ids, attention_mask=mask)).float()
        gpu_model = model.to(DEVICE)
        with autocast(DEVICE, HALF):
            gpu = gpu_model(Batch(input_ids=ids.to(DEVICE), attention_mask=mask.to(DEVICE))).float().cpu()
    assert torch.allclose(cpu, gpu, atol=5e-2), (cpu - gpu).abs().max()


@pytest.mark.parametrize("precision", ["fp32", HALF, "fp16"])
def test_training_steps_on_the_gpu_learn(tiny_bert_dir: Path, precision: str) -> None:
    """40 steps on 4 documents whose words tell their class drive the loss down (the same steps on
    the CPU, seeds 0-2, fp32, bf16 and fp16: 0.69 -> 0.006)."""
    from bertclf.data.stores import Batch, pad_ids
    from bertclf.models.finetune import layerwise_param_groups, load_finetune

    torch.manual_seed(0)
    model = load_finetune(tiny_bert_dir, num_labels=2).to(DEVICE).train()
    optimizer = torch.optim.AdamW(layerwise_param_groups(model, 3e-3, 1.0, 0.0), lr=3e-3)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=precision == "fp16")
    docs = [
        np.array([2, *(10 + label * 40 + k for k in range(n)), 3])
        for label, n in ((0, 4), (1, 9), (0, 12), (1, 20))
    ]
    ids, mask = pad_ids(docs, 0)
    batch = Batch(input_ids=ids.to(DEVICE), attention_mask=mask.to(DEVICE))
    labels = torch.tensor([0, 1, 0, 1], device=DEVICE)
    losses = []
    for _ in range(40):
        with autocast(DEVICE, precision):
            loss = torch.nn.functional.cross_entropy(model(batch).float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses


def test_featurize_on_the_gpu_matches_the_cpu(inputs: object, tmp_path: Path, tiny_bert_dir: Path) -> None:
    """fp32 on both: vectors within 1e-3; auto on the GPU (16-bit weights): within 5e-2; float16 on disk."""
    from bertclf.config import FeaturizeConfig
    from bertclf.features import featurize

    tokens = inputs.tokens  # type: ignore[attr-defined]
    cpu = np.load(inputs.features / "train.npy")  # type: ignore[attr-defined]  # fp32 on the CPU
    for precision, tolerance in (("fp32", 1e-3), ("auto", 5e-2)):
        out = tmp_path / precision
        report = featurize(tokens, tiny_bert_dir, out, FeaturizeConfig(precision=precision), device=ON)
        assert report["device"].startswith(ON) and report["precision"] == (
            "fp32" if precision == "fp32" else resolve_precision("auto", DEVICE)
        )
        gpu = np.load(out / "train.npy")
        assert gpu.dtype == np.float16 and gpu.shape == cpu.shape
        assert np.abs(gpu.astype(np.float32) - cpu.astype(np.float32)).max() < tolerance


def test_pretrain_on_the_gpu(inputs: object, tmp_path: Path, tiny_bert_dir: Path) -> None:
    from bertclf.config import PretrainConfig
    from bertclf.pretrain import pretrain

    report = pretrain(
        inputs.tokens,
        tiny_bert_dir,
        tmp_path / "pretrained",  # type: ignore[attr-defined]
        PretrainConfig(steps=6, batch_size=8, lr=1e-3),
        device=ON,
    )
    assert report["device"].startswith(ON) and np.isfinite(report["mlm_loss_after"])
    assert report["precision"] == (resolve_precision("auto", DEVICE) if ON == "cuda" else "fp32")
    assert (tmp_path / "pretrained" / "model.safetensors").is_file()


@pytest.mark.parametrize(("arch", "precision"), [("han", "auto"), ("finetune", "auto"), ("finetune", "fp16")])
def test_train_and_evaluate_on_the_gpu(inputs: object, tmp_path: Path, arch: str, precision: str) -> None:
    """The train stage's function on the GPU learns the cue words; evaluate on the GPU scores its
    model as on the CPU (the same predictions)."""
    from bertclf.evaluation import evaluate
    from tests.conftest import TINY_ARCHS, run_train

    recipe, knobs = TINY_ARCHS[arch]
    report = run_train(
        inputs,
        tmp_path,
        train={"arch": arch, **recipe, "batch_size": 16, "patience": 10, "precision": precision},
        runtime={"device": ON},
        **({arch: knobs} if knobs else {}),
    )
    want = (
        "fp32" if arch == "han" else (resolve_precision("auto", DEVICE) if precision == "auto" else precision)
    )
    assert report["device"].startswith(ON) and report["precision"] == want
    # five ratings: chance is 0.2 (on the CPU: han 0.9, finetune 0.42-0.75 by precision)
    assert report["best_val_acc"] > {"han": 0.6, "finetune": 0.35}[arch], report
    on_gpu = evaluate(
        tmp_path / "model",
        inputs,
        tmp_path / "g.json",
        tmp_path / "gp",
        tmp_path / "gpred",  # type: ignore[arg-type]
        device=ON,
    )
    on_cpu = evaluate(
        tmp_path / "model",
        inputs,
        tmp_path / "c.json",
        tmp_path / "cp",
        tmp_path / "cpred",  # type: ignore[arg-type]
        device="cpu",
    )
    assert on_gpu["device"].startswith(ON)
    assert abs(on_gpu["test_acc"] - on_cpu["test_acc"]) <= 0.02


def test_predict_on_the_gpu_matches_the_cpu(inputs: object, tmp_path: Path) -> None:
    from bertclf.serving.predictor import TextClassifier
    from tests.conftest import TINY_ARCHS, run_train

    recipe, _ = TINY_ARCHS["finetune"]
    run_train(
        inputs,
        tmp_path,
        train={"arch": "finetune", **recipe, "epochs": 2, "batch_size": 16},
        runtime={"device": ON},
    )
    texts = ["a superb film, a masterpiece.", "terrible plot and awful acting.", "it was fine, okay."] * 5
    cpu = TextClassifier(tmp_path / "model", device="cpu", precision="fp32")
    gpu = TextClassifier(tmp_path / "model", device=ON, precision="auto")
    assert gpu.precision == resolve_precision("auto", DEVICE)
    assert np.abs(cpu.logits(texts) - gpu.logits(texts)).max() < 0.1
    assert [a.label for a in cpu.predict(texts)] == [a.label for a in gpu.predict(texts)]
