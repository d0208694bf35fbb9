"""finetune, cnn and rnn: the same recipe over token ids, on the tiny BERT."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import bertclf
import bertclf.training.checkpoints as checkpoints
from bertclf.config import CNNConfig
from bertclf.data.stores import Batch, Inputs, TokenStore, concat
from bertclf.data.tokenization import TokenizeConfig, tokenize_splits
from bertclf.evaluation import evaluate
from bertclf.features import FeaturizeConfig, featurize
from bertclf.model_dir import ModelDir
from bertclf.models import Dims, get
from bertclf.models.finetune import layerwise_param_groups, load_finetune, pool_windows
from bertclf.pretrain import PretrainConfig, pretrain
from bertclf.serving.export import export_onnx
from tests.conftest import run_train

GOOD = ["good", "great", "excellent", "amazing", "wonderful", "perfect", "loved", "beautiful", "fine", "nice"]
BAD = ["bad", "worst", "awful", "terrible", "boring", "poor", "hate", "worse"]
FILLER = ["the", "movie", "film", "story", "plot", "acting", "scene", "music", "camera", "cast", "script",
          "ending"]


def review(rng: random.Random, label: int) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 14))]
    for _ in range(2):
        words.insert(rng.randrange(len(words)), rng.choice(GOOD if label else BAD))
    return " ".join(words) + "."


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Inputs:
    root = tmp_path_factory.mktemp("token-archs")
    rng = random.Random(0)
    split = root / "split"
    split.mkdir()
    for name, n in (("train", 160), ("val", 40), ("test", 40)):
        labels = [i % 2 for i in range(n)]
        pd.DataFrame({"id": [f"{name}{i}" for i in range(n)], "text": [review(rng, y) for y in labels],
                      "label": labels}).to_parquet(split / f"{name}.parquet", index=False)
    (split / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"], "test_subsampled": False}))
    tokenize_splits(split, tiny_bert_dir, root / "tokens", TokenizeConfig(max_length=32))
    featurize(root / "tokens", tiny_bert_dir, root / "features", FeaturizeConfig(), needed=False)
    return Inputs(root / "features", root / "tokens", tiny_bert_dir)


def run(inputs: Inputs, out: Path, knobs: dict | None = None, **train: object) -> dict:
    arch = str(train.get("arch", "han"))
    return run_train(inputs, out, train={"batch_size": 16, "epochs": 3, "patience": 10, **train},
                     runtime={"log_every": 2}, **{arch: knobs or {}})


@pytest.mark.parametrize(("arch", "kw", "knobs"), [
    ("finetune", {"lr": 2e-3, "epochs": 6, "lr_decay": "linear", "warmup_ratio": 0.1},
     {"layer_lr_decay": 0.9}),
    ("cnn", {"lr": 5e-3}, {"embedding_dim": 16, "num_filters": 8, "dropout": 0.1}),
    ("rnn", {"lr": 1e-2}, {"embedding_dim": 16, "hidden": 8, "attention_dim": 8, "dropout": 0.1}),
])
def test_token_archs_learn_and_round_trip(inputs: Inputs, tmp_path: Path, arch: str, kw: dict,
                                          knobs: dict) -> None:
    report = run(inputs, tmp_path, knobs, arch=arch, **kw)
    assert report["best_val_acc"] >= 0.85, report  # sentiment words decide the label; chance is 0.5
    assert ModelDir.read(tmp_path / "model").arch == arch
    if arch == "finetune":  # a Hugging Face model directory, tokenizer included
        for f in ("config.json", "model.safetensors", "tokenizer.json", "bertclf.json", "labels.json"):
            assert (tmp_path / "model" / f).is_file(), f
    result = evaluate(tmp_path / "model", inputs, tmp_path / "eval.json", tmp_path / "eval",
                      tmp_path / "predictions")
    assert result["val_acc"] == report["best_val_acc"]  # the saved model is the best epoch's


def test_featurize_skips_the_encoder_for_token_archs(inputs: Inputs) -> None:
    assert not list(inputs.features.glob("*.npy"))
    assert json.loads((inputs.features / "meta.json").read_text())["skipped"]


def test_resume_equals_uninterrupted_for_finetune(inputs: Inputs, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"arch": "finetune", "lr": 3e-3, "grad_accum": 2}
    knobs = {"layer_lr_decay": 0.9}
    whole = run(inputs, tmp_path / "whole", knobs, **kw)
    real_save = checkpoints.save_checkpoint

    def save_then_die(path: Path, *args: object, **kwargs: object) -> None:
        real_save(path, *args, **kwargs)
        if path.name == "epoch_1":
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(inputs, tmp_path / "killed", knobs, **kw)
    monkeypatch.setattr(checkpoints, "save_checkpoint", real_save)
    resumed = run(inputs, tmp_path / "killed", knobs, **kw)
    assert resumed["resumed_from_epoch"] == 1
    timing = ("train_seconds", "train_docs_per_s", "resumed_from_epoch", "key_seconds", "epoch_seconds")
    assert {k: v for k, v in resumed.items() if k not in timing} == {
        k: v for k, v in whole.items() if k not in timing}
    a, b = (load_file(tmp_path / d / "model/model.safetensors") for d in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_attention_dropout_replaces_the_encoders_own_and_is_saved(inputs: Inputs, tmp_path: Path,
                                                                   tiny_bert_dir: Path) -> None:
    own = json.loads((tiny_bert_dir / "config.json").read_text())["attention_probs_dropout_prob"]
    assert load_finetune(tiny_bert_dir, num_labels=2).model.config.attention_probs_dropout_prob == own
    run(inputs, tmp_path, {"attention_dropout": 0.0}, arch="finetune", lr=2e-3, epochs=1)
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["attention_probs_dropout_prob"] == 0.0 != own
    assert ModelDir.read(tmp_path / "model").knobs.attention_dropout == 0.0


def test_hidden_dropout_replaces_the_encoders_own_and_is_saved(inputs: Inputs, tmp_path: Path,
                                                                tiny_bert_dir: Path) -> None:
    own = json.loads((tiny_bert_dir / "config.json").read_text())["hidden_dropout_prob"]
    run(inputs, tmp_path, {"hidden_dropout": 0.0}, arch="finetune", lr=2e-3, epochs=1)
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == 0.0 != own
    assert ModelDir.read(tmp_path / "model").knobs.hidden_dropout == 0.0
    # no dropout anywhere: training mode computes what evaluation does
    model = load_finetune(tmp_path / "model", attention_dropout=0.0)
    ids = torch.tensor([[101, 7, 8, 9, 102]])
    batch = Batch(input_ids=ids, attention_mask=torch.ones_like(ids))
    train_logits = model.train()(batch)
    assert torch.allclose(train_logits, model.eval()(batch))


def test_layerwise_lr_decay_gives_each_layer_its_rate(tiny_bert_dir: Path) -> None:
    model = load_finetune(tiny_bert_dir, num_labels=3)
    layers = model.model.config.num_hidden_layers  # 2
    groups = layerwise_param_groups(model, lr=1e-3, decay=0.5, weight_decay=0.01)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    for name, param in model.named_parameters():
        lr, wd = lr_of[id(param)]
        if ".encoder.layer." in name:
            layer = int(name.split(".encoder.layer.")[1].split(".")[0])
            assert lr == pytest.approx(1e-3 * 0.5 ** (layers - 1 - layer)), name
        elif ".embeddings." in name:
            assert lr == pytest.approx(1e-3 * 0.5**layers), name
        else:  # pooler, classifier
            assert lr == pytest.approx(1e-3), name
        assert wd == (0.0 if param.ndim == 1 else 0.01), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # the optimizer really uses them
    opt = torch.optim.AdamW(groups, lr=1e-3)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([2.5e-4, 5e-4, 1e-3])


def test_cnn_ignores_padding_and_handles_short_documents() -> None:
    cfg = CNNConfig(embedding_dim=6, num_filters=4, filter_widths=(2, 3))
    model = get("cnn").build(cfg, Dims(num_labels=2, vocab_size=50, pad_id=0), Path("no-encoder")).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 0, 0, 0]])
    mask = (ids != 0).long()
    logits = model(Batch(input_ids=ids, attention_mask=mask))
    wider = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    again = model(Batch(input_ids=wider,
                        attention_mask=(wider != 0).long()))
    assert torch.allclose(logits, again, atol=1e-6)
    assert torch.isfinite(logits).all()


def test_tiny_mlm_pretrain_lowers_held_out_loss_and_feeds_finetune(inputs: Inputs, tmp_path: Path) -> None:
    cfg = PretrainConfig(steps=40, lr=2e-3, batch_size=16, max_length=32, eval_fraction=0.1, seed=3)
    report = pretrain(inputs.tokens, inputs.encoder, tmp_path / "pretrained", cfg)
    assert report["mlm_loss_after"] < report["mlm_loss_before"] - 0.5, report
    pretrained = Inputs(inputs.features, inputs.tokens, tmp_path / "pretrained")
    result = run(pretrained, tmp_path / "ft", arch="finetune", lr=2e-3, epochs=1)
    assert result["epochs_run"] == 1


def test_pretrain_with_zero_steps_passes_the_encoder_through(inputs: Inputs, tmp_path: Path) -> None:
    report = pretrain(inputs.tokens, inputs.encoder, tmp_path / "p", PretrainConfig(steps=0))
    assert report["skipped"] is True
    for f in inputs.encoder.iterdir():
        if f.is_file():
            assert (tmp_path / "p" / f.name).read_bytes() == f.read_bytes()


@pytest.fixture(scope="module")
def late_label(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """Reviews whose sentiment words come only after 25 filler words: past a 16-token head."""
    root = tmp_path_factory.mktemp("late-label")
    rng = random.Random(1)
    for name, n in (("train", 160), ("val", 40), ("test", 40)):
        labels = [i % 2 for i in range(n)]
        texts = [" ".join([*(rng.choice(FILLER) for _ in range(25)), *rng.sample(GOOD if y else BAD, 2)])
                 for y in labels]
        pd.DataFrame({"id": [f"{name}{i}" for i in range(n)], "text": texts, "label": labels}).to_parquet(
            root / f"{name}.parquet", index=False)
    (root / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"], "test_subsampled": False}))
    return root


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_sliding_windows_read_what_truncation_cuts_off(late_label: Path, tiny_bert_dir: Path,
                                                       tmp_path: Path, pool: str) -> None:
    """With the label past the head, truncated fine-tuning guesses; windows over the whole text
    learn it, and the saved model pools the windows of raw text the same way as validation."""
    accuracy = {1: 0.5}
    for windows in (1, 3) if pool == "mean" else (3,):  # the truncated baseline once
        tokens = tmp_path / f"tokens{windows}"
        tokenize_splits(late_label, tiny_bert_dir, tokens,
                        TokenizeConfig(max_length=16, windows=windows, window_stride=14))
        report = run(Inputs(tmp_path / "no-features", tokens, tiny_bert_dir), tmp_path / f"w{windows}",
                     {"window_pool": pool}, arch="finetune", lr=5e-3, epochs=6, lr_decay="linear",
                     warmup_ratio=0.1)
        accuracy[windows] = report["best_val_acc"]
    assert accuracy[1] <= 0.7 and accuracy[3] >= 0.85, accuracy
    clf = bertclf.load(tmp_path / "w3" / "model")
    val = pd.read_parquet(late_label / "val.parquet")
    assert clf.md.knobs.window_pool == pool and clf.describe()["windows"] == 3
    predicted = [p.label for p in clf.predict(val["text"].tolist())]
    assert np.mean(np.array(predicted) == np.array(["neg", "pos"])[val["label"]]) == accuracy[3]
    exported = bertclf.load(export_onnx(tmp_path / "w3" / "model", tmp_path / "onnx"))  # pools the same
    assert np.allclose(exported.logits(val["text"].tolist()), clf.logits(val["text"].tolist()), atol=1e-4)


def test_train_plus_val_keeps_each_documents_windows() -> None:
    def store(docs: list[list[list[int]]]) -> TokenStore:
        return TokenStore.from_ids([np.array(d[0]) for d in docs], [np.concatenate(d) for d in docs],
                                   [np.array([len(w) for w in d]) for d in docs])

    a = store([[[1, 5, 2]], [[1, 6, 6, 2], [1, 7, 2]]])
    b = store([[[1, 8, 8, 8, 2], [1, 9, 2], [1, 4, 2]]])
    joined = concat(a, b)
    assert joined.lengths.tolist() == [3, 7, 11]
    batch = joined.window_batch(np.array([2, 0]), pad_id=0)
    assert batch.doc_windows.tolist() == [3, 1]
    assert batch.input_ids.tolist() == [[1, 8, 8, 8, 2], [1, 9, 2, 0, 0], [1, 4, 2, 0, 0], [1, 5, 2, 0, 0]]
    assert batch.attention_mask.sum(1).tolist() == [5, 3, 3, 3]


def test_pool_windows_is_the_mean_or_max_of_each_documents_windows() -> None:
    logits = torch.randn(7, 3, requires_grad=True)
    counts = torch.tensor([2, 1, 4])
    parts = logits.split(counts.tolist())
    assert torch.allclose(pool_windows(logits, counts, "mean"), torch.stack([p.mean(0) for p in parts]))
    assert torch.equal(pool_windows(logits, counts, "max"), torch.stack([p.amax(0) for p in parts]))
    assert pool_windows(logits, None, "mean") is logits
    pool_windows(logits, counts, "mean").sum().backward()  # every window gets its document's gradient
    assert torch.allclose(logits.grad, (1 / counts).repeat_interleave(counts)[:, None].expand(7, 3))


def test_frozen_word_embeddings_stay_pre_trained(inputs: Inputs, tmp_path: Path, tiny_bert_dir: Path) -> None:
    run(inputs, tmp_path, {"freeze_embeddings": True}, arch="finetune", lr=5e-3, epochs=1)
    before = load_finetune(tiny_bert_dir, num_labels=2).model.state_dict()
    after = load_file(tmp_path / "model" / "model.safetensors")
    words = next(k for k in after if k.endswith("word_embeddings.weight"))
    assert torch.equal(after[words], before[words])
    moved = [k for k in after if "encoder.layer" in k and not torch.equal(after[k], before[k])]
    assert moved  # the rest trained
    assert ModelDir.read(tmp_path / "model").knobs.freeze_embeddings is True
