"""Train / validation / test splits: official test kept, stratified seeded carves, dedupe.

The carves are done per class with a seeded generator, so the same params give the same rows
in the same order on every run. scikit-learn's stratified splitters refuse classes with a
single member (R52 has one), hence the small allocation below. Multi-label data is carved by
iterative stratification (Sechidis et al. 2011, the `iterative-stratification` package), with
"no label at all" stratified as a label of its own. Regression targets are carved stratified by
their decile (`value_bins`), so each split spans the same range.
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
from bertclf.data.labels import label_matrix
from bertclf.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]  # index -> label name
    report: dict[str, Any] = field(default_factory=dict)
    task: str = "single_label"  # multi_label: each split's label column holds 0/1 rows
    target: dict[str, float] | None = None  # regression: the training targets' mean and std


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


def multilabel_take(labels: np.ndarray, n_take: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask selecting `n_take` rows of 0/1 label rows `labels` by iterative stratification:
    each label (and "no label") in about the same proportion in the rows taken as in all."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = len(labels)
    n_take = int(min(max(n_take, 0), n))
    mask = np.zeros(n, dtype=bool)
    if n_take in (0, n):
        mask[:] = n_take == n
        return mask
    strata = np.column_stack([labels, labels.sum(1) == 0])
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_take,
                                                random_state=int(rng.integers(2**31 - 1)))
    _, taken = next(splitter.split(np.zeros((n, 1)), strata))
    mask[taken] = True
    return mask


def value_bins(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Regression targets as the index of their quantile bin (ties share a bin)."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


def take(labels: pd.Series, n_take: int, rng: np.random.Generator, keep_one: bool = True) -> np.ndarray:
    """`stratified_take` of a split's label column: class indices, 0/1 rows (multi-label), or
    values (regression, stratified by their decile)."""
    values = labels.to_numpy()
    if len(values) and isinstance(values[0], np.ndarray):
        return multilabel_take(np.stack(values), n_take, rng)
    if values.dtype.kind == "f":
        return stratified_take(value_bins(values), n_take, rng, keep_one)
    return stratified_take(values, n_take, rng, keep_one)


def _index(labels: pd.Series, label_to_id: dict[Any, int]) -> Any:
    if labels.dtype.kind == "f":  # regression: the values
        return labels.to_numpy()
    if labels.map(lambda v: isinstance(v, tuple)).all():  # multi-label: 0/1 rows
        rows = label_matrix(labels.tolist(), list(label_to_id))
        return pd.Series(list(rows), index=labels.index, dtype=object)
    return labels.map(label_to_id).to_numpy()


def _label_counts(df: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    values = df["label"].to_numpy()
    if values.dtype.kind == "f":  # regression: the spread of the values
        return {"mean": round(float(values.mean()), 5), "std": round(float(values.std()), 5),
                "min": float(values.min()), "max": float(values.max())}
    if len(values) and isinstance(values[0], np.ndarray):  # multi-label: documents having each label
        counts = np.stack(values).sum(0)
    else:
        counts = np.bincount(values.astype(np.int64), minlength=len(names))
    return {name: int(c) for name, c in zip(names, counts, strict=True)}


def _normalise_labels(df: pd.DataFrame, task: str) -> pd.DataFrame:
    # Labels read from text files are strings; "3" and 3 must be the same class.
    df = df.copy()
    if task == "regression":
        df["label"] = [_number(v, where) for v, where in zip(df["label"], df["where"], strict=True)]
        return df
    df["label"] = df["label"].map(lambda v: v if isinstance(v, tuple) else str(v).strip())
    return df


def _number(value: Any, where: str) -> float:
    """A regression target as a finite float, or one line naming the row."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = float("nan")
    if not np.isfinite(number):
        raise DataError(f"{where}: the label {value!r} is not a finite number (data.task: regression)")
    return number


def _per_label(pool: pd.DataFrame) -> pd.Series:
    """Rows per label (each document counted once per label it has)."""
    return pool["label"].explode().value_counts() if pool["label"].map(
        lambda v: isinstance(v, tuple)).all() else pool["label"].value_counts()


def warn_small_classes(pool: pd.DataFrame, names: list[str], carve_test: bool) -> None:
    """A class with fewer rows than splits to fill cannot appear in every one of them: say so."""
    needed = 3 if carve_test else 2  # train, validation (and test, when carved from train)
    counts = _per_label(pool)
    for name in names:
        n = int(counts.get(name, 0))
        if n < needed:
            log.warning("label %r has %d row%s in the training data: too few to appear in train, "
                        "validation%s", name, n, "" if n == 1 else "s", " and test" if carve_test else "")


def make_splits(raw: RawDataset, split: SplitConfig) -> Splits:
    """Apply the split protocol of params `split` to a raw dataset.

    The steps run in this order, drawing from one seeded generator: read, drop empty texts,
    check the labels, carve (or take) the test set, dedupe, carve validation, subsample test.
    """
    rng = np.random.default_rng(split.seed)
    report: dict[str, Any] = {"dataset": raw.name}
    pool, test = _read(raw, report)
    pool = _drop_empty_texts(raw, pool, test, split.empty_texts, report)
    names = ["value"] if raw.task == "regression" else _label_names(raw, pool, test)
    if raw.task != "regression":
        warn_small_classes(pool, names, test is None)
    label_to_id = {name: i for i, name in enumerate(names)}
    pool, test = _carve_test(_numbered(pool, label_to_id), test, label_to_id, split.test_fraction, rng,
                             report)
    pool = _dedupe(pool, test, split.dedupe, report)
    train, val = _carve_val(pool, split, rng)
    test = _subsample_test(test, split.max_test, rng, report)
    out = _tables(raw, {"train": train, "val": val, "test": test})
    report["splits"] = {
        name: {"rows": len(df), "labels": _label_counts(df, names)} for name, df in out.items()
    }
    report["num_labels"] = len(names)
    report["task"] = raw.task
    target = None
    if raw.task == "regression":  # what training standardizes the targets by
        values = out["train"]["label"].to_numpy()
        target = {"mean": float(values.mean()), "std": float(values.std()) or 1.0}
    return Splits(out["train"], out["val"], out["test"], names, report, raw.task, target)


def _read(raw: RawDataset, report: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training pool and the official test set (None when the dataset has none), labels as text."""
    pool = _normalise_labels(raw.train, raw.task).reset_index(drop=True)
    test = None if raw.test is None else _normalise_labels(raw.test, raw.task).reset_index(drop=True)
    report["source_rows"] = {"train": len(pool), "test": None if test is None else len(test)}
    return pool, test


def _drop_empty_texts(raw: RawDataset, pool: pd.DataFrame, test: pd.DataFrame | None, policy: str,
                      report: dict[str, Any]) -> pd.DataFrame:
    """Empty texts: nothing to learn from, so out of the pool; an official test document is still
    scored. With `policy` "error", the first empty text stops the split."""
    empties: dict[str, int] = {}
    for name, df in (("train", pool), ("test", test)):
        if df is None:
            continue
        is_empty = df["text"].str.strip().eq("")
        empties[name] = int(is_empty.sum())
        if is_empty.any() and policy == "error":
            first = df.loc[is_empty, "where"].iloc[0]
            raise DataError(f"empty text ({empties[name]} in all); set split.empty_texts: drop to skip them",
                            first)
    pool = pool[~pool["text"].str.strip().eq("")].reset_index(drop=True)
    report["empty_texts"] = {"policy": policy, **empties}
    if pool.empty:
        raise DataError("no non-empty training examples", raw.train_file or raw.name)
    return pool


def _label_names(raw: RawDataset, pool: pd.DataFrame, test: pd.DataFrame | None) -> list[str]:
    """The label names in index order (the dataset's own list, else sorted); refuse a row whose
    label is not among them, and a dataset of a single label."""
    names = [str(x) for x in raw.labels] if raw.labels else sorted(_per_label(pool).index, key=_sort_key)
    for name, df, path in (("train", pool, raw.train_file), ("test", test, raw.test_file)):
        if df is None:
            continue
        unknown = ~df["label"].map(lambda v: set(v) <= set(names) if isinstance(v, tuple) else v in names)
        if unknown.any():
            first = df[unknown].iloc[0]
            value = first["label"]
            value = next(v for v in value if v not in names) if isinstance(value, tuple) else value
            known = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
            what = "a label that train never has" if name == "test" else "a label outside the dataset's"
            raise DataError(f"{what}: {value!r} ({int(unknown.sum())} such rows; "
                            f"known labels: {known})", first["where"] or path or raw.name)
    if len(names) < 2:
        only = (names or ["none"])[0]
        raise DataError(f"every row has the label {only!r}: a classifier needs at least two labels; check "
                        "data.label_column", raw.train_file or raw.name)
    return names


def _numbered(df: pd.DataFrame, label_to_id: dict[Any, int]) -> pd.DataFrame:
    """Labels as indices, and each row's place in its source file (the order splits are written in)."""
    df["label"] = _index(df["label"], label_to_id)
    df["order"] = np.arange(len(df))
    return df


def _carve_test(pool: pd.DataFrame, test: pd.DataFrame | None, label_to_id: dict[Any, int],
                test_fraction: float, rng: np.random.Generator,
                report: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The official test set, or a stratified `test_fraction` of the pool when there is none."""
    report["test_carved_from_train"] = test is None
    if test is not None:
        return pool, _numbered(test, label_to_id)
    taken = take(pool["label"], round(test_fraction * len(pool)), rng)
    return pool[~taken].copy(), pool[taken].copy()


def _dedupe(pool: pd.DataFrame, test: pd.DataFrame, dedupe: bool, report: dict[str, Any]) -> pd.DataFrame:
    """Exact duplicates: a pool text that is also a test text leaks the answer; a text twice in
    the pool can land in both train and validation. Counted always, removed with `dedupe`."""
    in_test = pool["text"].isin(set(test["text"])).to_numpy()
    repeated = pool["text"].duplicated(keep="first").to_numpy()
    report["duplicates"] = {
        "pool_rows_also_in_test": int(in_test.sum()),
        "pool_rows_repeated": int((repeated & ~in_test).sum()),
        "test_rows_repeated": int(test["text"].duplicated().sum()),
        "removed_from_train_val": int((in_test | repeated).sum()) if dedupe else 0,
    }
    return pool[~(in_test | repeated)] if dedupe else pool


def _carve_val(pool: pd.DataFrame, split: SplitConfig,
               rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val): a stratified `val_fraction` of the pool is validation; with `max_train`, the
    pool is first subsampled so that train has `max_train` rows."""
    val_fraction, max_train = split.val_fraction, split.max_train
    if max_train is not None and int(max_train) < round(len(pool) * (1 - val_fraction)):
        n_train = int(max_train)
        n_pool = n_train + round(n_train * val_fraction / (1 - val_fraction))
        pool = pool[take(pool["label"], n_pool, rng, keep_one=False)]
        n_val = n_pool - n_train
    else:
        n_val = round(val_fraction * len(pool))
    val_mask = take(pool["label"], n_val, rng)
    return pool[~val_mask], pool[val_mask]


def _subsample_test(test: pd.DataFrame, max_test: int | None, rng: np.random.Generator,
                    report: dict[str, Any]) -> pd.DataFrame:
    """At most `max_test` test rows (stratified); the report says whether, and from how many."""
    test_rows_full = len(test)
    if max_test is not None and int(max_test) < len(test):
        test = test[take(test["label"], int(max_test), rng, keep_one=False)]
    report["test_subsampled"] = len(test) < test_rows_full
    report["test_rows_full"] = test_rows_full
    return test


def _tables(raw: RawDataset, parts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each split as written: id, text, label, in source order; none may be empty."""
    out = {}
    for name, df in parts.items():
        df = df.sort_values("order", kind="stable")
        out[name] = pd.DataFrame({
            "id": df["id"].astype(str).to_numpy(),
            "text": df["text"].astype(str).to_numpy(),
            "label": _label_column(df["label"]),
        })
        if out[name].empty:
            raise DataError(f"the {name} split is empty; lower split fractions or add data",
                            raw.train_file or raw.name)
    return out


def _label_column(labels: pd.Series) -> Any:
    """A split's label column: class indices (int64), 0/1 rows as lists (multi-label), or values
    (float64, regression)."""
    values = labels.to_numpy()
    if len(values) and isinstance(values[0], np.ndarray):
        return [row.astype(np.int8) for row in values]
    if values.dtype.kind == "f":
        return values.astype(np.float64)
    return labels.astype("int64").to_numpy()


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
            "task": splits.task,
            "test_subsampled": splits.report["test_subsampled"],
            "test_rows_full": splits.report["test_rows_full"],
            **({"target": splits.target} if splits.target else {}),
        })
    write_json(report, splits.report)
