"""The split protocol: official test kept, stratified seeded carves, dedupe, subsampling."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertclf.config import section_from
from bertclf.data.datasets import RawDataset
from bertclf.data.splitting import Splits, make_splits, stratified_take, write_splits
from bertclf.errors import ConfigError

DEFAULTS: dict[str, Any] = {"val_fraction": 0.1, "test_fraction": 0.1, "seed": 42, "max_train": None,
                            "max_test": None, "dedupe": True, "empty_texts": "drop"}


def frame(rows: list[tuple[str, Any]], prefix: str) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"{prefix}{i}" for i in range(len(rows))],
        "text": [t for t, _ in rows],
        "label": [lab for _, lab in rows],
        "where": [f"{prefix}.tsv, line {i + 1}" for i in range(len(rows))],
    })


def rows_for(counts: dict[str, int], prefix: str) -> list[tuple[str, str]]:
    """Distinct texts, classes interleaved the way a shuffled file would have them."""
    out = [(f"{prefix} {label} doc {i}", label) for label, n in counts.items() for i in range(n)]
    order = np.random.default_rng(0).permutation(len(out))
    return [out[i] for i in order]


def raw(train: dict[str, int] | list, test: dict[str, int] | list | None = None) -> RawDataset:
    tr = rows_for(train, "train") if isinstance(train, dict) else train
    te = rows_for(test, "test") if isinstance(test, dict) else test
    return RawDataset("toy", frame(tr, "train"), None if te is None else frame(te, "test"),
                      train_file="train.tsv", test_file="test.tsv" if te is not None else "")


def split(r: RawDataset, **overrides: Any) -> Splits:
    return make_splits(r, section_from("split", {**DEFAULTS, **overrides}))  # checked like params.yaml


def counts(df: pd.DataFrame, s: Splits) -> dict[str, int]:
    c = Counter(df["label"].tolist())
    return {name: c.get(i, 0) for i, name in enumerate(s.labels)}


# --- stratified_take --------------------------------------------------------------------------

def test_stratified_take_exact_total_and_proportional_quotas() -> None:
    labels = np.repeat([0, 1, 2, 3], [500, 300, 150, 50])
    rng = np.random.default_rng(1)
    for n_take in (0, 1, 7, 100, 333, 999):
        mask = stratified_take(labels, n_take, rng)
        assert mask.sum() == n_take
        taken = np.bincount(labels[mask], minlength=4)
        exact = np.array([500, 300, 150, 50]) * n_take / 1000
        assert np.all(np.abs(taken - exact) < 1 + 1e-9), (n_take, taken, exact)


def test_stratified_take_keep_one_never_empties_a_class() -> None:
    labels = np.array([0] * 10 + [1] + [2] * 2)
    mask = stratified_take(labels, 12, np.random.default_rng(0), keep_one=True)
    assert mask.sum() == 12  # the total is still honoured, by the large classes
    left = np.bincount(labels[~mask], minlength=3)
    assert left[1] == 1
    mask = stratified_take(labels, 6, np.random.default_rng(0), keep_one=True)
    assert not mask[10]  # the single member of class 1 is never taken
    assert (~mask[labels == 2]).sum() >= 1
    assert stratified_take(labels, 13, np.random.default_rng(0), keep_one=False).all()


def test_stratified_take_is_seeded() -> None:
    labels = np.repeat([0, 1], [60, 40])
    a = stratified_take(labels, 30, np.random.default_rng(5))
    b = stratified_take(labels, 30, np.random.default_rng(5))
    c = stratified_take(labels, 30, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


# --- make_splits ------------------------------------------------------------------------------

def test_official_test_is_kept_untouched_and_val_is_stratified() -> None:
    r = raw({"earn": 500, "acq": 300, "crude": 100, "grain": 20}, {"earn": 40, "acq": 30, "crude": 5})
    s = split(r)
    assert s.test["id"].tolist() == r.test["id"].tolist()
    assert s.test["text"].tolist() == r.test["text"].tolist()
    assert [s.labels[i] for i in s.test["label"]] == r.test["label"].tolist()
    assert len(s.val) == round(0.1 * 920)
    assert counts(s.val, s) == {"acq": 30, "crude": 10, "earn": 50, "grain": 2}
    assert len(s.train) + len(s.val) == 920
    assert s.report["test_carved_from_train"] is False
    assert s.report["source_rows"] == {"train": 920, "test": 75}


def test_test_is_carved_stratified_when_the_dataset_has_none() -> None:
    r = raw({"pos": 600, "neg": 400})
    s = split(r, test_fraction=0.2, val_fraction=0.1)
    assert s.report["test_carved_from_train"] is True
    assert counts(s.test, s) == {"neg": 80, "pos": 120}
    assert len(s.val) == 80 and len(s.train) == 720
    assert counts(s.val, s) == {"neg": 32, "pos": 48}
    ids = [set(df["id"]) for df in (s.train, s.val, s.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(r.train["id"])


def test_rows_keep_source_order_within_each_split() -> None:
    r = raw({"a": 50, "b": 50}, {"a": 10, "b": 10})
    s = split(r)
    position = {ident: i for i, ident in enumerate(r.train["id"])}
    for df in (s.train, s.val):
        order = [position[i] for i in df["id"]]
        assert order == sorted(order)


def test_same_params_give_identical_splits_and_files(tmp_path: Path) -> None:
    r = raw({"a": 300, "b": 200, "c": 17}, None)
    params = {"max_train": 200, "max_test": 30}
    one, two = split(r, **params), split(r, **params)
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name))
    write_splits(one, tmp_path / "a", tmp_path / "a.json")
    write_splits(two, tmp_path / "b", tmp_path / "b.json")
    for f in ("train.parquet", "val.parquet", "test.parquet", "labels.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    other = split(r, seed=7, **params)
    assert other.val["id"].tolist() != one.val["id"].tolist()


def test_max_test_does_not_change_train_or_val() -> None:
    r = raw({"a": 300, "b": 200}, {"a": 100, "b": 60})
    full, sub = split(r), split(r, max_test=50)
    pd.testing.assert_frame_equal(full.train, sub.train)
    pd.testing.assert_frame_equal(full.val, sub.val)


def test_dedupe_counts_and_removal() -> None:
    train = [("shared one", "a"), ("shared two", "b"), ("shared two", "b"),  # pool rows also in test: 3
             ("twice", "a"), ("twice", "a"), ("twice", "b"),               # repeated in pool: 2
             *rows_for({"a": 40, "b": 40}, "u")]
    test = [("shared one", "a"), ("shared two", "b"), ("t1", "a"), ("t1", "a"), ("t2", "b")]
    s = split(raw(train, test))
    assert s.report["duplicates"] == {"pool_rows_also_in_test": 3, "pool_rows_repeated": 2,
                                      "test_rows_repeated": 1, "removed_from_train_val": 5}
    kept = pd.concat([s.train, s.val])
    assert len(kept) == len(train) - 5
    assert not kept["text"].isin(set(s.test["text"])).any()
    assert kept["text"].is_unique
    assert "twice" in set(kept["text"])  # the first copy stays
    assert len(s.test) == 5  # the test set is never deduplicated

    s = split(raw(train, test), dedupe=False)
    assert s.report["duplicates"]["removed_from_train_val"] == 0
    assert s.report["duplicates"]["pool_rows_also_in_test"] == 3
    assert len(s.train) + len(s.val) == len(train)


def test_dedupe_against_a_carved_test_set() -> None:
    train = [(f"doc {i % 50}", "ab"[i % 2]) for i in range(100)]  # each text twice
    s = split(raw(train), test_fraction=0.2)
    kept = pd.concat([s.train, s.val])
    assert not kept["text"].isin(set(s.test["text"])).any()
    assert kept["text"].is_unique


def test_max_train_and_max_test_subsample_stratified_and_report_it() -> None:
    r = raw({"earn": 700, "acq": 250, "grain": 50}, {"earn": 300, "acq": 150, "grain": 50})
    s = split(r, max_train=200, max_test=100)
    assert len(s.train) == 200
    assert len(s.val) == round(200 * 0.1 / 0.9)
    assert len(s.test) == 100
    assert counts(s.test, s) == {"acq": 30, "earn": 60, "grain": 10}
    assert counts(s.train, s)["earn"] == pytest.approx(140, abs=2)
    assert s.report["test_subsampled"] is True
    assert s.report["test_rows_full"] == 500
    assert s.report["splits"]["test"]["rows"] == 100
    assert set(s.test["id"]) <= set(r.test["id"])

    s = split(r, max_train=10_000, max_test=500)
    assert s.report["test_subsampled"] is False
    assert len(s.test) == 500 and len(s.train) + len(s.val) == 1000


def test_single_member_class_stays_in_train_like_r52_platinum() -> None:
    r = raw({"earn": 200, "acq": 100, "platinum": 1}, {"earn": 20, "acq": 10, "platinum": 2})
    s = split(r, val_fraction=0.3)
    assert counts(s.train, s)["platinum"] == 1
    assert counts(s.val, s)["platinum"] == 0
    assert counts(s.test, s)["platinum"] == 2
    s = split(raw({"earn": 200, "acq": 100, "platinum": 1}), test_fraction=0.3, val_fraction=0.3)
    assert counts(s.train, s)["platinum"] == 1


def test_labels_are_strings_and_numeric_labels_sort_as_numbers() -> None:
    train = [(f"doc {i}", [2, "10", 1, " 2 "][i % 4]) for i in range(80)]
    s = split(raw(train))
    assert s.labels == ["1", "2", "10"]  # 2 and " 2 " are one class; "10" after "2"
    assert sum(s.report["splits"][n]["rows"] for n in ("train", "val", "test")) == 80


def test_fixed_label_order_of_a_dataset_is_kept() -> None:
    r = raw({"pos": 30, "neg": 30}, {"pos": 5, "neg": 5})
    r.labels = ["neg", "pos"]
    s = split(r)
    assert s.labels == ["neg", "pos"]
    assert [s.labels[i] for i in s.test["label"]] == r.test["label"].tolist()


def test_report_has_rows_and_label_counts_per_split(tmp_path: Path) -> None:
    r = raw({"a": 90, "b": 30}, {"a": 20, "b": 10})
    s = split(r)
    write_splits(s, tmp_path / "split", tmp_path / "metrics" / "data.json")
    metrics = json.loads((tmp_path / "metrics" / "data.json").read_text())
    for name in ("train", "val", "test"):
        df = pd.read_parquet(tmp_path / "split" / f"{name}.parquet")
        assert metrics["splits"][name]["rows"] == len(df)
        assert metrics["splits"][name]["labels"] == counts(df, s)
    assert metrics["num_labels"] == 2
    assert {"dataset", "source_rows", "empty_texts", "duplicates", "test_subsampled",
            "test_rows_full"} <= set(metrics)
    assert json.loads((tmp_path / "split" / "labels.json").read_text())["labels"] == ["a", "b"]
    schema = pq.read_schema(tmp_path / "split" / "train.parquet")
    assert schema.names == ["id", "text", "label"]
    for name in ("id", "text"):
        kind = schema.field(name).type
        assert pa.types.is_string(kind) or pa.types.is_large_string(kind)
    assert schema.field("label").type == pa.int64()


@pytest.mark.parametrize(("key", "value"), [("val_fraction", 1.0), ("test_fraction", -0.1),
                                            ("empty_texts", "keep")])
def test_bad_split_params_name_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"split.{key}"):
        split(raw({"a": 10, "b": 10}), **{key: value})


def test_too_little_data_for_a_split_is_an_error() -> None:
    from bertclf.errors import DataError

    with pytest.raises(DataError, match="split is empty") as err:
        split(raw({"a": 1, "b": 1}, {"a": 1}), val_fraction=0.0)
    assert "train.tsv" in str(err.value)


def test_write_splits_failure_leaves_previous_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = split(raw({"a": 30, "b": 30}, {"a": 5, "b": 5}))
    out = tmp_path / "split"
    out.mkdir()
    (out / "train.parquet").write_bytes(b"previous")

    def boom(self: pd.DataFrame, path: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        write_splits(s, out, tmp_path / "data.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]
    assert sorted(p.name for p in out.iterdir()) == ["train.parquet"]
    assert (out / "train.parquet").read_bytes() == b"previous"
