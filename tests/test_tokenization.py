"""Tokenization with the tiny fast tokenizer: truncation, sentence spans, the split files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertclf.config import section_from
from bertclf.data.tokenization import (
    SCHEMA,
    DocumentTokenizer,
    TokenizeConfig,
    clean_text,
    keep_indices,
    sentence_spans,
    split_sentences,
    tokenize_splits,
    window_starts,
)
from bertclf.errors import ConfigError

WORDS = ["good", "movie", "bad", "acting", "story", "great", "film", "plot", "music", "ending", "the",
         "cast", "scene", "people", "love", "funny", "boring", "long", "time", "night"]


def content_ids(tok: Any, text: str) -> list[int]:
    """Token ids of the whole (cleaned) text, no special tokens: the reference."""
    return tok(clean_text(text), add_special_tokens=False)["input_ids"]


def encode_one(tok: Any, text: str, **cfg: Any) -> dict[str, Any]:
    enc = DocumentTokenizer(tok, TokenizeConfig(**cfg)).encode([text])
    return {k: v[0] for k, v in enc.items()}


def words_text(n: int, every: int = 0, sep: str = ". ") -> str:
    """`n` single-token words; a sentence break after every `every` words when > 0."""
    out = []
    for i in range(n):
        out.append(WORDS[i % len(WORDS)])
        if every and (i + 1) % every == 0 and i + 1 < n:
            out[-1] += sep.rstrip(" ")
    return " ".join(out)


def test_words_are_single_tokens(tiny_tokenizer: Any) -> None:
    for w in WORDS:
        assert len(tiny_tokenizer(w, add_special_tokens=False)["input_ids"]) == 1, w


def test_special_tokens_are_read_off_the_tokenizer(tiny_tokenizer: Any) -> None:
    dt = DocumentTokenizer(tiny_tokenizer, TokenizeConfig(max_length=32))
    assert dt.prefix.tolist() == [tiny_tokenizer.cls_token_id]
    assert dt.suffix.tolist() == [tiny_tokenizer.sep_token_id]
    assert dt.budget == 30


@pytest.mark.parametrize("text", [
    "Good movie.", "The plot was boring, but the music? Great!", "good  movie \n\n bad acting",
    "unknownword xyz 123", "", "   ",
])
def test_short_text_gives_the_plain_tokenizer_ids(tiny_tokenizer: Any, text: str) -> None:
    row = encode_one(tiny_tokenizer, text, max_length=64)
    assert row["input_ids"].tolist() == tiny_tokenizer(text)["input_ids"]
    assert row["length"] == len(row["input_ids"])
    assert row["full_tokens"] == row["length"] - 2


@pytest.mark.parametrize("every", [0, 7])  # one long sentence, or many short ones
def test_head_tail_and_head_tail_keep_exactly_the_right_tokens(tiny_tokenizer: Any, every: int) -> None:
    tok = tiny_tokenizer
    text = words_text(100, every)
    full = content_ids(tok, text)
    assert len(full) > 40
    cls, sep = [tok.cls_token_id], [tok.sep_token_id]
    max_length, budget = 24, 22

    head = encode_one(tok, text, max_length=max_length, truncation="head")
    assert head["input_ids"].tolist() == cls + full[:budget] + sep
    assert head["input_ids"].tolist() == tok(text, truncation=True, max_length=max_length)["input_ids"]

    tail = encode_one(tok, text, max_length=max_length, truncation="tail")
    assert tail["input_ids"].tolist() == cls + full[-budget:] + sep

    ht = encode_one(tok, text, max_length=max_length, truncation="head_tail", head_tokens=8)
    assert ht["input_ids"].tolist() == cls + full[:8] + full[-(budget - 8):] + sep

    for row in (head, tail, ht):
        assert row["length"] == max_length == len(row["input_ids"])
        assert row["full_tokens"] == len(full)
        assert row["input_ids"].dtype == np.int32


def test_head_tail_edges(tiny_tokenizer: Any) -> None:
    tok = tiny_tokenizer
    text = words_text(60)
    full = content_ids(tok, text)
    only_tail = encode_one(tok, text, max_length=16, truncation="head_tail", head_tokens=0)
    assert only_tail["input_ids"].tolist()[1:-1] == full[-14:]
    only_head = encode_one(tok, text, max_length=16, truncation="head_tail", head_tokens=16)
    assert only_head["input_ids"].tolist()[1:-1] == full[:14]
    # Sun et al. (2019): 128 head + 382 tail tokens in 512
    assert keep_indices(1000, 510, "head_tail", 128).tolist() == [*range(128), *range(1000 - 382, 1000)]


def test_keep_indices() -> None:
    assert keep_indices(5, 10, "head", 3).tolist() == [0, 1, 2, 3, 4]
    assert keep_indices(10, 4, "head", 3).tolist() == [0, 1, 2, 3]
    assert keep_indices(10, 4, "tail", 3).tolist() == [6, 7, 8, 9]
    assert keep_indices(10, 4, "head_tail", 3).tolist() == [0, 1, 2, 9]
    assert keep_indices(0, 4, "tail", 3).tolist() == []


def test_sentence_spans_unit() -> None:
    assert sentence_spans(np.array([], dtype=int), 4, 3).tolist() == []
    assert sentence_spans(np.array([0, 0, 1, 1, 1, 2]), 4, 10).tolist() == [2, 3, 1]
    assert sentence_spans(np.array([0] * 9 + [1, 1]), 4, 10).tolist() == [4, 4, 1, 2]
    assert sentence_spans(np.array([0] * 9 + [1, 1]), 4, 2).tolist() == [4, 4]
    assert sentence_spans(np.array([0, 1, 2, 3]), 4, 2).dtype == np.int32


def test_br_tags_and_blank_lines_split_sentences(tiny_tokenizer: Any) -> None:
    for text in ("good movie<br /><br />bad acting", "good movie<BR>bad acting", "good movie\n\nbad acting"):
        row = encode_one(tiny_tokenizer, text, max_length=32)
        assert row["input_ids"].tolist() == tiny_tokenizer("good movie bad acting")["input_ids"], text
        assert row["sentence_lengths"].tolist() == [3, 3], text  # [CLS] good movie | bad acting [SEP]


def test_sentence_ends_split_and_spans_cover_the_ids(tiny_tokenizer: Any) -> None:
    row = encode_one(tiny_tokenizer, "Good movie. Bad acting! The plot? Boring", max_length=32)
    # [CLS] good movie . | bad acting ! | the plot ? | boring [SEP]
    assert row["sentence_lengths"].tolist() == [4, 3, 3, 2]
    assert int(row["sentence_lengths"].sum()) == row["length"]


def test_spans_with_head_tail_truncation(tiny_tokenizer: Any) -> None:
    # sentences of 3, 4, 5 and 3 tokens (punctuation included); 15 content tokens, budget 8
    text = "good movie. bad acting story. great film plot music. long time."
    assert len(content_ids(tiny_tokenizer, text)) == 3 + 4 + 5 + 3
    row = encode_one(tiny_tokenizer, text, max_length=10, truncation="head_tail", head_tokens=4)
    # kept: good movie . bad | . long time . -> [CLS]+3, 1, 1, 3+[SEP]
    assert row["sentence_lengths"].tolist() == [4, 1, 1, 4]
    assert row["length"] == 10


def test_long_sentences_are_cut_and_sentence_count_capped(tiny_tokenizer: Any) -> None:
    row = encode_one(tiny_tokenizer, words_text(50), max_length=64, max_sentence_tokens=16)
    assert row["sentence_lengths"].tolist() == [16, 16, 16, 4]
    row = encode_one(tiny_tokenizer, words_text(60, every=5), max_length=128, max_sentences=3)
    assert row["sentence_lengths"].tolist() == [7, 6, 6]  # "w w w w w." = 6 tokens, [CLS] joins the first
    assert int(row["sentence_lengths"].sum()) < row["length"]


def random_document(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 40)):
        word = rng.choice([*WORDS, "Movie", "xyzzy", "it's", "re-watch"])
        end = rng.choice(["", "", "", ".", "!", "?", ",", "...", ".\"", "<br /><br />", "\n\n", "\n"])
        parts.append(word + end)
    return rng.choice(["", " ", "\n"]) + " ".join(parts) + rng.choice(["", " ", "\n", "<br />"])


def is_whitespace_deletion(short: str, long: str) -> bool:
    """True when `short` is `long` with some whitespace characters removed."""
    i = 0
    for ch in long:
        if i < len(short) and short[i] == ch:
            i += 1
        elif not ch.isspace():
            return False
    return i == len(short)


def test_split_sentences_concatenation_property(tiny_tokenizer: Any) -> None:
    rng = random.Random(1234)
    for _ in range(300):
        text = clean_text(random_document(rng))
        pieces = split_sentences(text)
        assert pieces, repr(text)
        joined = "".join(pieces)
        # only whitespace-only pieces may be dropped; nothing is reordered or changed
        assert is_whitespace_deletion(joined, text), (text, pieces)
        if text.strip():
            assert all(p.strip() for p in pieces), pieces
        # tokenizing the pieces one by one gives exactly the tokens of the whole text
        per_piece = [t for p in pieces for t in tiny_tokenizer(p, add_special_tokens=False)["input_ids"]]
        assert per_piece == tiny_tokenizer(text, add_special_tokens=False)["input_ids"], text


def test_split_sentences_exact_concatenation_without_blank_lines() -> None:
    for text in ("One. Two! Three? Four", "He said \"stop.\" Then left.", "a\nb\nc", "no breaks at all"):
        assert "".join(split_sentences(text)) == text
    assert split_sentences("One. Two! Three?") == ["One.", " Two!", " Three?"]
    assert split_sentences("Mr. Smith (really!) left.") == ["Mr.", " Smith (really!)", " left."]


def test_split_sentences_docstring_contract_with_blank_lines() -> None:
    text = "Good movie.\n\nBad acting."
    assert "".join(split_sentences(text)) == text


TRUNCATION_SEEDS = {"head": 1, "tail": 2, "head_tail": 3}


@pytest.mark.parametrize("truncation", list(TRUNCATION_SEEDS))
def test_random_documents_invariants(tiny_tokenizer: Any, truncation: str) -> None:
    rng = random.Random(TRUNCATION_SEEDS[truncation])
    texts = [random_document(rng) for _ in range(150)]
    cfg = TokenizeConfig(max_length=24, truncation=truncation, head_tokens=6, max_sentences=4,
                         max_sentence_tokens=5, batch_size=7)
    dt = DocumentTokenizer(tiny_tokenizer, cfg)
    enc = dt.encode(texts)
    cls, sep = tiny_tokenizer.cls_token_id, tiny_tokenizer.sep_token_id
    for i, text in enumerate(texts):
        ids, spans = enc["input_ids"][i], enc["sentence_lengths"][i]
        full = content_ids(tiny_tokenizer, text)
        keep = keep_indices(len(full), 22, truncation, 6)
        assert ids.tolist() == [cls, *np.asarray(full, dtype=np.int64)[keep].tolist(), sep], text
        assert enc["length"][i] == len(ids) <= 24
        assert enc["full_tokens"][i] == len(full)
        assert 1 <= len(spans) <= 4
        assert spans.min() >= 1 and spans.max() <= 5
        assert spans.sum() <= len(ids)
        if len(spans) < 4:
            assert spans.sum() == len(ids)


@pytest.mark.parametrize("n", [1, 22, 23, 30, 37, 38, 60, 200])
def test_windows_cover_the_whole_text_with_the_special_tokens(tiny_tokenizer: Any, n: int) -> None:
    """Sliding windows: each is [CLS] + a run of the text + [SEP]; the first is the head; they
    start every stride tokens and the last ends with the text; a text longer than `windows`
    windows can cover gets `windows` of them, still from its start to its end."""
    text = words_text(n, every=5)
    full = content_ids(tiny_tokenizer, text)
    enc = encode_one(tiny_tokenizer, text, max_length=24, windows=3, window_stride=8)
    cls, sep = tiny_tokenizer.cls_token_id, tiny_tokenizer.sep_token_id
    lengths = enc["window_lengths"].tolist()
    windows = np.split(enc["windows"], np.cumsum(lengths)[:-1])
    assert sum(lengths) == len(enc["windows"]) and 1 <= len(windows) <= 3
    runs = [w[1:-1].tolist() for w in windows]
    assert all(w[0] == cls and w[-1] == sep and len(w) <= 24 for w in windows)
    assert runs[0] == full[:22] and runs[-1] == full[-22:]  # the head first, the end of the text last
    if len(full) <= 22 + 2 * 8:  # at most three windows of 22, eight tokens apart, reach the end
        starts = [min(8 * k, len(full) - 22) for k in range(len(runs))] if len(full) > 22 else [0]
        assert runs == [full[a:a + 22] for a in starts]
        assert starts[-1] + 22 >= len(full) and (len(starts) == 1 or starts[-2] + 22 < len(full))
    else:  # three windows, the middle one spread further than a stride from both ends
        assert len(runs) == 3
        assert any(runs[1] == full[a:a + 22] for a in range(9, len(full) - 22 - 8))
    assert enc["input_ids"].tolist() == [cls, *full[:22], sep]  # other archs read the truncated text


def test_window_starts_unit() -> None:
    assert window_starts(10, 254, 128, 4).tolist() == [0]
    assert window_starts(300, 254, 128, 4).tolist() == [0, 46]
    assert window_starts(600, 254, 128, 4).tolist() == [0, 128, 256, 346]
    assert window_starts(2000, 254, 128, 4).tolist() == [0, 582, 1164, 1746]


def test_one_window_writes_none_and_a_stride_that_skips_text_is_refused(tiny_tokenizer: Any) -> None:
    enc = encode_one(tiny_tokenizer, words_text(60), max_length=24)
    assert len(enc["windows"]) == len(enc["window_lengths"]) == 0
    with pytest.raises(ConfigError, match="window_stride"):
        DocumentTokenizer(tiny_tokenizer, TokenizeConfig(max_length=24, windows=2, window_stride=23))


# --- config ------------------------------------------------------------------------------------

def test_config_from_params() -> None:
    cfg = section_from("tokenize", {"max_length": 128, "truncation": "tail", "head_tokens": 64,
                                    "max_sentences": 10, "max_sentence_tokens": 20, "batch_size": 8})
    assert cfg == TokenizeConfig(128, "tail", 64, 10, 20, 8)
    assert section_from("tokenize", {}) == TokenizeConfig()


@pytest.mark.parametrize(("params", "key"), [
    ({"truncation": "middle"}, "tokenize.truncation"), ({"max_length": 2}, "tokenize.max_length"),
    ({"max_sentences": 0}, "sentence limits"), ({"truncation": "head_tail", "head_tokens": 300},
                                                "tokenize.head_tokens"),
    ({"max_length": "128"}, "tokenize.max_length"), ({"max_lenght": 128}, "tokenize.max_length"),
    ({"windows": 0}, "tokenize.windows"),
])
def test_bad_config_names_the_key(params: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        section_from("tokenize", params)


def test_slow_tokenizer_is_refused() -> None:
    class Slow:
        is_fast = False

    with pytest.raises(ConfigError, match="fast tokenizer"):
        DocumentTokenizer(Slow(), TokenizeConfig())


# --- the split files -> token files ----------------------------------------------------------

def write_split_dir(root: Path, n: int = 23) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    for name, rows in (("train", n), ("val", 5), ("test", 9)):
        pd.DataFrame({
            "id": [f"{name}-{i}" for i in range(rows)],
            "text": [random_document(rng) for _ in range(rows)],
            "label": [i % 3 for i in range(rows)],
        }).to_parquet(root / f"{name}.parquet", index=False)
    (root / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
    return root


def test_tokenize_splits_outputs(tiny_bert_dir: Path, tmp_path: Path) -> None:
    splits = write_split_dir(tmp_path / "split")
    cfg = TokenizeConfig(max_length=16, batch_size=4)
    report = tokenize_splits(splits, tiny_bert_dir, tmp_path / "tokens", cfg)
    assert sorted(p.name for p in (tmp_path / "tokens").iterdir()) == [
        "meta.json", "test.parquet", "train.parquet", "val.parquet"]
    for name, rows in (("train", 23), ("val", 5), ("test", 9)):
        table = pq.read_table(tmp_path / "tokens" / f"{name}.parquet")
        assert table.schema.equals(SCHEMA)
        assert table.schema.field("input_ids").type == pa.list_(pa.int32())
        source = pd.read_parquet(splits / f"{name}.parquet")
        assert table.column("id").to_pylist() == source["id"].tolist()
        assert table.column("label").to_pylist() == source["label"].tolist()
        lengths = table.column("length").to_pylist()
        assert lengths == [len(x) for x in table.column("input_ids").to_pylist()]
        assert max(lengths) <= 16
        assert report["splits"][name]["docs"] == rows
        assert report["splits"][name]["tokens"] == sum(lengths)
    meta = json.loads((tmp_path / "tokens" / "meta.json").read_text())
    assert meta["labels"] == ["a", "b", "c"] and meta["tokenize"]["max_length"] == 16
    metrics = report
    assert metrics["docs"] == 37 and metrics["max_length"] == 16 and metrics["truncation"] == "head"
    assert metrics["tokens"] == sum(s["tokens"] for s in metrics["splits"].values())
    assert {"docs_per_s", "tokens_per_s", "seconds"} <= set(metrics)
    assert 0 <= metrics["splits"]["train"]["truncated_fraction"] <= 1


def test_batch_size_does_not_change_the_output(tiny_bert_dir: Path, tmp_path: Path) -> None:
    splits = write_split_dir(tmp_path / "split")
    tables = []
    for bs in (1, 5, 1024):
        out = tmp_path / f"tok{bs}"
        tokenize_splits(splits, tiny_bert_dir, out, TokenizeConfig(max_length=12, batch_size=bs))
        tables.append(pq.read_table(out / "train.parquet"))
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])


def test_tokenize_failure_leaves_previous_output(tiny_bert_dir: Path, tmp_path: Path) -> None:
    splits = write_split_dir(tmp_path / "split")
    pd.DataFrame({"id": ["x"], "label": [0]}).to_parquet(splits / "val.parquet")  # no text column
    out = tmp_path / "tokens"
    out.mkdir()
    (out / "train.parquet").write_bytes(b"previous")
    with pytest.raises(Exception, match="text"):
        tokenize_splits(splits, tiny_bert_dir, out, TokenizeConfig(max_length=64))
    assert sorted(p.name for p in out.iterdir()) == ["train.parquet"]
    assert (out / "train.parquet").read_bytes() == b"previous"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_max_length_above_the_encoders_limit_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    splits = write_split_dir(tmp_path / "split")
    with pytest.raises(ConfigError, match="max_length"):  # the tiny encoder has 128 positions
        tokenize_splits(splits, tiny_bert_dir, tmp_path / "tokens", TokenizeConfig(max_length=256))
    assert not (tmp_path / "tokens").exists()


def test_windows_are_written_and_counted(tiny_bert_dir: Path, tmp_path: Path) -> None:
    splits = write_split_dir(tmp_path / "split")
    report = tokenize_splits(splits, tiny_bert_dir, tmp_path / "tokens",
                             TokenizeConfig(max_length=12, windows=3, window_stride=6))
    table = pq.read_table(tmp_path / "tokens" / "train.parquet")
    counts = [len(w) for w in table.column("window_lengths").to_pylist()]
    assert report["windows"] == 3 and min(counts) >= 1 and max(counts) <= 3
    assert report["splits"]["train"]["windows_per_doc"] == round(sum(counts) / len(counts), 3)
    assert [sum(w) for w in table.column("window_lengths").to_pylist()] == [
        len(w) for w in table.column("windows").to_pylist()]
