"""`bertclf predict`'s inputs and outputs: texts from the command line or a file, predictions to
the terminal or a csv/jsonl file, and the interactive prompt loop."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from bertclf.atomic import atomic_path
from bertclf.data.readers import base_suffix, read_texts
from bertclf.errors import DataError
from bertclf.plotting import SafeCsvWriter
from bertclf.serving.predictor import TextClassifier

OUTPUT_SUFFIXES = (".csv", ".jsonl")
CHUNK = 4096  # texts per model call when classifying a file: memory stays flat on big inputs


def output_rows(texts: Sequence[str], probs: np.ndarray, labels: list[str]) -> Iterable[dict[str, Any]]:
    """One row per text: text, label, probability, then the probability of every class."""
    for text, row in zip(texts, probs, strict=True):
        best = int(row.argmax())
        yield {"text": text, "label": labels[best], "probability": round(float(row[best]), 6),
               **{f"p_{name}": round(float(p), 6) for name, p in zip(labels, row, strict=True)}}


def check_output(path: Path) -> None:
    if base_suffix(path) not in OUTPUT_SUFFIXES:
        raise DataError(f"unsupported output type {path.suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)}",
                        path)


def write_predictions(dst: Path, rows: Iterable[dict[str, Any]], labels: list[str]) -> int:
    """Write prediction rows to `dst` (csv or jsonl) atomically: no half-written file on error."""
    check_output(dst)
    fields = ["text", "label", "probability", *(f"p_{name}" for name in labels)]
    n = 0
    with atomic_path(dst) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        writer = SafeCsvWriter(f, fields) if base_suffix(dst) == ".csv" else None
        if writer:
            writer.writeheader()
        for row in rows:
            if writer:
                writer.writerow(row)
            else:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def predict_file(clf: TextClassifier, src: Path, dst: Path, text_column: str | None = None) -> int:
    """Classify every text of `src` into `dst` (csv or jsonl); returns the count."""
    check_output(dst)
    texts = read_texts(src, text_column)["text"].tolist()

    def rows() -> Iterable[dict[str, Any]]:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start:start + CHUNK]
            yield from output_rows(chunk, clf.predict_proba(chunk), clf.labels)

    return write_predictions(dst, rows(), clf.labels)


def format_prediction(text: str, probs: np.ndarray, labels: list[str], top_k: int) -> str:
    """`label  probability  text` and the next most likely classes, for the terminal."""
    order = np.argsort(-probs)[:max(top_k, 1)]
    shown = text if len(text) <= 60 else text[:57] + "..."
    head = f"{labels[order[0]]}\t{probs[order[0]]:.3f}\t{shown}"
    rest = [f"\t{labels[i]}\t{probs[i]:.3f}" for i in order[1:]]
    return "\n".join([head, *rest])


def interactive(clf: TextClassifier, stdin: IO[str], echo: Callable[[str], None], top_k: int = 3,
                prompt: Callable[[], None] | None = None) -> int:
    """A prompt loop: each line typed (a paragraph) gets its label and top-k probabilities;
    end of input (Ctrl-D) quits. Returns the number of paragraphs classified."""
    done = 0
    echo(f"{clf.arch} model, {len(clf.labels)} labels. Type a paragraph and press Enter; Ctrl-D quits.")
    while True:
        if prompt:
            prompt()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        probs = clf.predict_proba([text])[0]
        order = np.argsort(-probs)[:max(top_k, 1)]
        echo("  ".join(f"{clf.labels[i]} {probs[i]:.3f}" for i in order))
        done += 1
    return done
