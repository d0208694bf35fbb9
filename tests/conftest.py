"""Shared fixtures: a tiny offline BERT, the shared mirror, a network guard, stage helpers.

No test reaches the network: the Hugging Face libraries run offline, every test gets its own
empty download cache, and sockets to the internet are refused inside the test process.
"""

from __future__ import annotations

import os

# Before anything imports transformers / huggingface_hub (they read these at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import socket
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data"

# A small WordPiece vocabulary: specials, characters, common English words, some suffixes.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = list(".,!?;:'\"()[]<>/-&$%*+=#@_")
_COMMON_WORDS = """
the a an of and or but not no to in on at by for with from as is are was were be been being it its
this that these those there here he she they we you i me my your his her their our them us who what
which when where why how all any some many much more most very so too also just only even still
than then now up down out over into about after before again once off under while because if
movie film films movies story plot acting actor actors actress director scene scenes character
characters cast script ending music camera time times year years life people man woman men women
good great best better bad worst worse well really quite pretty little big long short new old
love loved like liked hate funny boring beautiful nice fine awful terrible excellent perfect
amazing wonderful poor make made makes see seen saw watch watched watching think thought know
knew say said get got go going went come came take took give gave find found look looks looked
way thing things part parts end work works world day days night family friend friends home
one two three four five first second last other another same own each every few both
can could will would should may might must do does did done have has had having
company companies share shares stock stocks market markets price prices profit loss net
year quarter dividend oil trade bank rate rates sales earnings pct mln dlrs billion u s
food place service restaurant staff order ordered menu taste delicious table wait back
course student faculty project page home research university department computer science
"""
COMMON_WORDS = _COMMON_WORDS.split()
SUFFIXES = ["##s", "##es", "##ed", "##ing", "##ly", "##er", "##ers", "##est", "##ion", "##al", "##y",
            "##en", "##ment", "##ness", "##able", "##ful", "##less", "##ic", "##ity"]


def tiny_vocab() -> list[str]:
    """The tokens of the tiny tokenizer, ids in list order (deduplicated)."""
    letters = list(string.ascii_lowercase)
    tokens = (SPECIALS + PUNCTUATION + list(string.digits) + letters + ["##" + c for c in letters]
              + ["##" + d for d in string.digits] + COMMON_WORDS + SUFFIXES)
    return list(dict.fromkeys(tokens))


def build_tiny_bert(out: Path) -> Path:
    """Save a 2-layer, 32-wide BERT (random weights, safetensors) and a fast WordPiece tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = {tok: i for i, tok in enumerate(tiny_vocab())}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    core.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    core.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(tokenizer_object=core, model_max_length=128)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")

    import torch

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=128)
    BertModel(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local Hugging Face model directory: config.json, model.safetensors, tokenizer files."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_bert_dir: Path) -> Any:
    """The tiny model's fast tokenizer, loaded by the pipeline's own loading code."""
    from bertclf.data.tokenization import load_tokenizer

    return load_tokenizer(tiny_bert_dir)


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The shared dataset mirror beside the checkout (../shared/data); skip when absent."""
    if not (MIRROR / "README.md").is_file():
        if os.environ.get("BERTCLF_REQUIRE_MIRROR"):  # CI: a missing mirror is a failure, not a skip
            pytest.fail(f"dataset mirror ../shared/data absent (looked in {MIRROR}), "
                        "and BERTCLF_REQUIRE_MIRROR is set")
        pytest.skip(f"dataset mirror ../shared/data absent (looked in {MIRROR})")
    return MIRROR


class NetworkBlocked(RuntimeError):
    """Raised when a test tries to open an internet connection."""


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test: no internet sockets (this machine's loopback only), an empty private download
    cache, no inherited mirror."""
    real_connect = socket.socket.connect

    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise NetworkBlocked(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in LOOPBACK:  # a server under test on this machine (bertclf serve)
            return real_getaddrinfo(host, *args, **kwargs)
        raise NetworkBlocked(f"test tried to resolve {host!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setenv("BERTCLF_CACHE", str(tmp_path_factory.mktemp("bertclf-cache")))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("BERTCLF_MIRROR", raising=False)
    yield


def run_split_stage(workdir: Path, data: dict[str, Any], split: dict[str, Any] | None = None,
                    mirror: Path | None = None) -> dict[str, Any]:
    """Do what `download@data` then `split` do, in-process, with outputs under `workdir`.

    Returns the split report. Raises whatever the stages raise.
    """
    from bertclf.config import DataConfig, SplitConfig
    from bertclf.data.datasets import download_dataset, load_raw
    from bertclf.data.splitting import make_splits, write_splits

    data_cfg, split_cfg = DataConfig(**data), SplitConfig(**(split or {}))
    raw = workdir / "data" / "raw"
    download_dataset(data_cfg, raw, mirror=mirror)
    splits = make_splits(load_raw(raw, data_cfg), split_cfg)
    write_splits(splits, workdir / "data" / "split", workdir / "reports" / "split.json")
    return splits.report


@pytest.fixture
def split_stage() -> Callable[..., dict[str, Any]]:
    return run_split_stage


def make_config(**overrides: Any) -> Any:
    """The default params with dotted keys set, checked like params.yaml:
    ``make_config(**{"train.lr": 0.01})`` or ``make_config(train={"lr": 0.01}, han={"hidden": 8})``."""
    from bertclf.config import Config

    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return Config().replace(flat)


def run_train(inputs: Any, out: Path, **overrides: Any) -> dict[str, Any]:
    """`train` as the stage runs it, outputs under `out` (model, ckpt, train.json, plots); params
    as for `make_config`."""
    from bertclf.training.loop import TrainOutputs, train

    return train(make_config(**overrides), inputs,
                 TrainOutputs(out / "model", out / "ckpt", out / "train.json", out / "plots"))


# train settings and knobs with which each arch learns the tiny tests' cue-word data on the tiny BERT
TINY_ARCHS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "han": ({"lr": 1e-2, "epochs": 8}, {"hidden": 8, "attention_dim": 8, "dropout": 0.1}),
    "bigru": ({"lr": 1e-2, "epochs": 8}, {"hidden": 8, "attention_dim": 8, "dropout": 0.1}),
    "finetune": ({"lr": 2e-3, "epochs": 8}, {}),
    "cnn": ({"lr": 5e-3, "epochs": 8}, {"embedding_dim": 16, "num_filters": 8, "dropout": 0.1}),
    "rnn": ({"lr": 1e-2, "epochs": 8},
            {"embedding_dim": 16, "hidden": 8, "attention_dim": 8, "dropout": 0.1}),
}


def tiny_inputs(root: Path, encoder: Path, max_length: int = 24) -> Any:
    """`root/data/split` (as `run_split_stage` writes it) tokenized and featurized as the stages
    do, on `encoder` in fp32: the Inputs train and evaluate read."""
    from bertclf.data.stores import Inputs
    from bertclf.data.tokenization import TokenizeConfig, tokenize_splits
    from bertclf.features import FeaturizeConfig, featurize

    tokenize_splits(root / "data" / "split", encoder, root / "tokens", TokenizeConfig(max_length=max_length))
    featurize(root / "tokens", encoder, root / "features", FeaturizeConfig(precision="fp32"))
    return Inputs(root / "features", root / "tokens", encoder)
