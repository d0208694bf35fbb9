"""The named datasets read from the shared mirror match the counts their READMEs publish.

The numbers below are copied from ../shared/data/<dataset>/README.md. Deduplication removes,
from train/val, every extra copy of a repeated text plus the first copy of each text that is
also in test: `removed = extra rows within train + distinct train/test overlap texts`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bertclf.config import DataConfig, SplitConfig
from bertclf.data.datasets import RECIPES, RawDataset, download_dataset, load_raw
from bertclf.data.splitting import Splits, make_splits

SPLIT = SplitConfig(val_fraction=0.1, test_fraction=0.1, seed=42)

R8_LABELS = {  # label: (train, test)
    "earn": (2840, 1083), "acq": (1596, 696), "crude": (253, 121), "trade": (251, 75),
    "money-fx": (206, 87), "interest": (190, 81), "ship": (108, 36), "grain": (41, 10),
}
R52_LABELS = {
    "earn": (2840, 1083), "acq": (1596, 696), "crude": (253, 121), "trade": (251, 75),
    "money-fx": (206, 87), "interest": (190, 81), "money-supply": (123, 28), "ship": (108, 36),
    "sugar": (97, 25), "coffee": (90, 22), "gold": (70, 20), "gnp": (58, 15), "cpi": (54, 17),
    "cocoa": (46, 15), "grain": (41, 10), "jobs": (37, 12), "reserves": (37, 12), "ipi": (33, 11),
    "alum": (31, 19), "copper": (31, 13), "rubber": (31, 9), "iron-steel": (26, 12), "nat-gas": (24, 12),
    "bop": (22, 9), "veg-oil": (19, 11), "retail": (19, 1), "tin": (17, 10), "cotton": (15, 9),
    "housing": (15, 2), "wpi": (14, 9), "orange": (13, 9), "pet-chem": (13, 6), "livestock": (13, 5),
    "lei": (11, 3), "gas": (10, 8), "strategic-metal": (9, 6), "zinc": (8, 5), "income": (7, 4),
    "lumber": (7, 4), "carcass": (6, 5), "heat": (6, 4), "meal-feed": (6, 1), "instal-debt": (5, 1),
    "fuel": (4, 7), "lead": (4, 4), "dlr": (3, 3), "cpu": (3, 1), "nickel": (3, 1), "potato": (2, 3),
    "tea": (2, 3), "jet": (2, 1), "platinum": (1, 2),
}
WEBKB_LABELS = {"student": (1097, 544), "faculty": (750, 374), "course": (620, 310), "project": (336, 168)}


def readme_files(mirror: Path, name: str) -> dict[str, tuple[int, str]]:
    """`file -> (bytes, sha256)` from the README's Files table."""
    text = (mirror / name / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| *([\w.\-]+) *\| *([\d,]+) *\| *`([0-9a-f]{64})` *\|", text, re.M)
    return {f: (int(b.replace(",", "")), sha) for f, b, sha in rows}


def load(mirror: Path, tmp: Path, name: str) -> tuple[RawDataset, Splits, dict[str, Any]]:
    manifest = download_dataset(DataConfig(name=name), tmp / name, mirror=mirror)
    raw = load_raw(tmp / name, DataConfig(name=name))
    return raw, make_splits(raw, SPLIT), manifest


@pytest.fixture(scope="module")
def loaded(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    tmp = tmp_path_factory.mktemp("mirror-datasets")
    return {name: load(mirror, tmp, name) for name in ("webkb", "r8", "r52")}


def split_labels(splits: Splits, name: str) -> dict[str, int]:
    return splits.report["splits"][name]["labels"]


@pytest.mark.parametrize("name", ["webkb", "r8", "r52"])
def test_files_match_readme_sizes_and_digests(loaded: dict, mirror: Path, name: str) -> None:
    manifest = loaded[name][2]
    published = readme_files(mirror, name)
    assert len(published) == 2
    stored = {info["file"]: (info["bytes"], info["sha256"]) for info in manifest["files"].values()}
    assert stored == published
    # the recipe pins the same digests as the README
    pinned = {a.name: a.sha256 for a in RECIPES[name].files.values()}
    assert {f: (sha,) for f, (_, sha) in published.items()} == pinned


@pytest.mark.parametrize(("name", "table"), [("r8", R8_LABELS), ("r52", R52_LABELS), ("webkb", WEBKB_LABELS)])
def test_source_rows_and_label_counts(loaded: dict, name: str, table: dict) -> None:
    raw, splits, _ = loaded[name]
    assert dict(Counter(raw.train["label"])) == {k: v[0] for k, v in table.items()}
    assert dict(Counter(raw.test["label"])) == {k: v[1] for k, v in table.items()}
    report = splits.report
    assert report["source_rows"] == {"train": sum(v[0] for v in table.values()),
                                     "test": sum(v[1] for v in table.values())}
    assert report["num_labels"] == len(table)
    assert report["test_carved_from_train"] is False and report["test_subsampled"] is False
    # the official test set is kept whole, in file order
    assert splits.test["id"].tolist() == raw.test["id"].tolist()
    assert split_labels(splits, "test") == {k: v[1] for k, v in table.items()}


def test_r8_counts_and_duplicates(loaded: dict) -> None:
    raw, splits, _ = loaded["r8"]
    r = splits.report
    assert r["source_rows"] == {"train": 5485, "test": 2189}
    assert r["splits"]["test"]["rows"] == 2189
    # README: 62 extra rows within train, 13 within test, 4 distinct texts shared with test
    assert r["duplicates"]["test_rows_repeated"] == 13
    assert r["duplicates"]["removed_from_train_val"] == 62 + 4
    assert r["duplicates"]["pool_rows_also_in_test"] >= 4
    assert r["splits"]["train"]["rows"] + r["splits"]["val"]["rows"] == 5485 - 66
    assert r["splits"]["val"]["rows"] == round(0.1 * (5485 - 66))
    assert r["empty_texts"]["train"] == 0 and r["empty_texts"]["test"] == 0
    assert (raw.train["text"].str.endswith(" ")).all()  # "every text ends with one trailing space"


def test_r52_counts_duplicates_and_the_single_platinum_document(loaded: dict) -> None:
    _, splits, _ = loaded["r52"]
    r = splits.report
    assert r["source_rows"] == {"train": 6532, "test": 2568}
    assert r["duplicates"]["test_rows_repeated"] == 16
    assert r["duplicates"]["removed_from_train_val"] == 94 + 6
    assert r["splits"]["train"]["rows"] + r["splits"]["val"]["rows"] == 6532 - 100
    assert split_labels(splits, "train")["platinum"] == 1
    assert split_labels(splits, "val")["platinum"] == 0
    assert split_labels(splits, "test")["platinum"] == 2


def test_webkb_empty_documents_and_duplicates(loaded: dict) -> None:
    _, splits, _ = loaded["webkb"]
    r = splits.report
    assert r["empty_texts"]["train"] == 18 and r["empty_texts"]["test"] == 13
    assert r["splits"]["test"]["rows"] == 1396  # empty test documents are still scored
    assert (splits.test["text"].str.strip() == "").sum() == 13
    # README: 26 extra non-empty rows within train, 2 distinct non-empty texts shared with test;
    # within test 7 extra non-empty rows, and the 13 empty texts are 12 more repeats.
    assert r["duplicates"]["removed_from_train_val"] == 26 + 2
    assert r["duplicates"]["test_rows_repeated"] == 7 + 12
    assert r["splits"]["train"]["rows"] + r["splits"]["val"]["rows"] == 2803 - 18 - 28
    for name in ("train", "val"):
        assert not getattr(splits, name)["text"].str.strip().eq("").any()


def test_metrics_json_round_trip(loaded: dict, tmp_path: Path) -> None:
    from bertclf.data.splitting import write_splits

    _, splits, _ = loaded["r8"]
    write_splits(splits, tmp_path / "split", tmp_path / "data.json")
    metrics = json.loads((tmp_path / "data.json").read_text())
    assert metrics["duplicates"] == splits.report["duplicates"]
    for name in ("train", "val", "test"):
        df = pd.read_parquet(tmp_path / "split" / f"{name}.parquet")
        assert metrics["splits"][name]["rows"] == len(df)
        assert sum(metrics["splits"][name]["labels"].values()) == len(df)


def test_imdb_archive(mirror: Path, tmp_path: Path) -> None:
    raw, splits, manifest = load(mirror, tmp_path, "imdb")
    assert manifest["files"]["archive"]["sha256"] == readme_files(mirror, "imdb")["aclImdb_v1.tar.gz"][1]
    for df in (raw.train, raw.test):
        assert len(df) == 25_000
        assert dict(Counter(df["label"])) == {"neg": 12_500, "pos": 12_500}
        ratings = df["id"].str.extract(r"_(\d+)$")[0].astype(int)
        assert ratings[df["label"] == "neg"].between(1, 4).all()
        assert ratings[df["label"] == "pos"].between(7, 10).all()
    # README: 123 test reviews also appear verbatim in train; reviews contain <br /> tags
    assert int(raw.test["text"].isin(set(raw.train["text"])).sum()) == 123
    assert raw.train["text"].str.contains("<br />", regex=False).any()
    assert splits.labels == ["neg", "pos"]
    assert splits.report["splits"]["test"]["rows"] == 25_000
    assert splits.report["splits"]["test"]["labels"] == {"neg": 12_500, "pos": 12_500}
    assert splits.report["duplicates"]["pool_rows_also_in_test"] >= 123
