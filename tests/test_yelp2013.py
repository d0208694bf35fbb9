"""The yelp2013 recipe (the original study's protocol) with small review files written here.

test = test.json; train/val come from yelp_academic_dataset_review.json (plain, .gz or .xz), with
the test set's review ids removed from the pool; stars 1-5 become labels 0-4.
"""

from __future__ import annotations

import gzip
import json
import lzma
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bertclf.config import DataConfig, SplitConfig
from bertclf.data.datasets import YELP_REVIEWS, download_dataset, recipe
from bertclf.data.splitting import make_splits
from bertclf.errors import ArtifactNotFound, DataError

YELP = DataConfig(name="yelp2013")
SPLIT = {"val_fraction": 0.2, "test_fraction": 0.1, "seed": 1}


def review(review_id: str, stars: Any, text: str) -> dict[str, Any]:
    return {"votes": {"funny": 0, "useful": 1, "cool": 0}, "user_id": "u" + review_id,
            "review_id": review_id, "stars": stars, "date": "2012-05-01", "text": text,
            "type": "review", "business_id": "b1"}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    body = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(body))
    elif path.suffix == ".xz":
        path.write_bytes(lzma.compress(body))
    else:
        path.write_bytes(body)
    return path


def pool_records(test_ids: list[str], n: int = 50) -> list[dict[str, Any]]:
    """`n` fresh reviews (stars cycling 1..5) plus one copy of each test review id."""
    fresh = [review(f"p{i}", i % 5 + 1, f"pool review {i}.\n\nSecond paragraph.") for i in range(n)]
    leaked = [review(t, 5, f"copy of test review {t}") for t in test_ids]
    return fresh[:10] + leaked + fresh[10:]


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz"])
def test_recipe_with_small_files(tmp_path: Path, suffix: str) -> None:
    test = [review(f"t{i}", i % 5 + 1, f"test review {i}") for i in range(10)]
    files = {"test": write_jsonl(tmp_path / "test.json", test),
             "reviews": write_jsonl(tmp_path / (YELP_REVIEWS + suffix), pool_records(["t0", "t3", "t7"]))}
    raw = recipe(YELP).load(tmp_path, files, YELP)
    assert raw.test["id"].tolist() == [f"t{i}" for i in range(10)]
    assert len(raw.train) == 50
    assert not raw.train["id"].isin({"t0", "t3", "t7"}).any()
    assert raw.train["text"].str.contains("Second paragraph").all()

    splits = make_splits(raw, SplitConfig(**SPLIT))
    assert splits.labels == ["1", "2", "3", "4", "5"]
    stars = {r["review_id"]: r["stars"] for r in [*test, *pool_records([])]}
    for df in (splits.train, splits.val, splits.test):
        assert set(df["label"]) <= {0, 1, 2, 3, 4}
        assert (df["label"] == df["id"].map(stars) - 1).all()
    assert splits.test["id"].tolist() == raw.test["id"].tolist()
    assert len(splits.train) + len(splits.val) == 50
    assert splits.report["splits"]["val"]["labels"] == {str(s): 2 for s in range(1, 6)}


@pytest.mark.parametrize("stars", [0, 6, "five", 4.5])
def test_stars_outside_1_to_5_are_errors(tmp_path: Path, stars: Any) -> None:
    test = [review("t0", 3, "fine")]
    pool = [review("p0", 4, "ok"), review("p1", 2, "meh"), review("p2", stars, "odd")]
    files = {"test": write_jsonl(tmp_path / "test.json", test),
             "reviews": write_jsonl(tmp_path / YELP_REVIEWS, pool)}
    with pytest.raises(DataError) as err:
        recipe(YELP).load(tmp_path, files, YELP)
    assert YELP_REVIEWS in str(err.value)
    assert "line 3" in str(err.value)


def test_malformed_review_line_names_file_and_line(tmp_path: Path) -> None:
    files = {"test": write_jsonl(tmp_path / "test.json", [review("t0", 3, "fine")]),
             "reviews": tmp_path / (YELP_REVIEWS + ".gz")}
    body = json.dumps(review("p0", 4, "ok")) + "\n" + '{"review_id": "p1", "stars": 2, "text": "cut\n'
    files["reviews"].write_bytes(gzip.compress(body.encode()))
    with pytest.raises(DataError, match="malformed JSON") as err:
        recipe(YELP).load(tmp_path, files, YELP)
    assert YELP_REVIEWS + ".gz, line 2" in str(err.value)


# --- through `download` with the real test.json from the mirror ------------------------------

@pytest.fixture
def yelp_mirror(mirror: Path, tmp_path: Path) -> Path:
    """A mirror holding the real yelp2013/test.json (its sha256 is pinned) and nothing else."""
    own = tmp_path / "mirror"
    (own / "yelp2013").mkdir(parents=True)
    shutil.copyfile(mirror / "yelp2013" / "test.json", own / "yelp2013" / "test.json")
    return own


def real_test_ids(mirror_dir: Path, k: int) -> list[str]:
    lines = (mirror_dir / "yelp2013" / "test.json").read_text(encoding="utf-8").splitlines()[:k]
    return [json.loads(line)["review_id"] for line in lines]


@pytest.mark.parametrize("where", ["mirror.gz", "mirror.xz", "data.path plain"])
def test_download_and_split_with_a_small_review_file(yelp_mirror: Path, tmp_path: Path,
                                                     split_stage: Callable, where: str) -> None:
    leaked = real_test_ids(yelp_mirror, 3)
    data: dict[str, Any] = {"name": "yelp2013"}
    if where.startswith("mirror"):
        write_jsonl(yelp_mirror / "yelp2013" / (YELP_REVIEWS + where[-3:]), pool_records(leaked))
    else:
        data["path"] = str(write_jsonl(tmp_path / "my-reviews.json", pool_records(leaked)))
    work = tmp_path / "work"
    report = split_stage(work, data, SPLIT, mirror=yelp_mirror)

    manifest = json.loads((work / "data" / "raw" / "manifest.json").read_text())
    assert manifest["dataset"] == "yelp2013" and set(manifest["files"]) == {"test", "reviews"}
    assert report["source_rows"] == {"train": 50, "test": 1000}  # the 3 test ids left the pool
    assert report["test_subsampled"] is False
    test = pd.read_parquet(work / "data" / "split" / "test.parquet")
    assert len(test) == 1000
    # stars in test.json (README): 5 -> 336, 4 -> 339, 3 -> 147, 2 -> 90, 1 -> 88
    assert report["splits"]["test"]["labels"] == {"1": 88, "2": 90, "3": 147, "4": 339, "5": 336}
    assert test["label"].value_counts().to_dict() == {3: 339, 4: 336, 2: 147, 1: 90, 0: 88}
    pool = pd.concat([pd.read_parquet(work / "data" / "split" / f"{n}.parquet") for n in ("train", "val")])
    assert not pool["id"].isin(set(test["id"])).any()
    assert len(pool) == 50


def test_missing_review_file_says_what_is_missing(yelp_mirror: Path, tmp_path: Path,
                                                  split_stage: Callable) -> None:
    work = tmp_path / "work"
    with pytest.raises(ArtifactNotFound) as err:
        split_stage(work, {"name": "yelp2013"}, SPLIT, mirror=yelp_mirror)
    msg = str(err.value)
    assert YELP_REVIEWS in msg
    assert "BERTCLF_MIRROR" in msg and "data.path" in msg
    assert str(yelp_mirror / "yelp2013") in msg  # the place tried
    assert not (work / "data" / "raw").exists()
    assert not any((work / "data").iterdir())  # no temporary directory left behind


def test_missing_review_file_at_data_path_names_it(yelp_mirror: Path, tmp_path: Path,
                                                   split_stage: Callable) -> None:
    missing = tmp_path / "elsewhere" / "reviews.json"
    with pytest.raises(ArtifactNotFound) as err:
        split_stage(tmp_path / "work", {"name": "yelp2013", "path": str(missing)}, SPLIT, mirror=yelp_mirror)
    assert str(missing) in str(err.value) and YELP_REVIEWS in str(err.value)


def test_review_file_without_mirror_and_without_data_path(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No mirror at all: test.json's own https source is tried (stubbed here), then the error."""
    from bertclf.data import resolve

    def urlopen(url: str, timeout: float | None = None) -> Any:
        assert url.endswith("/test.json")
        raise OSError("offline")

    monkeypatch.setattr(resolve.urllib.request, "urlopen", urlopen)
    with pytest.raises(ArtifactNotFound, match=r"test\.json"):
        download_dataset(YELP, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
