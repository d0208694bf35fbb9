"""Readers of labelled text files: what they return, and the errors for bad lines."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
from pathlib import Path

import pandas as pd
import pytest

from bertclf.data.readers import base_suffix, iter_lines, read_jsonl, read_label_tsv, read_parquet, read_table
from bertclf.errors import DataError


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def assert_where(err: pytest.ExceptionInfo[DataError], name: str, line: int | None) -> None:
    msg = str(err.value)
    assert name in msg, msg
    if line is not None:
        assert re.search(rf"\bline {line}\b", msg), msg
        assert err.value.line == line or f"line {line}" in msg


def test_base_suffix() -> None:
    assert base_suffix("a.jsonl.gz") == ".jsonl"
    assert base_suffix("a.TSV") == ".tsv"
    assert base_suffix("x/review.json.xz") == ".json"


def test_iter_lines_numbers_and_strips_newlines(tmp_path: Path) -> None:
    f = write(tmp_path / "a.txt", "one\r\ntwo\n\nfour")
    assert list(iter_lines(f)) == [(1, "one"), (2, "two"), (3, ""), (4, "four")]


# --- label<TAB>text --------------------------------------------------------------------------

def test_label_tsv(tmp_path: Path) -> None:
    f = write(tmp_path / "train.tsv", "earn\tprofit up \nacq\tbuys\tshares\n\ncrude\t\n")
    df = read_label_tsv(f)
    assert list(df.columns) == ["id", "text", "label", "where"]
    assert df["label"].tolist() == ["earn", "acq", "crude"]
    assert df["text"].tolist() == ["profit up ", "buys\tshares", ""]  # text kept as published
    assert df["where"].tolist() == ["train.tsv, line 1", "train.tsv, line 2", "train.tsv, line 4"]
    assert df["id"].is_unique


def test_label_tsv_row_without_tab(tmp_path: Path) -> None:
    f = write(tmp_path / "train.tsv", "earn\tok\nacq\tok\nthis line has no tab\n")
    with pytest.raises(DataError, match="no tab") as err:
        read_label_tsv(f)
    assert_where(err, "train.tsv", 3)


def test_label_tsv_empty_label(tmp_path: Path) -> None:
    f = write(tmp_path / "train.tsv", "earn\tok\n\ttext without label\n")
    with pytest.raises(DataError, match="label") as err:
        read_label_tsv(f)
    assert_where(err, "train.tsv", 2)


def test_label_tsv_non_utf8(tmp_path: Path) -> None:
    f = write(tmp_path / "train.tsv", b"earn\tok\nearn\tok\nacq\tcaf\xe9 latte\n")
    with pytest.raises(DataError, match="UTF-8") as err:
        read_label_tsv(f)
    assert_where(err, "train.tsv", 3)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_label_tsv_empty_file(tmp_path: Path, content: str) -> None:
    f = write(tmp_path / "train.tsv", content)
    with pytest.raises(DataError, match="no examples") as err:
        read_label_tsv(f)
    assert_where(err, "train.tsv", None)


# --- JSON lines ------------------------------------------------------------------------------

def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("opener", [None, gzip.open, lzma.open, bz2.open], ids=["plain", "gz", "xz", "bz2"])
def test_jsonl_plain_and_compressed(tmp_path: Path, opener: object) -> None:
    text = _jsonl([{"text": "good", "label": "pos", "k": 1}, {"text": None, "label": 3}])
    suffix = {None: "", gzip.open: ".gz", lzma.open: ".xz", bz2.open: ".bz2"}[opener]  # type: ignore[index]
    f = tmp_path / f"d.jsonl{suffix}"
    if opener is None:
        write(f, text)
    else:
        with opener(f, "wt", encoding="utf-8") as out:  # type: ignore[operator]
            out.write(text)
    df = read_jsonl(f, "text", "label")
    assert df["text"].tolist() == ["good", ""]
    assert df["label"].tolist() == ["pos", 3]
    assert df["where"].tolist() == [f"{f.name}, line 1", f"{f.name}, line 2"]


def test_jsonl_id_key(tmp_path: Path) -> None:
    f = write(tmp_path / "r.json", _jsonl([{"text": "a", "stars": 5, "review_id": "r1"}]))
    assert read_jsonl(f, "text", "stars", "review_id")["id"].tolist() == ["r1"]


def test_jsonl_malformed_line(tmp_path: Path) -> None:
    f = write(tmp_path / "d.jsonl", _jsonl([{"text": "a", "label": 1}] * 3) + '{"text": "b", "label": \n')
    with pytest.raises(DataError, match="malformed JSON") as err:
        read_jsonl(f, "text", "label")
    assert_where(err, "d.jsonl", 4)


def test_jsonl_line_that_is_not_an_object(tmp_path: Path) -> None:
    f = write(tmp_path / "d.jsonl", _jsonl([{"text": "a", "label": 1}]) + "[1, 2]\n")
    with pytest.raises(DataError, match="expected a JSON object") as err:
        read_jsonl(f, "text", "label")
    assert_where(err, "d.jsonl", 2)


@pytest.mark.parametrize("missing", ["text", "label"])
def test_jsonl_missing_key(tmp_path: Path, missing: str) -> None:
    row = {"text": "a", "label": 1}
    bad = {k: v for k, v in row.items() if k != missing}
    f = write(tmp_path / "d.jsonl", _jsonl([row, row, bad]))
    with pytest.raises(DataError, match=f"missing key '{missing}'") as err:
        read_jsonl(f, "text", "label")
    assert_where(err, "d.jsonl", 3)


@pytest.mark.parametrize("label", [None, True, [1], {"a": 1}])
def test_jsonl_bad_label_values(tmp_path: Path, label: object) -> None:
    f = write(tmp_path / "d.jsonl", _jsonl([{"text": "a", "label": 1}, {"text": "b", "label": label}]))
    with pytest.raises(DataError, match="must be a string or a number") as err:
        read_jsonl(f, "text", "label")
    assert_where(err, "d.jsonl", 2)


def test_jsonl_number_labels_are_read_as_numbers(tmp_path: Path) -> None:
    """A regression target or a half-star rating is a float in JSON."""
    f = write(tmp_path / "d.jsonl", _jsonl([{"text": "a", "label": 2.5}, {"text": "b", "label": 4}]))
    assert read_jsonl(f, "text", "label")["label"].tolist() == [2.5, 4]


def test_jsonl_non_string_text(tmp_path: Path) -> None:
    f = write(tmp_path / "d.jsonl", _jsonl([{"text": 12, "label": 1}]))
    with pytest.raises(DataError, match="must be a string") as err:
        read_jsonl(f, "text", "label")
    assert_where(err, "d.jsonl", 1)


def test_jsonl_non_utf8_inside_compressed_file(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl.gz"
    with gzip.open(f, "wb") as out:
        out.write(b'{"text": "ok", "label": 1}\n{"text": "caf\xe9", "label": 1}\n')
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        read_jsonl(f, "text", "label")
    assert_where(err, "d.jsonl.gz", 2)


# --- CSV / TSV with a header -----------------------------------------------------------------

def test_csv_with_quotes_and_multiline_fields(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", 'id,text,label\n1,"hello, world",pos\n2,"two\nlines",neg\n3,plain,pos\n')
    df = read_table(f, None, None)
    assert df["text"].tolist() == ["hello, world", "two\nlines", "plain"]
    assert df["label"].tolist() == ["pos", "neg", "pos"]
    assert df["where"].tolist() == ["d.csv, line 2", "d.csv, line 3", "d.csv, line 5"]


def test_tsv_with_header_takes_quotes_literally(tmp_path: Path) -> None:
    f = write(tmp_path / "d.tsv", 'review\tsentiment\nshe said "hi\tpos\n"quoted"\tneg\n')
    df = read_table(f, "review", "sentiment")
    assert df["text"].tolist() == ['she said "hi', '"quoted"']


def test_tsv_with_header_row_without_tab(tmp_path: Path) -> None:
    f = write(tmp_path / "d.tsv", "text\tlabel\nfine\tpos\nfine\tneg\nno tab on this row\n")
    with pytest.raises(DataError, match="found 1") as err:
        read_table(f, None, None)
    assert_where(err, "d.tsv", 4)


def test_csv_row_with_wrong_field_count_after_multiline_field(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", 'text,label\n"a\nb\nc",pos\nonly one field\n')
    with pytest.raises(DataError, match="expected 2 comma-separated fields") as err:
        read_table(f, None, None)
    assert_where(err, "d.csv", 5)


@pytest.mark.parametrize("column", ["text", "label"])
def test_csv_missing_column(tmp_path: Path, column: str) -> None:
    header = "body,label" if column == "text" else "text,stars"
    f = write(tmp_path / "d.csv", f"{header}\na,b\n")
    with pytest.raises(DataError, match=f"no column '{column}'") as err:
        read_table(f, None, None)
    assert_where(err, "d.csv", 1)
    assert "data.text_column" in str(err.value)


def test_csv_empty_label(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", "text,label\na,pos\nb,  \n")
    with pytest.raises(DataError, match="empty label") as err:
        read_table(f, None, None)
    assert_where(err, "d.csv", 3)


def test_csv_non_utf8(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", b"text,label\na,pos\nb,pos\n\xff\xfe,neg\n")
    with pytest.raises(DataError, match="not valid UTF-8") as err:
        read_table(f, None, None)
    assert_where(err, "d.csv", 4)


@pytest.mark.parametrize(("content", "what"), [("", "no header"), ("text,label\n", "no examples")])
def test_csv_empty_file(tmp_path: Path, content: str, what: str) -> None:
    f = write(tmp_path / "d.csv", content)
    with pytest.raises(DataError, match=what) as err:
        read_table(f, None, None)
    assert_where(err, "d.csv", None)


def test_csv_with_utf8_bom_is_read(tmp_path: Path) -> None:
    f = write(tmp_path / "d.csv", "\ufefftext,label\nhello,pos\n".encode())
    assert read_table(f, None, None)["text"].tolist() == ["hello"]


def test_unsupported_suffix(tmp_path: Path) -> None:
    f = write(tmp_path / "d.xlsx", b"x")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'") as err:
        read_table(f, None, None)
    assert_where(err, "d.xlsx", None)


# --- parquet ---------------------------------------------------------------------------------

def test_parquet(tmp_path: Path) -> None:
    f = tmp_path / "d.parquet"
    pd.DataFrame({"body": ["a", None, "c"], "y": [1, 0, 1]}).to_parquet(f)
    df = read_parquet(f, "body", "y")
    assert df["text"].tolist() == ["a", "", "c"]
    assert df["label"].tolist() == [1, 0, 1]
    assert df["where"].tolist() == ["d.parquet, row 0", "d.parquet, row 1", "d.parquet, row 2"]


def test_parquet_missing_column_and_missing_label(tmp_path: Path) -> None:
    f = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}).to_parquet(f)
    with pytest.raises(DataError, match="no column 'y'") as err:
        read_parquet(f, "text", "y")
    assert "d.parquet" in str(err.value)
    with pytest.raises(DataError, match=r"row 1 has no label") as err:
        read_parquet(f, "text", "label")
    assert "d.parquet" in str(err.value)


def test_parquet_empty_and_corrupt(tmp_path: Path) -> None:
    f = tmp_path / "d.parquet"
    pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)}).to_parquet(f)
    with pytest.raises(DataError, match="no examples"):
        read_parquet(f, "text", "label")
    bad = write(tmp_path / "bad.parquet", b"not parquet at all")
    with pytest.raises(DataError, match="cannot read as parquet") as err:
        read_parquet(bad, "text", "label")
    assert "bad.parquet" in str(err.value)


def test_crlf_line_endings(tmp_path: Path) -> None:
    f = write(tmp_path / "train.tsv", "earn\tprofit up\r\nacq\tbuys\r\n")
    assert read_label_tsv(f)["text"].tolist() == ["profit up", "buys"]
    f = write(tmp_path / "d.tsv", "text\tlabel\r\nfine\tpos\r\nbad\tneg\r\n")
    df = read_table(f, None, None)
    assert df["text"].tolist() == ["fine", "bad"] and df["label"].tolist() == ["pos", "neg"]
    f = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\r\n{"text": "b", "label": 2}\r\n')
    assert read_jsonl(f, "text", "label")["text"].tolist() == ["a", "b"]
