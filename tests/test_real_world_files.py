"""Files as they are published: no header row, the text over several columns (AG News:
``class,title,description``), and Cade12's ``label<TAB>text`` files, all written here."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bertclf.config import ConfigError, DataConfig, from_dict
from bertclf.data.datasets import CADE_FILES, download_dataset, load_raw, recipe
from bertclf.data.readers import read_table, read_texts
from bertclf.errors import ArtifactNotFound, DataError

AG_NEWS = (
    '3,"Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, Wall Street\'s '
    'dwindling band of ultra-cynics, are seeing green again."\n'
    '4,"Google IPO faces Playboy slip-up","The bidding gets underway in Google\'s much-anticipated '
    'initial public offering, even as questions continue."\n'
    '2,"Phelps wins, again","ATHENS - Michael Phelps won his sixth gold medal, a ""record"" night."\n'
)


def test_a_headerless_csv_is_read_by_named_columns_with_the_text_joined(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(AG_NEWS, encoding="utf-8")
    df = read_table(path, ["title", "description"], "label", columns=["label", "title", "description"])
    assert df["label"].tolist() == ["3", "4", "2"]
    assert df["text"][0] == ("Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, "
                             "Wall Street's dwindling band of ultra-cynics, are seeing green again.")
    assert df["text"][2].endswith('a "record" night.')
    assert df["where"].tolist() == ["train.csv, line 1", "train.csv, line 2", "train.csv, line 3"]


def test_a_headerless_csv_read_with_a_header_says_to_name_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(AG_NEWS, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_table(path, None, None)
    message = str(err.value)
    assert "train.csv" in message and "looks like data" in message
    assert "data.columns: [c1, c2, c3]" in message and "data.text_column" not in message


def test_a_real_header_still_gets_the_column_hint(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("review,stars\ngood,5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"set data.text_column / data.label_column"):
        read_table(path, None, None)


def test_headerless_rows_must_have_as_many_fields_as_named_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("a\tfirst text\nb\tsecond\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"expected 2 tab-separated fields as names in data.columns, found 3"):
        read_table(path, "text", "label", columns=["label", "text"])
    with pytest.raises(DataError, match=r"no column 'body' in data.columns"):
        read_table(path, "body", "label", columns=["label", "text"])


def test_columns_are_refused_for_formats_that_name_their_own(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "x", "label": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"remove data.columns"):
        read_table(path, None, None, columns=["text", "label"])


def test_several_text_keys_and_columns_in_jsonl_and_parquet(tmp_path: Path) -> None:
    records = [{"title": "Big win", "body": "The team won.", "label": "sport"},
               {"title": "Rates up", "body": None, "label": "business"}]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    parquet = tmp_path / "a.parquet"
    pd.DataFrame(records).to_parquet(parquet)
    for path in (jsonl, parquet):
        df = read_table(path, ["title", "body"], "label")
        assert df["text"].tolist() == ["Big win The team won.", "Rates up"], path


def test_params_take_a_list_of_text_columns_and_column_names() -> None:
    data = from_dict({"data": {"name": "file", "path": "inputs/data/ag.csv",
                               "text_column": ["title", "description"],
                               "columns": ["label", "title", "description"]}}).data
    assert data.text_column == ("title", "description") and data.columns == ("label", "title", "description")
    with pytest.raises(ConfigError, match=r"data.columns=\[1, 2\] must be a list of strings or null"):
        from_dict({"data": {"columns": [1, 2]}})
    with pytest.raises(ConfigError, match=r"data.text_column must name at least one column"):
        from_dict({"data": {"text_column": []}})


def test_predict_keeps_the_other_columns_of_a_headerless_file(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("n1,Stocks fall,Markets slid today\nn2,Cup final,A late goal\n", encoding="utf-8")
    df = read_texts(path, ["title", "body"], columns=["id", "title", "body"], keep=True)
    assert df["text"].tolist() == ["Stocks fall Markets slid today", "Cup final A late goal"]
    assert df.attrs["others"].to_dict("list") == {"id": ["n1", "n2"]}


def cade_lines(n: int, offset: int = 0) -> str:
    labels = ["01_sociedade", "02_servicos", "03_lazer"]
    return "".join(f"{labels[i % 3]}\tpagin {i + offset} de exempl sobr {labels[i % 3][3:]}\n"
                   for i in range(n))


def test_cade12_from_the_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "cade12").mkdir(parents=True)
    (mirror / "cade12" / CADE_FILES["train"]).write_text(cade_lines(30), encoding="utf-8")
    (mirror / "cade12" / CADE_FILES["test"]).write_text(cade_lines(9, 100), encoding="utf-8")
    data = DataConfig(name="cade12")
    manifest = download_dataset(data, tmp_path / "raw", mirror)
    assert {f["file"] for f in manifest["files"].values()} == set(CADE_FILES.values())
    raw = load_raw(tmp_path / "raw", data)
    assert (len(raw.train), len(raw.test)) == (30, 9)
    assert sorted(raw.train["label"].unique()) == ["01_sociedade", "02_servicos", "03_lazer"]
    assert raw.test["text"][0] == "pagin 100 de exempl sobr sociedade"


def test_cade12_from_your_own_files_and_a_clear_error_without_them(tmp_path: Path) -> None:
    own = tmp_path / "inputs" / "data"
    own.mkdir(parents=True)
    (own / "train.txt").write_text(cade_lines(12), encoding="utf-8")
    (own / "test.txt").write_text(cade_lines(6, 50), encoding="utf-8")
    data = DataConfig(name="cade12", path=str(own / "train.txt"), test_path=str(own / "test.txt"))
    download_dataset(data, tmp_path / "raw", mirror=None)
    raw = load_raw(tmp_path / "raw", data)
    assert (len(raw.train), len(raw.test)) == (12, 6)
    with pytest.raises(ArtifactNotFound, match=r"cade-train-stemmed.txt.*<mirror>/cade12/.*data.path"):
        download_dataset(DataConfig(name="cade12"), tmp_path / "raw2", mirror=tmp_path / "empty")
    assert not (tmp_path / "raw2").exists()
    assert recipe(DataConfig(name="cade12")).description.startswith("Cade12")
