"""Labels of every kind, as files hold them, made into what `split` numbers.

- ``single_label``: one value per document, read by the readers as they are.
- ``multi_label``: any number of labels per document (none at all included), given as one 0/1
  column per label (``data.label_columns``), as one column of text joined by
  ``data.label_separator`` (``"earn,acq"``), or as a JSON list in jsonl / parquet. Each becomes a
  tuple of label names in ``label``; `split` turns those into 0/1 rows.
- ``ordinal``: one value per document, as for single-label, from an ordered set: numbers in
  numeric order, or names in the order ``data.label_order`` gives (`ordinal_order`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertclf.data.readers import TextColumns, read_table
from bertclf.errors import DataError

ALL_BUT_TEXT = "*"  # data.label_columns: ["*"], every column but the text


def read_multi_label(path: Path, text_column: TextColumns | None, label_column: str | None,
                     label_columns: Sequence[str] | None, separator: str | None,
                     columns: Sequence[str] | None = None,
                     suffix: str | None = None) -> tuple[pd.DataFrame, list[str] | None]:
    """A multi-label file: the rows with ``label`` a tuple of label names, and the label order
    when the file defines one (its 0/1 columns), else None."""
    frame = read_table(path, text_column, None, columns, labelled=False, keep=True, suffix=suffix)
    others: pd.DataFrame = frame.attrs.get("others", pd.DataFrame(index=frame.index))
    if label_columns:
        names = [c for c in others.columns] if list(label_columns) == [ALL_BUT_TEXT] else list(label_columns)
        missing = [c for c in names if c not in others.columns]
        if missing or not names:
            raise DataError(f"no column {missing[0] if missing else ALL_BUT_TEXT!r} for data.label_columns "
                            f"(columns besides the text: {', '.join(map(str, others.columns))})", path)
        frame["label"] = _from_indicators(others[names], frame["where"])
        return frame, [str(n) for n in names]
    column = label_column or "label"
    if column not in others.columns:
        raise DataError(f"no label column {column!r} (columns besides the text: "
                        f"{', '.join(map(str, others.columns))}); set data.label_column or "
                        "data.label_columns", path)
    cells = zip(others[column], frame["where"], strict=True)
    frame["label"] = [_as_names(value, separator, column, where) for value, where in cells]
    return frame, None


def _from_indicators(table: pd.DataFrame, where: pd.Series) -> list[tuple[str, ...]]:
    """Rows of 0/1 cells (numbers or their text) as the names of the columns that hold 1."""
    names = [str(c) for c in table.columns]
    values = table.to_numpy(dtype=object)
    out = []
    for row, place in zip(values, where, strict=True):
        on = []
        for name, cell in zip(names, row, strict=True):
            text = str(cell).strip()
            if text in ("1", "1.0", "True", "true"):
                on.append(name)
            elif text not in ("0", "0.0", "False", "false"):
                raise DataError(f"{place}: column {name!r} holds {cell!r}, not 0 or 1 (a label column of "
                                "data.label_columns is 1 where the document has the label)")
        out.append(tuple(on))
    return out


def _as_names(value: Any, separator: str | None, column: str, where: str) -> tuple[str, ...]:
    """A label cell as label names: a list (JSON, parquet), or text split by `separator`."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    elif isinstance(value, str) and separator:
        items = value.split(separator)
    elif value is None or (isinstance(value, float) and np.isnan(value)):
        items = []
    else:
        hint = ("set data.label_separator to the character between labels" if isinstance(value, str)
                else "give a list of labels")
        raise DataError(f"{where}: column {column!r} holds {value!r}, not a list of labels: {hint}")
    names = []
    for item in items:
        if not isinstance(item, (str, int)) or isinstance(item, bool):
            raise DataError(f"{where}: column {column!r} holds {item!r} among its labels; labels are "
                            "strings or integers")
        name = str(item).strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def label_matrix(labels: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    """Tuples of label names as 0/1 rows ``[len(labels), len(names)]`` (int8), in `names`' order."""
    index = {name: i for i, name in enumerate(names)}
    out = np.zeros((len(labels), len(names)), dtype=np.int8)
    for row, doc in enumerate(labels):
        out[row, [index[n] for n in doc]] = 1
    return out


def ordinal_order(raw: Any, label_order: Sequence[str] | None) -> list[str]:
    """The classes of an ordinal dataset, lowest first: `label_order`, else the dataset's own
    order when it has one, else its values sorted as numbers. Refuses values that are not numbers
    when no order is given, and (with an order) values outside it, naming the row."""
    frames = [("train", raw.train)] + ([("test", raw.test)] if raw.test is not None else [])
    seen: dict[str, str] = {}  # value -> where it first occurs
    for _, frame in frames:
        for value, where in zip(frame["label"], frame["where"], strict=True):
            seen.setdefault(str(value).strip(), where)
    if label_order:
        order = [str(v).strip() for v in label_order]
        outside = [v for v in seen if v not in order]
        if outside:
            raise DataError(f"{seen[outside[0]]}: label {outside[0]!r} is not in data.label_order "
                            f"({', '.join(order)}); add it there in its place")
        return order
    if raw.labels:
        return [str(v) for v in raw.labels]
    numbers = {}
    for value, where in seen.items():
        try:
            numbers[value] = float(value)
        except ValueError:
            raise DataError(f"{where}: label {value!r} is not a number, so data.task: ordinal cannot tell "
                            "its place: list the labels from lowest to highest in data.label_order") from None
    return sorted(numbers, key=numbers.__getitem__)


def rename_labels(raw: Any, pairs: Sequence[str]) -> None:
    """Give coded labels their names (``data.label_names``: ``"1=World"``…), in place: every row's
    label (each of a multi-label row's) and the dataset's label order. A code without a name is
    one line naming the row."""
    names = {code.strip(): name.strip() for code, name in (p.split("=", 1) for p in pairs)}

    def named(value: Any, where: str) -> Any:
        if isinstance(value, tuple):
            return tuple(named(v, where) for v in value)
        code = str(value).strip()
        if code not in names:
            raise DataError(f"{where}: label {code!r} has no name in data.label_names "
                            f"({', '.join(pairs)}); add {code}=NAME")
        return names[code]

    for frame in (raw.train, raw.test):
        if frame is not None:
            frame["label"] = [named(v, w) for v, w in zip(frame["label"], frame["where"], strict=True)]
    if raw.labels:
        raw.labels = [named(v, "the dataset's label list") for v in raw.labels]
