"""Readers for labelled text files. Each returns a DataFrame with columns

``id`` (str), ``text`` (str), ``label`` (str or int, as in the file) and ``where`` (the file and
line or row the example came from, used in error messages).

Every reader decodes UTF-8 strictly and names the file and line of the first bad byte, row or
field, instead of failing later with a traceback that names neither.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from bertclf.errors import DataError

COLUMNS = ["id", "text", "label", "where"]
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


def _open_binary(path: Path) -> IO[bytes]:
    opener = _OPENERS.get(path.suffix)
    return opener(path, "rb") if opener else path.open("rb")  # type: ignore[operator]


def base_suffix(path: str | Path) -> str:
    """The format suffix with any compression suffix removed: `a.jsonl.gz` -> `.jsonl`."""
    p = Path(path)
    if p.suffix in _OPENERS:
        p = p.with_suffix("")
    return p.suffix.lower()


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its newline), decoding UTF-8 strictly."""
    with _open_binary(path) as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"not valid UTF-8 (byte {exc.start + 1} of the line: {raw[exc.start:exc.start + 4]!r});"
                    " re-encode the file as UTF-8",
                    path,
                    number,
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as Excel writes "CSV UTF-8"
            yield number, line.rstrip("\r\n")


def _frame(rows: list[tuple[str, str, Any, str]], path: Path) -> pd.DataFrame:
    if not rows:
        raise DataError("the file holds no examples", path)
    return pd.DataFrame(rows, columns=COLUMNS)


# How spreadsheets and dataframes spell a missing value; as a label, almost always a hole in the data.
MISSING_LABELS = frozenset({"nan", "null", "none", "na", "n/a", "#n/a", "<na>"})


def check_label(label: Any, column: str, path: Path, where: int | str | None) -> None:
    """Refuse a label spelled as a missing value (a literal ``NaN`` would become a class of its own)."""
    if isinstance(label, str) and label.strip().lower() in MISSING_LABELS:
        line = where if isinstance(where, int) else None
        row = f" (row {where})" if isinstance(where, str) else ""
        raise DataError(f"the label in column {column!r} is {label!r}{row}, a missing value: fill it in or "
                        "drop the row", path, line)


def read_label_tsv(path: str | Path) -> pd.DataFrame:
    """Headerless `label<TAB>text` lines (WebKB, R8, R52 as published)."""
    path = Path(path)
    rows = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise DataError("expected 'label<TAB>text' but the line has no tab", path, number)
        if not label.strip():
            raise DataError("the label (before the tab) is empty", path, number)
        check_label(label, "label", path, number)
        rows.append((f"{path.name}:{number}", text, label.strip(), f"{path.name}, line {number}"))
    return _frame(rows, path)


def _get(obj: dict, key: str, path: Path, number: int, hint: str = "") -> Any:
    if key not in obj:
        keys = ", ".join(sorted(map(str, obj)))
        what = f"missing key {key!r} (keys present: {keys})"
        raise DataError(f"{what}; {hint}" if hint else what, path, number)
    return obj[key]


def read_jsonl(path: str | Path, text_key: str, label_key: str | None, id_key: str | None = None,
               hint: str = "") -> pd.DataFrame:
    """JSON Lines, one object per line (plain, .gz, .xz or .bz2); `label_key=None` reads texts only."""
    path = Path(path)
    rows = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON ({exc.msg} at column {exc.colno})", path, number) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, number)
        text = _get(obj, text_key, path, number, hint)
        label = _get(obj, label_key, path, number, hint) if label_key else None
        if text is not None and not isinstance(text, str):
            raise DataError(f"{text_key!r} must be a string, got {type(text).__name__}", path, number)
        if label_key and (label is None or isinstance(label, (dict, list, float))):
            raise DataError(f"{label_key!r} must be a string or an integer, got {label!r}", path, number)
        if label_key:
            check_label(label, label_key, path, number)
        ident = str(_get(obj, id_key, path, number)) if id_key else f"{path.name}:{number}"
        rows.append((ident, text or "", label, f"{path.name}, line {number}"))
    return _frame(rows, path)


COLUMNS_HINT = "set data.text_column / data.label_column"  # for the pipeline's input files
TEXTS_HINT = "pass --text-column NAME (text_column= in Python)"  # for files given to predict


def read_delimited(path: str | Path, text_column: str, label_column: str | None,
                   hint: str = COLUMNS_HINT) -> pd.DataFrame:
    """CSV or TSV with a header row naming the columns (quotes allowed, exact line numbers);
    `label_column=None` reads texts only."""
    path = Path(path)
    delimiter = "\t" if base_suffix(path) == ".tsv" else ","
    with _open_binary(path) as raw:
        # Validate the encoding line by line first, so the error names the line.
        for _ in iter_lines(path):
            pass
        csv.field_size_limit(2**31 - 1)  # long documents are data, not errors
        text_io = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        # TSV fields are taken literally (free text often holds quotes); CSV follows RFC 4180.
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(text_io, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if not header:
            raise DataError("the file is empty (no header row)", path)
        for column in (text_column, label_column):
            if column is not None and column not in header:
                raise DataError(f"no column {column!r} in the header (columns: {', '.join(header)}); {hint}",
                                path, 1)
        ti = header.index(text_column)
        li = header.index(label_column) if label_column else None
        rows = []
        start = reader.line_num + 1
        for record in reader:
            number = start
            start = reader.line_num + 1
            if not record:
                continue
            if len(record) != len(header):
                sep = "tab" if delimiter == "\t" else "comma"
                raise DataError(
                    f"expected {len(header)} {sep}-separated fields as in the header, found {len(record)}",
                    path,
                    number,
                )
            label = record[li].strip() if li is not None else None
            if li is not None and not label:
                raise DataError(f"empty label in column {label_column!r}", path, number)
            if label_column is not None:
                check_label(label, label_column, path, number)
            rows.append((f"{path.name}:{number}", record[ti], label, f"{path.name}, line {number}"))
    return _frame(rows, path)


def read_parquet(path: str | Path, text_column: str, label_column: str | None,
                 hint: str = COLUMNS_HINT) -> pd.DataFrame:
    """A parquet table; `label_column=None` reads texts only."""
    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"cannot read as parquet: {exc}", path) from None
    for column in (text_column, label_column):
        if column is not None and column not in df.columns:
            raise DataError(f"no column {column!r} (columns: {', '.join(map(str, df.columns))}); {hint}",
                            path)
    if df.empty:
        raise DataError("the file holds no examples", path)
    labels = df[label_column] if label_column else pd.Series([None] * len(df), dtype=object)
    missing = labels.isna().to_numpy().nonzero()[0] if label_column else []
    if len(missing):
        raise DataError(f"row {missing[0]} has no label in column {label_column!r}", path)
    if label_column is not None:
        for i, label in enumerate(labels):
            check_label(label, label_column, path, str(i))
    texts = df[text_column].fillna("").astype(str)
    rows = pd.DataFrame({
        "id": [f"{path.name}:{i}" for i in range(len(df))],
        "text": texts.to_numpy(),
        "label": labels.to_numpy(),
        "where": [f"{path.name}, row {i}" for i in range(len(df))],
    })
    return rows


def read_table(path: str | Path, text_column: str | None, label_column: str | None) -> pd.DataFrame:
    """A user's file: csv, tsv, jsonl or parquet with the named text and label columns."""
    path = Path(path)
    suffix = base_suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"unsupported file type {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}", path)
    return _read_columns(path, suffix, text_column or "text", label_column or "label")


def _read_columns(path: Path, suffix: str, text_column: str, label_column: str | None,
                  hint: str = COLUMNS_HINT) -> pd.DataFrame:
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path, text_column, label_column, hint=hint)
    if suffix == ".parquet":
        return read_parquet(path, text_column, label_column, hint)
    return read_delimited(path, text_column, label_column, hint)


TEXT_SUFFIXES = (".txt", *TABLE_SUFFIXES)


def read_texts(path: str | Path, text_column: str | None = None) -> pd.DataFrame:
    """Texts to classify: `.txt` (one per line, blank lines skipped) or a table with a text column.

    Returns ``id``, ``text`` and ``where`` columns (``label`` is None)."""
    path = Path(path)
    suffix = base_suffix(path)
    if suffix == ".txt":
        rows = [(f"{path.name}:{n}", line, None, f"{path.name}, line {n}")
                for n, line in iter_lines(path) if line.strip()]
        return _frame(rows, path)
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"unsupported file type {suffix!r}; use one of {', '.join(TEXT_SUFFIXES)}", path)
    return _read_columns(path, suffix, text_column or "text", None, TEXTS_HINT)
