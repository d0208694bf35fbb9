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
from collections.abc import Iterator, Sequence
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


TextColumns = str | Sequence[str]
JOIN = " "  # several text columns become one text, joined as transformers' run_classification joins them


def _names(text_columns: TextColumns) -> list[str]:
    return [text_columns] if isinstance(text_columns, str) else list(text_columns)


def _text_of(values: Sequence[Any]) -> str:
    return JOIN.join(str(v) for v in values if v is not None and str(v) != "")


def read_jsonl(path: str | Path, text_key: TextColumns, label_key: str | None, id_key: str | None = None,
               hint: str = "", keep: bool = False) -> pd.DataFrame:
    """JSON Lines, one object per line (plain, .gz, .xz or .bz2); `label_key=None` reads texts only.
    Several text keys are joined into one text; `keep` also returns every other key as a column."""
    path = Path(path)
    keys = _names(text_key)
    rows, others = [], []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON ({exc.msg} at column {exc.colno})", path, number) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__}", path, number)
        parts = [_get(obj, key, path, number, hint) for key in keys]
        label = _get(obj, label_key, path, number, hint) if label_key else None
        for key, part in zip(keys, parts, strict=True):
            if part is not None and not isinstance(part, str):
                raise DataError(f"{key!r} must be a string, got {type(part).__name__}", path, number)
        # a number may be a class, a rating or a value (data.task); true / false is none of them
        if label_key and (label is None or isinstance(label, (dict, list, bool))):
            raise DataError(f"{label_key!r} must be a string or a number, got {json.dumps(label)}", path,
                            number)
        if label_key:
            check_label(label, label_key, path, number)
        ident = str(_get(obj, id_key, path, number)) if id_key else f"{path.name}:{number}"
        rows.append((ident, _text_of(parts), label, f"{path.name}, line {number}"))
        if keep:
            others.append({k: v for k, v in obj.items() if k not in keys})
    return _with_others(_frame(rows, path), others if keep else None)


def _with_others(frame: pd.DataFrame, others: list[dict[str, Any]] | pd.DataFrame | None) -> pd.DataFrame:
    """Attach the input's other columns as ``frame.attrs["others"]`` (for `predict`, which writes them
    back beside each prediction)."""
    if others is not None:
        frame.attrs["others"] = others if isinstance(others, pd.DataFrame) else pd.DataFrame(others)
    return frame


COLUMNS_HINT = "set data.text_column / data.label_column"  # for the pipeline's input files
TEXTS_HINT = "pass --text-column NAME (text_column= in Python)"  # for files given to predict
NO_HEADER_HINT = ("the first line looks like data, not column names: if the file has no header row, "
                  "name its columns with {}")
# how a user names the columns of a header-less file: for the pipeline, and for predict
NAME_COLUMNS = {COLUMNS_HINT: "data.columns (e.g. data.columns: [{}])",
                TEXTS_HINT: "--columns (e.g. --columns {}; columns= in Python)"}


def is_number(text: str) -> bool:
    """Whether `text` reads as a number (``"3"``, ``"4.5"``, ``"-1e3"``)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def looks_like_data(header: Sequence[str]) -> bool:
    """A first row of values rather than names: a number, a long text, or a repeated cell."""
    return any(is_number(c) or len(c) > 40 for c in header) or len(set(header)) < len(header)


def read_delimited(path: str | Path, text_column: TextColumns, label_column: str | None,
                   hint: str = COLUMNS_HINT, columns: Sequence[str] | None = None,
                   keep: bool = False, suffix: str | None = None) -> pd.DataFrame:
    """CSV or TSV (quotes allowed, exact line numbers) with a header row naming the columns, or,
    when `columns` names them, without one. Several text columns are joined into one text;
    `label_column=None` reads texts only; `keep` also returns the other columns."""
    path = Path(path)
    delimiter = "\t" if (suffix or base_suffix(path)) == ".tsv" else ","
    wanted = _names(text_column)
    with _open_binary(path) as raw:
        # Validate the encoding line by line first, so the error names the line.
        for _ in iter_lines(path):
            pass
        csv.field_size_limit(2**31 - 1)  # long documents are data, not errors
        text_io = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        # TSV fields are taken literally (free text often holds quotes); CSV follows RFC 4180.
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(text_io, delimiter=delimiter, quoting=quoting)
        header = list(columns) if columns else next(reader, None)
        if not header:
            raise DataError("the file is empty (no header row)", path)
        if len(set(header)) < len(header) and columns:
            raise DataError(f"data.columns names a column twice ({', '.join(header)})", path)
        for column in (*wanted, label_column):
            if column is not None and column not in header:
                if columns:
                    raise DataError(f"no column {column!r} in data.columns ({', '.join(header)})", path)
                shown = ", ".join(header) if len(", ".join(header)) < 200 else ", ".join(header)[:197] + "..."
                names = [f"c{i + 1}" for i in range(len(header))]
                how = NAME_COLUMNS.get(hint, NAME_COLUMNS[COLUMNS_HINT])
                why = (NO_HEADER_HINT.format(how.format((", " if hint == COLUMNS_HINT else ",").join(names)))
                       if looks_like_data(header) else hint)
                raise DataError(f"no column {column!r} in the header (columns: {shown}); {why}", path, 1)
        tis = [header.index(c) for c in wanted]
        li = header.index(label_column) if label_column else None
        rest = [i for i in range(len(header)) if i not in tis]
        rows, others = [], []
        start = reader.line_num + 1
        for record in reader:
            number = start
            start = reader.line_num + 1
            if not record:
                continue
            if len(record) != len(header):
                sep = "tab" if delimiter == "\t" else "comma"
                where = "names in data.columns" if columns else "in the header"
                raise DataError(
                    f"expected {len(header)} {sep}-separated fields as {where}, found {len(record)}",
                    path,
                    number,
                )
            label = record[li].strip() if li is not None else None
            if li is not None and not label:
                raise DataError(f"empty label in column {label_column!r}", path, number)
            if label_column is not None:
                check_label(label, label_column, path, number)
            rows.append((f"{path.name}:{number}", _text_of([record[i] for i in tis]), label,
                         f"{path.name}, line {number}"))
            if keep:
                others.append({header[i]: record[i] for i in rest})
    return _with_others(_frame(rows, path), others if keep else None)


def read_parquet(path: str | Path, text_column: TextColumns, label_column: str | None,
                 hint: str = COLUMNS_HINT, keep: bool = False) -> pd.DataFrame:
    """A parquet table; several text columns are joined into one text; `label_column=None` reads
    texts only; `keep` also returns the other columns."""
    path = Path(path)
    wanted = _names(text_column)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(f"cannot read as parquet: {exc}", path) from None
    for column in (*wanted, label_column):
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
    texts = (df[wanted].astype(object).where(df[wanted].notna(), None).apply(_text_of, axis=1)
             if len(wanted) > 1 else df[wanted[0]].fillna("").astype(str))
    rows = pd.DataFrame({
        "id": [f"{path.name}:{i}" for i in range(len(df))],
        "text": texts.to_numpy(),
        "label": labels.to_numpy(),
        "where": [f"{path.name}, row {i}" for i in range(len(df))],
    })
    return _with_others(rows, df.drop(columns=wanted).reset_index(drop=True) if keep else None)


def read_table(path: str | Path, text_column: TextColumns | None, label_column: str | None,
               columns: Sequence[str] | None = None, labelled: bool = True, keep: bool = False,
               suffix: str | None = None) -> pd.DataFrame:
    """A user's file: csv, tsv, jsonl or parquet with the named text and label columns (several
    text columns are joined into one text). `columns` names the columns of a csv/tsv file that has
    no header row. Not `labelled`: no label column is read, and `keep` gives the other columns in
    ``.attrs["others"]`` (where multi-label files keep theirs). `suffix` reads a file whose name
    does not say its format (``.tsv``)."""
    path = Path(path)
    suffix = suffix or base_suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"unsupported file type {suffix!r}; use one of {', '.join(TABLE_SUFFIXES)}", path)
    return _read_columns(path, suffix, text_column or "text", (label_column or "label") if labelled else None,
                         columns=columns, keep=keep)


def _read_columns(path: Path, suffix: str, text_column: TextColumns, label_column: str | None,
                  hint: str = COLUMNS_HINT, columns: Sequence[str] | None = None,
                  keep: bool = False) -> pd.DataFrame:
    if columns and suffix not in (".csv", ".tsv"):
        raise DataError("data.columns names the columns of a csv or tsv file without a header row; "
                        f"a {suffix} file names its own: remove data.columns", path)
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path, text_column, label_column, hint=hint, keep=keep)
    if suffix == ".parquet":
        return read_parquet(path, text_column, label_column, hint, keep=keep)
    return read_delimited(path, text_column, label_column, hint, columns=columns, keep=keep, suffix=suffix)


TEXT_SUFFIXES = (".txt", *TABLE_SUFFIXES)


def read_texts(path: str | Path, text_column: TextColumns | None = None,
               columns: Sequence[str] | None = None, keep: bool = False) -> pd.DataFrame:
    """Texts to classify: `.txt` (one per line, blank lines skipped) or a table with a text column
    (or several, joined).

    Returns ``id``, ``text`` and ``where`` columns (``label`` is None); with `keep`, the table's
    other columns are in ``.attrs["others"]``, row for row."""
    path = Path(path)
    suffix = base_suffix(path)
    if suffix == ".txt":
        rows = [(f"{path.name}:{n}", line, None, f"{path.name}, line {n}")
                for n, line in iter_lines(path) if line.strip()]
        return _frame(rows, path)
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"unsupported file type {suffix!r}; use one of {', '.join(TEXT_SUFFIXES)}", path)
    return _read_columns(path, suffix, text_column or "text", None, TEXTS_HINT, columns, keep)


def headerless_columns(path: str | Path, columns: Sequence[str] | None,
                       text_column: TextColumns) -> tuple[str, ...] | None:
    """`columns` — the names a model's header-less training file was given — for a csv/tsv `path`
    of the same shape: its first row has as many fields and names none of the text columns. Else
    None (the file names its own columns, or is another shape, for the reader to say so)."""
    path = Path(path)
    suffix = base_suffix(path)
    if not columns or suffix not in (".csv", ".tsv"):
        return None
    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
            first = next(csv.reader(text, delimiter="\t" if suffix == ".tsv" else ",", quoting=quoting), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # the reader names the file, line and fault
    if first is None or len(first) != len(columns) or set(_names(text_column)) & set(first):
        return None
    return tuple(columns)
