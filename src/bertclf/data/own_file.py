"""`bertclf init FILE`: your own labelled file as the pipeline's data in one step.

Guesses what a newcomer would otherwise read the docs for: whether a csv/tsv has a header row,
which column is the label (few distinct short values, or a name such as ``label``/``class``),
which columns are text (long, mostly distinct values; several are joined, as AG News's title and
description), then reads the whole file with those settings (so a bad line is refused with its
number), shows the label counts, puts the file under ``inputs/data/`` registered with DVC
(``dvc add``: an edit to it re-runs the pipeline from `download`), and sets the ``data`` params.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertclf.config import PARAMS_FILE, DataConfig
from bertclf.data.labels import read_multi_label
from bertclf.data.readers import TABLE_SUFFIXES, base_suffix, is_number, looks_like_data, read_table
from bertclf.data.tracked import is_under
from bertclf.errors import DataError

INPUTS = Path("inputs/data")
LABEL_NAMES = ("label", "labels", "class", "category", "categories", "target", "sentiment", "stars",
               "rating", "y", "topic", "intent", "tags", "tag", "topics", "emotions")
TEXT_NAMES = ("text", "review", "body", "content", "sentence", "document", "comment", "message",
              "description", "tweet", "title", "headline", "question", "abstract")
SAMPLE_ROWS = 5000  # enough to guess the columns; the whole file is read afterwards


SEPARATORS = (",", ";", "|")  # between the labels of a multi-label column ("earn,acq")


@dataclass(frozen=True)
class Guess:
    text_columns: tuple[str, ...]
    label_column: str | None  # None: multi-label 0/1 columns (label_columns)
    columns: tuple[str, ...] | None  # set when the file has no header row
    task: str = "single_label"
    label_columns: tuple[str, ...] | None = None  # multi-label: one 0/1 column per label
    label_separator: str | None = None  # multi-label: the labels of one column, split by this

    def data_config(self, path: str, test_path: str | None) -> DataConfig:
        text = self.text_columns[0] if len(self.text_columns) == 1 else self.text_columns
        return DataConfig(name="file", path=path, test_path=test_path, text_column=text,
                          label_column=self.label_column, columns=self.columns, task=self.task,  # type: ignore[arg-type]
                          label_columns=self.label_columns, label_separator=self.label_separator)

    def read(self, path: Path) -> pd.DataFrame:
        """The whole file with these settings (so a bad line is refused with its number)."""
        if self.task == "multi_label":
            return read_multi_label(path, list(self.text_columns), self.label_column, self.label_columns,
                                    self.label_separator, self.columns)[0]
        return read_table(path, list(self.text_columns), self.label_column, self.columns)


def _sample(path: Path) -> tuple[pd.DataFrame, tuple[str, ...] | None]:
    """The first rows of `path` as strings, and the column names given to a headerless file; a
    file its reader cannot read (an unclosed quote, a damaged parquet) is one line naming it."""
    import pyarrow as pa

    suffix = base_suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"unsupported file type {suffix!r}; bertclf init reads {', '.join(TABLE_SUFFIXES)}",
                        path)
    try:
        frame, names = _read_sample(path, suffix)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pa.ArrowException, OSError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read it as {suffix[1:]} ({first_line})", path) from None
    if not all(isinstance(c, str) for c in frame.columns):  # e.g. a JSON array as a .jsonl line
        raise DataError(f"its rows are not objects with named fields (columns {list(frame.columns)[:5]}); "
                        f"{suffix[1:]} rows must be like {{\"text\": ..., \"label\": ...}}", path)
    return frame, names


def _read_sample(path: Path, suffix: str) -> tuple[pd.DataFrame, tuple[str, ...] | None]:
    if suffix == ".parquet":
        return _as_text(pd.read_parquet(path).head(SAMPLE_ROWS)), None
    if suffix in (".jsonl", ".json"):
        try:
            frame = pd.read_json(path, lines=True, nrows=SAMPLE_ROWS, dtype=False)
        except ValueError as exc:
            raise DataError(f"not JSON Lines ({exc})", path) from None
        return _as_text(frame), None
    sep = "\t" if suffix == ".tsv" else ","
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    try:
        first = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False,
                            quoting=quoting, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot read it as {suffix[1:]} ({first_line})", path) from None
    header = [str(v) for v in first.iloc[0]] if len(first) else []
    headerless = looks_like_data(header)
    names = tuple(f"c{i + 1}" for i in range(len(header))) if headerless else None
    frame = pd.read_csv(path, sep=sep, header=None if headerless else 0, names=names, nrows=SAMPLE_ROWS,
                        dtype=str, keep_default_na=False, quoting=quoting, encoding="utf-8-sig")
    return frame, names


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A sample as strings; a column of lists (multi-label labels) is marked in ``attrs["lists"]``."""
    lists = [str(c) for c in frame.columns if frame[c].map(lambda v: isinstance(v, (list, np.ndarray))).any()]
    out = frame.astype(str)
    out.attrs["lists"] = lists
    return out


def _multi_label(frame: pd.DataFrame, text: Sequence[str] | None, label: str | None) -> dict[str, Any] | None:
    """What makes a sample multi-label, as `Guess` fields: two or more 0/1 columns (when no label
    column is named), a column of lists, or a label column whose values join labels with a
    separator; None for a single-label file."""
    if label is None:
        flags = [str(c) for c in frame.columns if str(c) not in (text or ())
                 and len(frame) and set(frame[c].str.strip()) <= {"0", "1"}]
        if len(flags) >= 2:
            return {"label_column": None, "label_columns": tuple(flags)}
    named = [str(c) for c in frame.columns if str(c).strip().lower() in LABEL_NAMES]
    candidates = [label] if label else [*frame.attrs.get("lists", []), *named]
    for column in candidates:
        if column in frame.attrs.get("lists", []):
            return {"label_column": column}
        values = frame[column].astype(str)
        for sep in SEPARATORS:
            joined = values.str.contains(sep, regex=False)
            items = values.str.split(sep, regex=False).explode().str.strip()
            if joined.mean() >= 0.2 and items.nunique() <= max(2, len(items) // 3):
                return {"label_column": column, "label_separator": sep}
    return None


def _guess_text(frame: pd.DataFrame, labels: set[Any], path: Path | str) -> tuple[str, ...]:
    """The text column(s) among those that are not labels: named like text, else long and mostly
    distinct values."""
    rows = max(len(frame), 1)
    others = [c for c in frame.columns if c not in labels]
    named = [str(c) for c in others if str(c).strip().lower() in TEXT_NAMES[:9]]  # text, review, body...
    texty = [str(c) for c in others if frame[c].str.len().mean() >= 15 and frame[c].nunique() >= 0.5 * rows]
    text = named[:1] or texty
    if not text:
        shown = ", ".join(map(repr, sorted(map(str, labels - {None}))))
        raise DataError(f"no column looks like text (long, mostly distinct values) besides {shown}: "
                        "name it with --text-column", path)
    return tuple(text)


def guess_columns(frame: pd.DataFrame, text: Sequence[str] | None = None, label: str | None = None,
                  columns: tuple[str, ...] | None = None, path: Path | str = "") -> Guess:
    """The text and label columns of a sample of the file (`text` / `label` given win), and
    whether it is multi-label."""
    multi = _multi_label(frame, text, label)
    if multi is not None:
        owned = {*(multi.get("label_columns") or ()), multi["label_column"]}
        return Guess(tuple(text) if text else _guess_text(frame, owned, path), columns=columns,
                     task="multi_label", **multi)
    stats = {c: (frame[c].nunique(), frame[c].str.len().mean()) for c in frame.columns}
    rows = max(len(frame), 1)
    if label is None:
        # a label's values repeat: at most half as many distinct values as rows, and short
        few = [c for c, (n, length) in stats.items() if 2 <= n <= min(100, rows // 2) and length < 40]
        named = [c for c in frame.columns if str(c).strip().lower() in LABEL_NAMES]
        if not (named or few):
            raise DataError(f"no column looks like a label (a few distinct short values) among "
                            f"{', '.join(map(str, frame.columns))}: name it with --label-column", path)
        label = str((named or sorted(few, key=lambda c: stats[c][0]))[0])
    if not text:
        text = _guess_text(frame, {label}, path)
    return Guess(tuple(text), label, columns, task=_single_or_ordinal(frame[label], label))


RATING_NAMES = ("rating", "ratings", "stars", "star", "score", "grade", "overall")


def _single_or_ordinal(values: pd.Series, column: str) -> str:
    """``regression`` for numbers that are not a small set of whole numbers (prices, scores with
    decimals); ``ordinal`` for a column named like a rating whose values are three or more whole
    numbers; codes such as AG News's 1-4 stay classes unless the column says they are ratings."""
    distinct = set(values.dropna().astype(str).str.strip()) - {""}
    numeric = len(distinct) >= 3 and all(is_number(v) for v in distinct)
    if numeric and (len(distinct) > 20 or not all(float(v).is_integer() for v in distinct)):
        return "regression"
    return "ordinal" if numeric and column.strip().lower() in RATING_NAMES else "single_label"



def init_file(path: Path, text: Sequence[str] | None = None, label: str | None = None,
              test: Path | None = None, params: Path = Path(PARAMS_FILE), dvc: bool = True,
              echo: Any = print) -> Guess:
    """Set the project up to train on `path`: see the module docstring."""
    if not path.is_file():
        raise DataError("no such file", path)
    if not params.is_file():
        raise DataError("no params.yaml here: run bertclf init from the project's root", params)
    frame, columns = _sample(path)
    guess = guess_columns(frame, text, label, columns, path)
    train = guess.read(path)
    multi = guess.task == "multi_label"
    counts = (train["label"].explode().dropna() if multi else train["label"]).astype(str).value_counts()
    if len(counts) < 2:
        raise DataError(f"every row has the label {counts.index[0] if len(counts) else None!r} in column "
                        f"{guess.label_column!r}: a classifier needs at least two classes", path)
    if test is not None:
        guess.read(test)
    shown = " + ".join(guess.text_columns)
    echo(f"{path}: {len(train):,} rows{' without a header row' if guess.columns else ''}; text: {shown}; "
         + (_describe_multi(guess, train, len(counts)) if multi else _describe_single(guess, counts)))
    width = max(len(str(c)) for c in counts.index[:30])
    for name, n in counts.head(0 if guess.task == "regression" else 30).items():  # values have no counts
        echo(f"  {name!s:{width}}  {n:>8,}  {100 * n / len(train):5.1f} %")
    if len(counts) > 30 and guess.task != "regression":
        echo(f"  ... and {len(counts) - 30} more classes")
    targets = [_place(p, dvc, echo) for p in (path, test) if p is not None]
    data = guess.data_config(targets[0], targets[1] if test is not None else None)
    _set_params(params, data)
    echo(f"set data.* in {params}; now run: dvc repro (or dvc exp run to keep this as an experiment)")
    return guess


def _describe_single(guess: Guess, counts: pd.Series) -> str:
    """What `init` guessed of a one-label file: classes, ordered ratings or numbers."""
    if guess.task == "regression":
        values = [float(v) for v in counts.index]
        return (f"label: {guess.label_column}, numbers from {min(values):g} to {max(values):g} "
                f"({len(values)} distinct): regression. Classes after all? set data.task: single_label "
                "in params.yaml")
    if guess.task == "ordinal":
        order = sorted(counts.index, key=float)
        return (f"label: {guess.label_column}, ordinal ratings {order[0]} to {order[-1]} ({len(counts)} "
                "values, in numeric order). Not ratings? set data.task: single_label in params.yaml")
    numbers = len(counts) >= 3 and all(is_number(str(v)) for v in counts.index)
    return (f"label: {guess.label_column} ({len(counts)} classes)" + (
        "; if these numbers are ratings, set data.task: ordinal in params.yaml" if numbers else ""))


def _describe_multi(guess: Guess, train: pd.DataFrame, labels: int) -> str:
    """What `init` guessed of a multi-label file, and how to say otherwise."""
    if guess.label_columns:
        how = f"one 0/1 column per label ({', '.join(guess.label_columns)})"
    elif guess.label_separator:
        how = f"column {guess.label_column!r}, labels joined by {guess.label_separator!r}"
    else:
        how = f"column {guess.label_column!r}, a list of labels"
    none = int((train["label"].map(len) == 0).sum())
    return (f"multi-label, {labels} labels as {how}; {none:,} rows have none. Not what you meant? Name the "
            "label column: --label-column NAME (and edit data.task in params.yaml)")


def _place(path: Path, dvc: bool, echo: Any) -> str:
    """`path` under inputs/data/ (copied there unless it is there already), tracked by DVC."""
    target = Path(os.path.relpath(os.path.abspath(path))) if is_under(path, INPUTS) else INPUTS / path.name
    if target.resolve() != path.resolve():
        if target.exists():
            raise DataError(f"{target} exists already: remove it or rename your file", path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        echo(f"copied {path} to {target}")
    if dvc:
        done = subprocess.run([sys.executable, "-m", "dvc", "add", "-q", str(target)], capture_output=True,
                              text=True)
        if done.returncode:
            why = (done.stderr.strip().splitlines() or ["dvc add failed"])[-1]
            raise DataError(f"dvc add {target} failed ({why}); is this a DVC project (dvc init)?", target)
        echo(f"tracked by DVC: {target}.dvc (git add {target}.dvc {target.parent}/.gitignore)")
    return target.as_posix()


def _set_params(params: Path, data: DataConfig) -> None:
    """Write the data section into params.yaml (checked first), keeping its comments and the
    other sections."""
    from ruamel.yaml import YAML

    from bertclf.atomic import atomic_path
    from bertclf.config import load_config

    text = data.text_column
    values = {"name": data.name, "path": data.path, "test_path": data.test_path,
              "text_column": list(text) if isinstance(text, tuple) else text,
              "label_column": data.label_column, "columns": list(data.columns) if data.columns else None,
              "task": data.task, "label_columns": list(data.label_columns) if data.label_columns else None,
              "label_separator": data.label_separator, "label_order": None}
    load_config(params).replace({f"data.{k}": v for k, v in values.items()})  # refuses what would not load
    yaml = YAML()  # round trip: comments and order stay
    doc = yaml.load(params.read_text(encoding="utf-8"))
    for key, value in values.items():
        doc["data"][key] = value
    with atomic_path(params) as tmp, tmp.open("w", encoding="utf-8") as f:
        yaml.dump(doc, f)
