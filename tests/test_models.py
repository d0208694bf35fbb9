"""The classifiers over token vectors: shapes, knobs, attention masking."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from bertclf.config import RecurrentConfig
from bertclf.data.stores import Batch
from bertclf.models import Dims, get
from bertclf.models.han import HANClassifier
from bertclf.models.recurrent import RecurrentClassifier


def build_model(spec: tuple[str, RecurrentConfig]) -> nn.Module:
    """A fresh model through the registry, as training builds it: the arch's knobs and its dims."""
    arch, knobs = spec
    return get(arch).build(knobs, Dims(num_labels=LABELS, input_dim=DIM), Path("no-encoder"))

DIM, LABELS = 12, 4


def bigru_batch(lengths: list[int], fill: float = 0.0) -> Batch:
    torch.manual_seed(0)
    tokens = torch.full((len(lengths), max(lengths), DIM), fill)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randn(n, DIM)
    return Batch(tokens=tokens, lengths=torch.tensor(lengths))


def han_batch(doc_sentences: list[list[int]], fill: float = 0.0) -> Batch:
    torch.manual_seed(1)
    flat = [n for doc in doc_sentences for n in doc]
    tokens = torch.full((len(flat), max(flat), DIM), fill)
    for i, n in enumerate(flat):
        tokens[i, :n] = torch.randn(n, DIM)
    return Batch(sentence_tokens=tokens, sentence_lengths=torch.tensor(flat),
                 doc_sentences=torch.tensor([len(d) for d in doc_sentences]))


def config(arch: str, **kw: object) -> tuple[str, RecurrentConfig]:
    return arch, RecurrentConfig(hidden=6, attention_dim=5, **kw)  # type: ignore[arg-type]


def test_output_shapes_both_archs() -> None:
    bigru = build_model(config("bigru")).eval()
    han = build_model(config("han")).eval()
    assert isinstance(bigru, RecurrentClassifier) and isinstance(han, HANClassifier)
    assert bigru(bigru_batch([5, 2, 7])).shape == (3, LABELS)
    assert han(han_batch([[3, 4], [2], [5, 1, 2]])).shape == (3, LABELS)
    assert han.last_sentence_attention.shape == (3, 3)


@pytest.mark.parametrize("arch", ["bigru", "han"])
def test_depth_stacks_recurrent_layers(arch: str) -> None:
    one, three = build_model(config(arch, depth=1)), build_model(config(arch, depth=3))
    encoders = ["encoder"] if arch == "bigru" else ["word_encoder", "sentence_encoder"]
    for name in encoders:
        assert len(getattr(one, name).rnns) == 1
        assert len(getattr(three, name).rnns) == 3
        assert getattr(three, name).rnns[1].input_size == 12  # 2 x hidden from the layer below
    assert sum(p.numel() for p in three.parameters()) > sum(p.numel() for p in one.parameters())


@pytest.mark.parametrize(("norm", "kind"), [("none", nn.Identity), ("layer", nn.LayerNorm),
                                            ("batch", nn.BatchNorm1d)])
def test_norm_inserts_the_normalization(norm: str, kind: type) -> None:
    model = build_model(config("han", depth=2, norm=norm))
    for encoder in (model.word_encoder, model.sentence_encoder):
        assert all(type(n) is kind for n in encoder.norms)
    assert build_model(config("bigru", norm=norm)).eval()(bigru_batch([4, 3])).isfinite().all()


def test_residual_adds_the_skip_path() -> None:
    plain = build_model(config("bigru", depth=2)).eval()
    skip = build_model(config("bigru", depth=2, residual=True)).eval()
    skip.load_state_dict(copy.deepcopy(plain.state_dict()))  # same weights, only the wiring differs
    batch = bigru_batch([6, 4])
    assert not torch.allclose(plain(batch), skip(batch))
    # with the second layer's output forced to zero, the residual model passes layer 1 through
    with torch.no_grad():
        for p in skip.encoder.rnns[1].parameters():
            p.zero_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(batch.tokens, batch.lengths, batch_first=True,
                                                     enforce_sorted=False)
    first, _ = skip.encoder.rnns[0](packed)
    both = skip.encoder(packed)
    assert torch.allclose(both.data, first.data, atol=1e-6)
    # depth 1 has nothing to skip between: residual changes nothing
    a, b = build_model(config("bigru", depth=1)).eval(), build_model(config("bigru", depth=1, residual=True))
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a(batch), b.eval()(batch))


def test_attention_sums_to_one_over_real_tokens_and_ignores_padding() -> None:
    model = build_model(config("bigru")).eval()
    lengths = [7, 3, 5]
    logits = model(bigru_batch(lengths, fill=0.0))
    weights = model.last_attention
    for i, n in enumerate(lengths):
        assert torch.allclose(weights[i, :n].sum(), torch.tensor(1.0), atol=1e-6)
        assert torch.all(weights[i, n:] == 0)
    # whatever the padding holds, the prediction is the same
    assert torch.allclose(logits, model(bigru_batch(lengths, fill=123.0)), atol=1e-5)


def test_han_attention_ignores_padded_words_and_sentences() -> None:
    model = build_model(config("han", depth=2, norm="layer")).eval()
    docs = [[3, 4], [2], [5, 1, 2]]
    logits = model(han_batch(docs))
    words, sentences = model.last_word_attention, model.last_sentence_attention
    flat = [n for d in docs for n in d]
    for i, n in enumerate(flat):
        assert torch.allclose(words[i, :n].sum(), torch.tensor(1.0), atol=1e-6)
        assert torch.all(words[i, n:] == 0)
    for i, d in enumerate(docs):
        assert torch.allclose(sentences[i, : len(d)].sum(), torch.tensor(1.0), atol=1e-6)
        assert torch.all(sentences[i, len(d):] == 0)
    assert torch.allclose(logits, model(han_batch(docs, fill=-50.0)), atol=1e-5)
