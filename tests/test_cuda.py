"""What runs on a GPU: device selection, the fine-tuned model's bf16 forward and training step,
the encoder pass of featurize. Skipped where no CUDA device is visible (CI's machines);
`benchmarks/gpu_check.sh` runs them on a GPU machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertclf.inference import autocast, has_bf16_units, resolve_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")


def test_auto_picks_the_gpu_and_knows_its_bf16() -> None:
    device = resolve_device("auto")
    assert device.type == "cuda" and has_bf16_units(device) == torch.cuda.is_bf16_supported()


def test_the_fine_tuned_model_on_the_gpu_matches_the_cpu(tiny_bert_dir: Path) -> None:
    from bertclf.data.stores import Batch, pad_ids
    from bertclf.models.finetune import load_finetune

    torch.manual_seed(0)
    model = load_finetune(tiny_bert_dir, num_labels=3).eval()
    ids, mask = pad_ids([np.arange(5, 5 + n) for n in (3, 17, 40)], 0)
    with torch.inference_mode():
        cpu = model(Batch(input_ids=ids, attention_mask=mask)).float()
        gpu_model = model.to("cuda")
        with autocast(torch.device("cuda"), True):
            gpu = gpu_model(Batch(input_ids=ids.cuda(), attention_mask=mask.cuda())).float().cpu()
    assert torch.allclose(cpu, gpu, atol=5e-2), (cpu - gpu).abs().max()


def test_a_training_step_on_the_gpu_learns(tiny_bert_dir: Path) -> None:
    from bertclf.data.stores import Batch, pad_ids
    from bertclf.models.finetune import layerwise_param_groups, load_finetune

    torch.manual_seed(0)
    model = load_finetune(tiny_bert_dir, num_labels=2).cuda().train()
    optimizer = torch.optim.AdamW(layerwise_param_groups(model, 1e-3, 0.9, 0.01), fused=True)
    ids, mask = pad_ids([np.arange(5, 5 + n) for n in (4, 9, 12, 20)], 0)
    batch, labels = Batch(input_ids=ids.cuda(), attention_mask=mask.cuda()), torch.tensor([0, 1, 0, 1]).cuda()
    losses = []
    for _ in range(30):
        with autocast(torch.device("cuda"), True):
            loss = torch.nn.functional.cross_entropy(model(batch).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_featurize_on_the_gpu_matches_the_cpu(tiny_bert_dir: Path) -> None:
    from bertclf.encoder import batch_encoder, load_encoder

    docs = [np.arange(5, 5 + n) for n in (3, 17, 40)]
    cpu = batch_encoder(load_encoder(tiny_bert_dir, "cpu"), "mean_last_4", 0, torch.device("cpu"))(docs)
    gpu = batch_encoder(load_encoder(tiny_bert_dir, "cuda"), "mean_last_4", 0, torch.device("cuda"))(docs)
    assert torch.allclose(cpu.float(), gpu.float().cpu(), atol=1e-3)
