"""`featurize` writes, for every token, the vector the encoder gives that document alone.

The oracle runs the tiny BERT on each document by itself (no padding, no batch) and combines its
hidden states as each layer option says; `featurize` batches documents of mixed lengths with
padding, so a wrong attention mask, a misplaced row or a wrong layer combination shows up.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from bertclf.config import FeaturizeConfig, TokenizeConfig
from bertclf.data.stores import FeatureStore, length_batches
from bertclf.data.tokenization import tokenize_splits
from bertclf.encoder import load_encoder
from bertclf.features import featurize

WORDS = ["the", "movie", "was", "great", "but", "the", "acting", "was", "poor", "and", "the", "story",
         "dragged", "on", "and", "on"]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """Documents of 1 to 60 words (mixed lengths in every padded batch), tokenized."""
    root = tmp_path_factory.mktemp("featurize")
    rng = np.random.default_rng(5)
    split = root / "split"
    split.mkdir()
    for name, n in (("train", 17), ("val", 5)):
        sizes = rng.integers(1, 61, n)
        texts = [" ".join(rng.choice(WORDS, s)) + "." for s in sizes]
        frame = pd.DataFrame({"id": [f"{name}{i}" for i in range(n)], "text": texts,
                              "label": [i % 2 for i in range(n)]})
        frame.to_parquet(split / f"{name}.parquet", index=False)
    (split / "labels.json").write_text(json.dumps({"labels": ["a", "b"]}))
    tokenize_splits(split, tiny_bert_dir, root / "tokens",
                    TokenizeConfig(max_length=96, max_sentence_tokens=8))
    return root / "tokens"


def oracle(model: torch.nn.Module, ids: np.ndarray, layers: str) -> np.ndarray:
    """The document alone through the encoder: its hidden states combined as `layers` says."""
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(ids.astype(np.int64))[None], output_hidden_states=True)
    states = [h[0] for h in out.hidden_states]  # embeddings first, last layer last
    last4 = states[-4:]
    combined = {"last": states[-1], "mean_last_4": sum(last4) / len(last4), "sum_last_4": sum(last4),
                "concat_last_4": torch.cat(last4, dim=-1)}[layers]
    return combined.numpy()


@pytest.mark.parametrize("layers", ["last", "mean_last_4", "sum_last_4", "concat_last_4"])
def test_every_token_gets_the_vector_of_its_document_encoded_alone(tokens: Path, tiny_bert_dir: Path,
                                                                  tmp_path: Path, layers: str) -> None:
    out = tmp_path / "features"
    # 160 padded tokens per pass: several documents of different lengths share each batch
    report = featurize(tokens, tiny_bert_dir, out, FeaturizeConfig(layers=layers, max_batch_tokens=160,
                                                                    precision="fp32"))
    assert report["splits"]["train"]["padding_fraction"] > 0.05  # padding really was computed
    meta = json.loads((out / "meta.json").read_text())
    assert meta["layers"] == layers and meta["dim"] == FeatureStore(out, "train").dim
    assert meta["precision"] == report["precision"] == "fp32"
    assert_matches_oracle(tokens, out, load_encoder(tiny_bert_dir), layers, tolerance=2e-3)


def assert_matches_oracle(tokens: Path, out: Path, model: torch.nn.Module, layers: str,
                          tolerance: float) -> None:
    """Every document's vectors in `out` are the oracle's, within `tolerance` x its largest value."""
    for split in ("train", "val"):
        table = pq.read_table(tokens / f"{split}.parquet")
        store = FeatureStore(out, split)
        assert store.ids == table.column("id").to_pylist()
        assert store.labels.tolist() == table.column("label").to_pylist()
        for i, ids in enumerate(table.column("input_ids").to_pylist()):
            ids = np.asarray(ids)
            got = store.tokens(i).astype(np.float32)
            want = oracle(model, ids, layers)
            assert got.shape == want.shape, (split, i)
            scale = np.abs(want).max()
            assert np.abs(got - want).max() <= tolerance * scale + 1e-3, (split, i, len(ids))
            assert store.sentences(i).tolist() == table.column("sentence_lengths")[i].as_py()


def test_bf16_featurizes_on_bf16_weights_close_to_fp32(tokens: Path, tiny_bert_dir: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "features"
    report = featurize(tokens, tiny_bert_dir, out, FeaturizeConfig(max_batch_tokens=160, precision="bf16"))
    assert report["precision"] == json.loads((out / "meta.json").read_text())["precision"] == "bf16"
    # bf16 keeps 8 bits of mantissa: within a few percent of the fp32 oracle, token by token
    assert_matches_oracle(tokens, out, load_encoder(tiny_bert_dir), "mean_last_4", tolerance=5e-2)
    fp32 = tmp_path / "fp32"
    featurize(tokens, tiny_bert_dir, fp32, FeaturizeConfig(max_batch_tokens=160, precision="fp32"))
    assert not np.array_equal(FeatureStore(out, "train").tokens(0), FeatureStore(fp32, "train").tokens(0))


@pytest.mark.parametrize("units", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_units(
        tokens: Path, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        units: bool) -> None:
    monkeypatch.setattr("bertclf.inference.has_bf16_units", lambda device: units)
    report = featurize(tokens, tiny_bert_dir, tmp_path / "features", FeaturizeConfig(precision="auto"))
    assert report["precision"] == ("bf16" if units else "fp32")


def test_length_batches_cover_every_document_once_within_the_budget() -> None:
    lengths = np.random.default_rng(0).integers(1, 200, 500)
    batches = length_batches(lengths, max_batch_tokens=1024)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 1024
    assert [int(lengths[b].max()) for b in batches] == sorted((int(lengths[b].max()) for b in batches),
                                                               reverse=True)  # longest first
    capped = length_batches(lengths, max_batch_tokens=1024, max_docs=7)
    assert max(map(len, capped)) == 7 and sorted(np.concatenate(capped).tolist()) == list(range(500))


# --- a disk that cannot hold the vectors, and what a killed run left --------------------------

def _stage(fn: object, capsys: pytest.CaptureFixture) -> str:
    """Run `fn` as a stage script does; return its one error line (and check there is just one)."""
    from bertclf.cli_support import run_stage

    with pytest.raises(SystemExit) as exited:
        run_stage(fn)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert exited.value.code == 1 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_featurize_refuses_a_disk_too_small_before_any_work(tokens: Path, tiny_bert_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from collections import namedtuple

    from bertclf import features as feat

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(feat.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    encoded = []
    monkeypatch.setattr(feat, "encode_documents", lambda *a, **k: encoded.append(1))
    out = tmp_path / "data" / "features"
    line = _stage(lambda: featurize(tokens, tiny_bert_dir, out, FeaturizeConfig()), capsys)
    assert str(out) in line and "and 1.0 MB are free there" in line and " needs " in line
    assert encoded == [] and not out.exists() and list(out.parent.iterdir()) == []


def test_a_full_disk_during_featurize_is_one_line_not_a_sigbus(
        tokens: Path, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    import errno

    from bertclf import features as feat

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(feat.os, "posix_fallocate", full)
    out = tmp_path / "data" / "features"
    line = _stage(lambda: featurize(tokens, tiny_bert_dir, out, FeaturizeConfig()), capsys)
    assert "train.npy: no space left on the device" in line
    assert not out.exists() and list(out.parent.iterdir()) == []  # the partial temp is gone too


@pytest.mark.parametrize(("code", "expected"), [("EROFS", "read-only"), ("ENOSPC", "no space left"),
                                                ("EACCES", "permission denied")])
def test_environment_errors_of_any_stage_are_one_line_and_debug_shows_the_traceback(
        code: str, expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import errno

    from bertclf.cli_support import run_stage

    def stage() -> None:
        raise OSError(getattr(errno, code), "from the kernel", "data/split/train.parquet")

    line = _stage(stage, capsys)
    assert line.startswith("error: data/split/train.parquet: ") and expected in line
    monkeypatch.setenv("BERTCLF_DEBUG", "1")
    with pytest.raises(OSError):
        run_stage(stage)


def test_stale_temporaries_of_a_killed_featurize_are_removed_when_it_starts(
        tokens: Path, tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "features"
    stale = tmp_path / "data" / ".features.k1ll3d.tmp"
    stale.mkdir(parents=True)
    (stale / "train.npy").write_bytes(b"\0" * (1 << 20))
    (tmp_path / "data" / ".features.4194305.old").mkdir()  # and an .old whose output was then completed
    out.mkdir()
    (out / "meta.json").write_text("{}")
    featurize(tokens, tiny_bert_dir, out, FeaturizeConfig())
    assert sorted(p.name for p in out.parent.iterdir()) == ["features"]


def test_an_int8_store_is_half_the_bytes_within_half_a_step_of_float16(tokens: Path, tiny_bert_dir: Path,
                                                                       tmp_path: Path) -> None:
    half, small = tmp_path / "float16", tmp_path / "int8"
    cfg = {"max_batch_tokens": 160, "precision": "fp32"}
    featurize(tokens, tiny_bert_dir, half, FeaturizeConfig(**cfg))
    report = featurize(tokens, tiny_bert_dir, small, FeaturizeConfig(**cfg, store="int8"))
    assert json.loads((small / "meta.json").read_text())["store"] == "int8"
    assert np.load(small / "train.npy").dtype == np.int8
    a, b = FeatureStore(half, "train"), FeatureStore(small, "train")
    dim = a.dim
    assert report["splits"]["train"]["bytes"] == (small / "train.npy").stat().st_size + (
        small / "train.scale.npy").stat().st_size
    assert (small / "train.npy").stat().st_size + (small / "train.scale.npy").stat().st_size < 0.6 * (
        half / "train.npy").stat().st_size
    for i in range(len(a)):
        exact, rounded = a.tokens(i).astype(np.float32), b.tokens(i)
        step = np.abs(exact).max(axis=1, keepdims=True) / 127
        assert rounded.dtype == np.float32 and rounded.shape == (a.lengths[i], dim)
        # half a step of int8, and float16's own rounding of the reference
        assert (np.abs(rounded - exact) <= step / 2 + 2e-3 * np.abs(exact) + 1e-6).all()
