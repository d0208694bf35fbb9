"""Tokenize splits to parquet: token ids within `max_length`, and sentence spans for HAN.

Each document is cut into sentences first (IMDB's ``<br />`` and Yelp's blank lines count as
breaks), and the sentences of a batch of documents are tokenized together by the encoder's fast
tokenizer. The pieces keep their leading whitespace, so concatenating a document's sentence
tokens gives exactly the tokens of the whole text, and the sentence lengths come for free.

Output columns (one row per document):

- ``id`` (str), ``label`` (int64)
- ``input_ids`` (list<int32>): special tokens included, at most ``max_length`` ids
- ``length`` (int32): ``len(input_ids)``
- ``sentence_lengths`` (list<int32>): consecutive spans covering the first tokens of
  ``input_ids`` (the leading special token joins the first span, the trailing one the last);
  each span is at most ``max_sentence_tokens`` long, at most ``max_sentences`` spans
- ``full_tokens`` (int32): tokens of the text before truncation (specials excluded)
- ``windows`` (list<int32>), ``window_lengths`` (list<int32>): with ``windows > 1``, the sliding
  windows of the whole text that fine-tuning reads instead of ``input_ids`` (each with the special
  tokens, concatenated; `window_starts` says where they start); empty with ``windows: 1``
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertclf.atomic import atomic_path, write_json
from bertclf.config import TokenizeConfig
from bertclf.errors import BertclfError, ConfigError
from bertclf.progress import track

BREAK_TAG = re.compile(r"<br\s*/?>", re.IGNORECASE)
# A sentence ends after . ! ? (and closing quotes/brackets) followed by whitespace, or at a
# line break. The break position is kept before the whitespace, so each piece after the first
# starts with the whitespace that separated it.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*(?=\s)|(?=\n)")

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("label", pa.int64()),
    ("input_ids", pa.list_(pa.int32())),
    ("length", pa.int32()),
    ("sentence_lengths", pa.list_(pa.int32())),
    ("full_tokens", pa.int32()),
    ("windows", pa.list_(pa.int32())),
    ("window_lengths", pa.list_(pa.int32())),
])


def clean_text(text: str) -> str:
    """Turn HTML line breaks into newlines; everything else is left to the tokenizer."""
    return BREAK_TAG.sub("\n", text)


def split_sentences(text: str) -> list[str]:
    """Cut `text` into pieces whose concatenation is `text` (whitespace kept at piece starts)."""
    cuts = [m.end() for m in SENTENCE_END.finditer(text) if 0 < m.end() < len(text)]
    pieces: list[str] = []
    pending = ""  # whitespace-only pieces are folded into the next one
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        pending += text[a:b]
        if pending.strip():
            pieces.append(pending)
            pending = ""
    if not pieces:
        return [text]
    pieces[-1] += pending
    return pieces


def keep_indices(n: int, budget: int, truncation: str, head_tokens: int) -> np.ndarray:
    """Indices of the tokens kept from `n` content tokens under a budget (Sun et al. 2019)."""
    if n <= budget:
        return np.arange(n)
    if truncation == "head":
        return np.arange(budget)
    if truncation == "tail":
        return np.arange(n - budget, n)
    head = min(head_tokens, budget)
    return np.concatenate([np.arange(head), np.arange(n - (budget - head), n)])


def window_starts(n: int, budget: int, stride: int, windows: int) -> np.ndarray:
    """Where the windows of `budget` tokens over `n` text tokens start: every `stride` tokens, the
    last one ending where the text ends (so no window is a short remainder); a text that would need
    more than `windows` gets `windows` of them spread evenly from its start to its end."""
    if n <= budget:
        return np.zeros(1, dtype=np.int64)
    needed = 1 + -(-(n - budget) // stride)
    if needed <= windows:
        return np.minimum(np.arange(needed) * stride, n - budget)
    return np.linspace(0, n - budget, windows).round().astype(np.int64)


def sentence_spans(sentence_ids: np.ndarray, max_tokens: int, max_sentences: int) -> np.ndarray:
    """Lengths of runs of equal sentence id, each run cut into pieces of at most `max_tokens`."""
    if len(sentence_ids) == 0:
        return np.zeros(0, dtype=np.int32)
    change = np.flatnonzero(np.diff(sentence_ids)) + 1
    runs = np.diff(np.concatenate([[0], change, [len(sentence_ids)]]))
    if runs.max() > max_tokens:
        pieces = []
        for r in runs:
            full, rest = divmod(int(r), max_tokens)
            pieces += [max_tokens] * full + ([rest] if rest else [])
        runs = np.asarray(pieces)
    return runs[:max_sentences].astype(np.int32)


class DocumentTokenizer:
    """Turns texts into the rows described in the module docstring."""

    def __init__(self, tokenizer: Any, cfg: TokenizeConfig):
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("the encoder has no fast tokenizer (tokenizer.json); it is required")
        self.tok = tokenizer
        self.cfg = cfg
        # The special tokens a single sequence gets ([CLS] … [SEP] for BERT), read off a probe.
        bare = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next(i for i in range(len(full)) if full[i:i + len(bare)] == bare)
        self.prefix = np.asarray(full[:at], dtype=np.int32)
        self.suffix = np.asarray(full[at + len(bare):], dtype=np.int32)
        self.budget = cfg.max_length - len(self.prefix) - len(self.suffix)
        if self.budget < 1:
            raise ConfigError("params.yaml: tokenize.max_length leaves no room for text")
        if cfg.windows > 1 and cfg.window_stride > self.budget:
            raise ConfigError(f"params.yaml: tokenize.window_stride={cfg.window_stride} would skip text: "
                              f"at most {self.budget} (max_length less the special tokens)")

    def encode(self, texts: list[str]) -> dict[str, list]:
        cfg = self.cfg
        pieces: list[str] = []
        counts: list[int] = []
        for text in texts:
            sentences = split_sentences(clean_text(text))
            pieces += sentences
            counts.append(len(sentences))
        ids = self.tok(pieces, add_special_tokens=False, return_attention_mask=False,
                       return_token_type_ids=False, verbose=False)["input_ids"]
        out: dict[str, list] = {"input_ids": [], "length": [], "sentence_lengths": [], "full_tokens": [],
                                "windows": [], "window_lengths": []}
        no_windows = np.zeros(0, dtype=np.int32)
        start = 0
        for count in counts:
            parts = ids[start:start + count]
            start += count
            lens = np.fromiter((len(p) for p in parts), dtype=np.int64, count=count)
            flat = np.fromiter((t for p in parts for t in p), dtype=np.int32, count=int(lens.sum()))
            keep = keep_indices(len(flat), self.budget, cfg.truncation, cfg.head_tokens)
            sid = np.repeat(np.arange(count), lens)[keep]
            first, last = (sid[0], sid[-1]) if len(sid) else (0, 0)
            sid = np.concatenate([np.full(len(self.prefix), first), sid, np.full(len(self.suffix), last)])
            input_ids = np.concatenate([self.prefix, flat[keep], self.suffix])
            out["input_ids"].append(input_ids)
            out["length"].append(len(input_ids))
            out["sentence_lengths"].append(sentence_spans(sid, cfg.max_sentence_tokens, cfg.max_sentences))
            out["full_tokens"].append(len(flat))
            if cfg.windows > 1:
                wins = [np.concatenate([self.prefix, flat[a:a + self.budget], self.suffix])
                           for a in window_starts(len(flat), self.budget, cfg.window_stride, cfg.windows)]
                out["windows"].append(np.concatenate(wins))
                out["window_lengths"].append(np.fromiter(map(len, wins), dtype=np.int32))
            else:
                out["windows"].append(no_windows)
                out["window_lengths"].append(no_windows)
        return out


def _list_array(arrays: list[np.ndarray]) -> pa.ListArray:
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    values = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int32)))


def _batches(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)


def tokenize_file(src: Path, dst: Path, doc_tok: DocumentTokenizer) -> dict[str, Any]:
    """Tokenize one split parquet (id, text, label) into `dst`, streaming by batches."""
    table = pq.read_table(src, columns=["id", "text", "label"])
    kind = table.schema.field("label").type  # 0/1 rows (multi-label), a value (regression), a class
    label_type = (pa.list_(pa.int8()) if pa.types.is_list(kind)
                  else pa.float64() if pa.types.is_floating(kind) else pa.int64())
    schema = SCHEMA.set(1, pa.field("label", label_type))
    t0 = time.perf_counter()
    docs = tokens = truncated = windows = 0
    with atomic_path(dst) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in track(_batches(table, doc_tok.cfg.batch_size), table.num_rows, f"tokenize {src.stem}",
                           "docs", size=len):
            enc = doc_tok.encode(batch.column("text").to_pylist())
            writer.write_table(pa.table({
                "id": batch.column("id"),
                "label": batch.column("label").cast(schema.field("label").type),
                "input_ids": _list_array(enc["input_ids"]),
                "length": pa.array(enc["length"], pa.int32()),
                "sentence_lengths": _list_array(enc["sentence_lengths"]),
                "full_tokens": pa.array(enc["full_tokens"], pa.int32()),
                "windows": _list_array(enc["windows"]),
                "window_lengths": _list_array(enc["window_lengths"]),
            }, schema=schema))
            windows += sum(len(w) for w in enc["window_lengths"])
            docs += batch.num_rows
            tokens += int(sum(enc["length"]))
            truncated += sum(f > doc_tok.budget for f in enc["full_tokens"])
    seconds = time.perf_counter() - t0
    return {
        "docs": docs,
        "tokens": tokens,
        "mean_length": round(tokens / max(docs, 1), 1),
        "truncated_fraction": round(truncated / max(docs, 1), 4),
        **({"windows_per_doc": round(windows / max(docs, 1), 3)} if doc_tok.cfg.windows > 1 else {}),
        "seconds": round(seconds, 3),
        "docs_per_s": round(docs / seconds, 1) if seconds > 0 else None,
    }


def load_tokenizer(encoder_dir: Path) -> Any:
    """The encoder's fast tokenizer, from a local directory only, never running code the directory
    names (``auto_map`` in ``tokenizer_config.json``): such a directory is refused in one line,
    at a terminal too, where transformers would otherwise ask whether to run it."""
    from transformers import AutoTokenizer

    config = Path(encoder_dir) / "tokenizer_config.json"
    try:
        custom = "auto_map" in json.loads(config.read_text(encoding="utf-8")) if config.is_file() else False
    except (ValueError, OSError):
        custom = False  # not ours to judge: transformers says what is wrong with it
    if custom:
        raise BertclfError(f"{config}: the tokenizer names code of its own to run (auto_map); bertclf "
                           "never runs code from a model directory: use a tokenizer transformers ships")
    return AutoTokenizer.from_pretrained(encoder_dir, use_fast=True, local_files_only=True,
                                         trust_remote_code=False)


def tokenize_splits(splits: Path, encoder_dir: Path, out: Path, cfg: TokenizeConfig) -> dict[str, Any]:
    """Tokenize every split parquet in `splits` into `out`; return the counts and throughput."""
    positions = json.loads((encoder_dir / "config.json").read_text()).get("max_position_embeddings")
    if positions and cfg.max_length > positions:
        raise ConfigError(f"params.yaml: tokenize.max_length={cfg.max_length} is more than the encoder's "
                          f"{positions} positions ({encoder_dir}/config.json)")
    doc_tok = DocumentTokenizer(load_tokenizer(encoder_dir), cfg)
    report: dict[str, Any] = {"max_length": cfg.max_length, "truncation": cfg.truncation,
                              "windows": cfg.windows, "splits": {}}
    with atomic_path(out, is_dir=True) as tmp:
        for src in sorted(splits.glob("*.parquet")):
            report["splits"][src.stem] = tokenize_file(src, tmp / src.name, doc_tok)
        labels_file = splits / "labels.json"
        split_meta = json.loads(labels_file.read_text()) if labels_file.exists() else {}
        # What later stages (and a saved model) need to tokenize new text the same way.
        write_json(tmp / "meta.json", {**split_meta, "tokenize": asdict(cfg)})
    parts = report["splits"].values()
    docs = sum(p["docs"] for p in parts)
    seconds = sum(p["seconds"] for p in parts)
    report.update(docs=docs, tokens=sum(p["tokens"] for p in parts), seconds=round(seconds, 3),
                  docs_per_s=round(docs / seconds, 1) if seconds else None,
                  tokens_per_s=round(sum(p["tokens"] for p in parts) / seconds, 1) if seconds else None)
    return report
