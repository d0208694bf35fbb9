"""`bertclf predict`'s inputs and outputs: texts from the command line, a file or standard input;
predictions to the terminal, standard output or a csv/tsv/jsonl/parquet file (with the input's
other columns kept); and the interactive prompt loop."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from bertclf.atomic import atomic_path
from bertclf.data.readers import TextColumns, base_suffix, headerless_columns, read_texts
from bertclf.errors import DataError
from bertclf.plotting import SafeCsvWriter
from bertclf.progress import progress
from bertclf.serving.predictor import Answers, TextClassifier

OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
STREAM_FORMATS = ("jsonl", "csv", "tsv")  # what can go to stdout (parquet needs a file)
STDIO = "-"  # as a path: standard input or output
CHUNK = 4096  # texts per model call when classifying a file: memory stays flat on big inputs
def output_rows(texts: Sequence[str], probs: np.ndarray, answers: Answers,
                others: Sequence[dict[str, Any]] | None = None) -> Iterable[dict[str, Any]]:
    """One row per text: the input's other columns (an id...), then text, label, probability (or
    the labels, comma-separated) and the probability of every class (``p_<label>``). An input
    column named like one of these is kept as ``input_<name>``."""
    for i, (text, row) in enumerate(zip(texts, probs, strict=True)):
        answer = answers.of(row)
        chosen = ({"labels": ",".join(answer["labels"])} if "labels" in answer else {"value": answer["value"]}
                  if "value" in answer else {"label": answer["label"], "probability": answer["probability"]})
        every = {f"p_{name}": p for name, p in answer.get("probabilities", {}).items()}
        predicted = {"text": text, **chosen, **every}
        kept = {(f"input_{k}" if k in predicted else str(k)): v
                for k, v in (others[i] if others else {}).items()}
        yield {**kept, **predicted}


def output_format(path: Path | None, fmt: str | None) -> str:
    """jsonl, csv, tsv or parquet: `--format` when given, else the output file's suffix (stdout:
    jsonl)."""
    if fmt is not None:
        if path is not None and str(path) != STDIO and base_suffix(path) != f".{fmt}":
            raise DataError(f"--format {fmt} does not match the file's suffix {path.suffix!r}", path)
        if fmt == "parquet" and (path is None or str(path) == STDIO):
            raise DataError("parquet cannot go to standard output: give --output FILE.parquet", STDIO)
        return fmt
    if path is None or str(path) == STDIO:
        return "jsonl"
    check_output(path)
    return base_suffix(path)[1:]


def check_output(path: Path) -> None:
    if str(path) != STDIO and base_suffix(path) not in OUTPUT_SUFFIXES:
        raise DataError(f"unsupported output type {path.suffix!r}; use one of {', '.join(OUTPUT_SUFFIXES)} "
                        "(or - for standard output)", path)


def write_predictions(dst: Path | None, rows: Iterable[dict[str, Any]], answers: Answers,
                      fmt: str | None = None, stdout: IO[str] | None = None) -> int:
    """Write prediction rows to `dst` (csv, tsv, jsonl or parquet) atomically, so that no
    half-written file is left on error; `dst` None or ``-``: to `stdout`, as they come."""
    fmt = output_format(dst, fmt)
    if dst is None or str(dst) == STDIO:
        return _write_rows(stdout or sys.stdout, rows, answers, fmt)
    with atomic_path(dst) as tmp:
        if fmt == "parquet":
            table = pd.DataFrame(list(rows))
            table.to_parquet(tmp, index=False)
            return len(table)
        with tmp.open("w", encoding="utf-8", newline="") as f:
            return _write_rows(f, rows, answers, fmt)


def _write_rows(f: IO[str], rows: Iterable[dict[str, Any]], answers: Answers, fmt: str) -> int:
    writer = None
    n = 0
    for row in rows:
        if fmt != "jsonl" and writer is None:
            writer = SafeCsvWriter(f, list(row), delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
        if writer is not None:
            writer.writerow(row)
        else:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        n += 1
    if writer is None and fmt != "jsonl":  # no rows: still a header
        every = [f"p_{name}" for name in answers.labels] if answers.has_probabilities else []
        SafeCsvWriter(f, [*answers.fields, *every],
                      delimiter="\t" if fmt == "tsv" else ",").writeheader()
    f.flush()
    return n


def read_input(src: Path, text_column: TextColumns | None = None, columns: Sequence[str] | None = None,
               stdin: IO[str] | None = None) -> tuple[list[str], list[dict[str, Any]] | None]:
    """The texts of `src` (``-``: standard input, one text per line) and the other columns of each
    row, when the input is a table."""
    if str(src) == STDIO:
        return [line.rstrip("\r\n") for line in (stdin or sys.stdin) if line.strip()], None
    df = read_texts(src, text_column, columns, keep=True)
    others = df.attrs.get("others")
    return df["text"].tolist(), (others.to_dict("records") if others is not None and len(others.columns)
                                 else None)


def predict_file(clf: TextClassifier, src: Path, dst: Path | None, text_column: TextColumns | None = None,
                 fmt: str | None = None, columns: Sequence[str] | None = None,
                 stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Classify every text of `src` (a file, or ``-`` for stdin) into `dst` (a file, or stdout
    when None or ``-``), keeping the input's other columns; returns the count. Without
    `text_column`, the text is in the column(s) the model was trained on."""
    output_format(dst, fmt)  # refuse a bad output before reading anything
    text_column = text_column or clf.text_columns
    if columns is None and str(src) != STDIO:  # a header-less file like the one the model was trained on
        columns = headerless_columns(src, clf.md.columns, text_column)
    texts, others = read_input(src, text_column, columns, stdin)

    def rows() -> Iterable[dict[str, Any]]:
        with progress(total=len(texts), desc="classifying", unit="texts") as bar:
            for start in range(0, len(texts), CHUNK):
                chunk = texts[start:start + CHUNK]
                yield from output_rows(chunk, clf.predict_proba(chunk), clf.answers,
                                       others[start:start + CHUNK] if others else None)
                bar.update(len(chunk))

    return write_predictions(dst, rows(), clf.answers, fmt, stdout)


def format_prediction(text: str, probs: np.ndarray, answers: Answers, top_k: int) -> str:
    """`label  probability  text` and the next most likely classes, for the terminal; multi-label:
    `labels  text` (comma-separated, `-` for none), then every label shown with its probability."""
    labels = answers.labels
    order = np.argsort(-probs)[:max(top_k, 1)]
    shown = text if len(text) <= 60 else text[:57] + "..."
    if not answers.has_probabilities:  # regression: the value
        return f"{answers.of(probs)['value']:.4g}\t{shown}"
    if answers.thresholds is not None:
        chosen = answers.of(probs)["labels"]
        order = np.argsort(-probs)[:max(top_k, len(chosen), 1)]
        return "\n".join([f"{','.join(chosen) or '-'}\t{shown}",
                          *(f"\t{labels[i]}\t{probs[i]:.3f}" for i in order)])
    answer = labels.index(answers.of(probs)["label"])  # ordinal: the median, not always the most probable
    order = [answer, *(i for i in order if i != answer)][:max(top_k, 1)]
    head = f"{labels[answer]}\t{probs[answer]:.3f}\t{shown}"
    rest = [f"\t{labels[i]}\t{probs[i]:.3f}" for i in order[1:]]
    return "\n".join([head, *rest])


HISTORY_ENV = "BERTCLF_HISTORY"  # where --interactive keeps its history (default under ~/.local/state)


def history_file() -> Path:
    import os

    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return Path(os.environ.get(HISTORY_ENV) or state / "bertclf" / "history")


def read_lines(stdin: IO[str], prompt: str = "> ") -> Iterator[str]:
    """Lines typed at a terminal, with readline's line editing (arrow keys, Ctrl-A/E...) and a
    history kept across sessions (Up recalls earlier texts); from a pipe or file, its lines."""
    if not stdin.isatty():
        yield from stdin
        return
    # importing readline gives input() line editing and history
    import readline

    history = history_file()
    with contextlib.suppress(OSError):  # no history yet
        readline.read_history_file(history)
    readline.set_history_length(1000)
    try:
        while True:
            try:
                yield input(prompt)
            except EOFError:
                print(file=sys.stderr)  # the prompt's line, ended
                return
    finally:
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)
        except OSError:
            pass  # a read-only home: history is a convenience, not worth an error


def interactive(clf: TextClassifier, lines: Iterable[str], echo: Callable[[str], None], top_k: int = 3,
                say: Callable[[str], None] | None = None, banner: str | None = None) -> int:
    """A prompt loop: each line (a paragraph) gets its label and top-k probabilities on `echo`;
    the banner goes to `say` (standard error), end of input (Ctrl-D) quits. Returns the number of
    paragraphs classified."""
    done = 0
    if say is not None:
        say(banner or f"{clf.arch} model, {len(clf.labels)} labels. Type a text and press Enter; "
            "Ctrl-D quits.")
    for line in lines:
        text = line.strip()
        if not text:
            continue
        probs = clf.predict_proba([text])[0]
        if not clf.answers.has_probabilities:  # regression: the value
            echo(f"{clf.answers.of(probs)['value']:.4g}")
            done += 1
            continue
        order = np.argsort(-probs)[:max(top_k, 1)]
        shown = "  ".join(f"{clf.labels[i]} {probs[i]:.3f}" for i in order)
        if clf.answers.thresholds is not None:  # multi-label: what it answers, then the probabilities
            shown = f"[{', '.join(clf.answers.of(probs)['labels']) or '-'}]  {shown}"
        echo(shown)
        done += 1
    return done
