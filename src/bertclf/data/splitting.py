"""Train / validation / test splits: official test kept, stratified seeded carves, dedupe.

The carves are done per class with a seeded generator, so the same params give the same rows
in the same order on every run. scikit-learn's stratified splitters refuse classes with a
single member (R52 has one), hence the small allocation below.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertclf.atomic import atomic_path, write_json
from bertclf.config import SplitConfig
from bertclf.data.datasets import RawDataset
from bertclf.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]  # index -> label name
    report: dict[str, Any] = field(default_factory=dict)


def _sort_key(label: Any) -> tuple[int, Any]:
    text = str(label)
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


def stratified_take(labels: np.ndarray, n_take: int, rng: np.random.Generator,
                    keep_one: bool = True) -> np.ndarray:
    """Boolean mask selecting `n_take` rows, spread over classes in proportion to their size.

    Quotas are rounded by largest remainder so the total is exact. With `keep_one`, a class is
    never taken whole, so every class keeps at least one row where it came from.
    """
    n = len(labels)
    n_take = int(min(max(n_take, 0), n))
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    cap = counts - 1 if keep_one else counts
    exact = counts * (n_take / n) if n else counts * 0.0
    quota = np.minimum(np.floor(exact).astype(int), cap)
    short = n_take - quota.sum()
    if short > 0:
        order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
        for c in order:
            if short == 0:
                break
            if quota[c] < cap[c]:
                quota[c] += 1
                short -= 1
        if short > 0:  # only when keep_one forbids it; take from the largest classes
            for c in np.argsort(-counts, kind="stable"):
                room = counts[c] - quota[c]
                add = min(room, short)
                quota[c] += add
                short -= add
    mask = np.zeros(n, dtype=bool)
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        mask[rng.permutation(members)[: quota[c]]] = True
    return mask


def _index(labels: pd.Series, label_to_id: dict[Any, int]) -> np.ndarray:
    return labels.map(label_to_id).to_numpy()


def _label_counts(df: pd.DataFrame, names: list[str]) -> dict[str, int]:
    counts = np.bincount(df["label"].to_numpy(), minlength=len(names))
    return {name: int(c) for name, c in zip(names, counts, strict=True)}


def _normalise_labels(df: pd.DataFrame) -> pd.DataFrame:
    # Labels read from text files are strings; "3" and 3 must be the same class.
    df = df.copy()
    df["label"] = df["label"].map(lambda v: str(v).strip())
    return df


def warn_small_classes(pool: pd.DataFrame, names: list[str], carve_test: bool) -> None:
    """A class with fewer rows than splits to fill cannot appear in every one of them: say so."""
    needed = 3 if carve_test else 2  # train, validation (and test, when carved from train)
    counts = pool["label"].value_counts()
    for name in names:
        n = int(counts.get(name, 0))
        if n < needed:
            log.warning("label %r has %d row%s in the training data: too few to appear in train, "
                        "validation%s", name, n, "" if n == 1 else "s", " and test" if carve_test else "")


def make_splits(raw: RawDataset, split: SplitConfig) -> Splits:
    """Apply the split protocol of params `split` to a raw dataset."""
    val_fraction, test_fraction = split.val_fraction, split.test_fraction
    empty_policy, dedupe = split.empty_texts, split.dedupe
    rng = np.random.default_rng(split.seed)
    report: dict[str, Any] = {"dataset": raw.name}

    pool = _normalise_labels(raw.train).reset_index(drop=True)
    test = None if raw.test is None else _normalise_labels(raw.test).reset_index(drop=True)
    report["source_rows"] = {"train": len(pool), "test": None if test is None else len(test)}

    # Empty texts: nothing to learn from, but an official test document is still scored.
    empties: dict[str, int] = {}
    for name, df in (("train", pool), ("test", test)):
        if df is None:
            continue
        is_empty = df["text"].str.strip().eq("")
        empties[name] = int(is_empty.sum())
        if is_empty.any() and empty_policy == "error":
            first = df.loc[is_empty, "where"].iloc[0]
            raise DataError(f"empty text ({empties[name]} in all); set split.empty_texts: drop to skip them",
                            first)
    pool = pool[~pool["text"].str.strip().eq("")].reset_index(drop=True)
    report["empty_texts"] = {"policy": empty_policy, **empties}
    if pool.empty:
        raise DataError("no non-empty training examples", raw.train_file or raw.name)

    names = [str(x) for x in raw.labels] if raw.labels else sorted(pool["label"].unique(), key=_sort_key)
    label_to_id = {name: i for i, name in enumerate(names)}
    for name, df, path in (("train", pool, raw.train_file), ("test", test, raw.test_file)):
        if df is None:
            continue
        unknown = ~df["label"].isin(label_to_id)
        if unknown.any():
            first = df[unknown].iloc[0]
            known = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
            what = "a label that train never has" if name == "test" else "a label outside the dataset's"
            raise DataError(f"{what}: {first['label']!r} ({int(unknown.sum())} such rows; "
                            f"known labels: {known})", first["where"] or path or raw.name)
    if len(names) < 2:
        raise DataError(f"every row has the label {names[0]!r}: a classifier needs at least two labels; "
                        "check data.label_column", raw.train_file or raw.name)
    warn_small_classes(pool, names, test is None)
    pool["label"] = _index(pool["label"], label_to_id)
    pool["order"] = np.arange(len(pool))

    if test is None:
        take = stratified_take(pool["label"].to_numpy(), round(test_fraction * len(pool)), rng)
        test, pool = pool[take].copy(), pool[~take].copy()
        report["test_carved_from_train"] = True
    else:
        test["label"] = _index(test["label"], label_to_id)
        test["order"] = np.arange(len(test))
        report["test_carved_from_train"] = False

    # Exact duplicates: a pool text that is also a test text leaks the answer; a text twice in
    # the pool can land in both train and validation.
    test_texts = set(test["text"])
    in_test = pool["text"].isin(test_texts).to_numpy()
    repeated = pool["text"].duplicated(keep="first").to_numpy()
    report["duplicates"] = {
        "pool_rows_also_in_test": int(in_test.sum()),
        "pool_rows_repeated": int((repeated & ~in_test).sum()),
        "test_rows_repeated": int(test["text"].duplicated().sum()),
        "removed_from_train_val": int((in_test | repeated).sum()) if dedupe else 0,
    }
    if dedupe:
        pool = pool[~(in_test | repeated)]

    max_train = split.max_train
    if max_train is not None and int(max_train) < round(len(pool) * (1 - val_fraction)):
        n_train = int(max_train)
        n_pool = n_train + round(n_train * val_fraction / (1 - val_fraction))
        pool = pool[stratified_take(pool["label"].to_numpy(), n_pool, rng, keep_one=False)]
        n_val = n_pool - n_train
    else:
        n_val = round(val_fraction * len(pool))
    val_mask = stratified_take(pool["label"].to_numpy(), n_val, rng)
    val, train = pool[val_mask], pool[~val_mask]

    test_rows_full = len(test)
    max_test = split.max_test
    if max_test is not None and int(max_test) < len(test):
        test = test[stratified_take(test["label"].to_numpy(), int(max_test), rng, keep_one=False)]
    report["test_subsampled"] = len(test) < test_rows_full
    report["test_rows_full"] = test_rows_full

    out = {}
    for name, df in (("train", train), ("val", val), ("test", test)):
        df = df.sort_values("order", kind="stable")
        out[name] = pd.DataFrame({
            "id": df["id"].astype(str).to_numpy(),
            "text": df["text"].astype(str).to_numpy(),
            "label": df["label"].astype("int64").to_numpy(),
        })
        if out[name].empty:
            raise DataError(f"the {name} split is empty; lower split fractions or add data",
                            raw.train_file or raw.name)
    report["splits"] = {
        name: {"rows": len(df), "labels": _label_counts(df, names)} for name, df in out.items()
    }
    report["num_labels"] = len(names)
    return Splits(out["train"], out["val"], out["test"], names, report)


SPLITS = ("train", "val", "test")
LABELS_FILE = "labels.json"


def write_splits(splits: Splits, out: Path, report: Path) -> None:
    """Write `<out>/{train,val,test}.parquet` and `labels.json` (all or nothing), then the report
    of counts."""
    with atomic_path(out, is_dir=True) as tmp:
        for name in SPLITS:
            getattr(splits, name).to_parquet(tmp / f"{name}.parquet", index=False)
        write_json(tmp / LABELS_FILE, {
            "labels": splits.labels,
            "test_subsampled": splits.report["test_subsampled"],
            "test_rows_full": splits.report["test_rows_full"],
        })
    write_json(report, splits.report)
