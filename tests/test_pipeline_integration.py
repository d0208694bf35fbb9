"""`dvc repro` end to end on a tiny configuration, in a temporary git repository.

The repository's files (tracked, plus untracked ones git does not ignore, so work in progress is
exercised too) are copied into a fresh git repository; params.yaml is the project's own with a
few keys made tiny (R8 from the mirror, 200 train / 100 test rows, the tiny BERT, short token
sequences). The checks are about the stages this test knows; stages added later simply run as
part of the same `dvc repro`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
RUNNING = re.compile(r"Running stage '([^']+)'")

# Tiny overrides; a key is only set when its section exists in the project's params.yaml.
TINY: dict[str, dict[str, Any]] = {
    "data": {"name": "r8", "path": None, "test_path": None},
    "split": {"max_train": 200, "max_test": 100, "seed": 42},
    "tokenize": {"max_length": 48, "max_sentences": 8, "max_sentence_tokens": 16, "batch_size": 64},
    "train": {"epochs": 1, "batch_size": 32, "hidden": 8, "attention_dim": 8},
}

FOUNDATION = ("data", "split", "encoder", "tokenize")

pytestmark = pytest.mark.integration


def dvc_bin() -> Path:
    found = VENV_BIN / "dvc"
    if found.exists():
        return found
    which = shutil.which("dvc")
    if which is None:
        pytest.skip("dvc is not installed")
    return Path(which)


def copy_worktree(dst: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file() or rel.startswith(("tests/", "benchmarks/")):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)


def set_params(repo: Path, **changes: dict[str, Any]) -> None:
    """Update params.yaml: every key of the foundation's sections; elsewhere only existing keys."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        if section not in params:
            continue
        for key, value in values.items():
            if section in FOUNDATION or key in params[section]:
                params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


class Project:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env, self.dvc = root, env, str(dvc_bin())

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=300)
        if check and done.returncode != 0:
            command = " ".join(args)
            raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def repro(self, *targets: str) -> list[str]:
        """Run `dvc repro [targets]`; return the names of the stages that ran."""
        done = self.run(self.dvc, "repro", *targets)
        return RUNNING.findall(done.stdout + done.stderr)

    def changed(self, *targets: str) -> set[str]:
        """Stages `dvc status [targets]` reports as changed (targets include their upstream)."""
        out = self.run(self.dvc, "status", "--json", *targets).stdout
        return set(json.loads(out or "{}"))

    def json(self, rel: str) -> dict[str, Any]:
        return json.loads((self.root / rel).read_text())


def token_lengths(root: Path) -> list[int]:
    return pq.read_table(root / "data/tokens/train.parquet", columns=["length"]).column("length").to_pylist()


@pytest.fixture
def project(tmp_path: Path, mirror: Path, tiny_bert_dir: Path) -> Project:
    root = tmp_path / "repo"
    root.mkdir()
    copy_worktree(root)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(root / "src"),  # the copy's code, not the editable install's
        "BERTCLF_MIRROR": str(mirror),
        "BERTCLF_CACHE": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }
    p = Project(root, env)
    for stale in ("dvc.lock", "metrics", "plots"):
        target = root / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    p.run("git", "init", "-q")
    if not (root / ".dvc" / "config").exists():
        p.run(p.dvc, "init", "-q")
    p.run("git", "add", "-A")
    p.run("git", "commit", "-q", "-m", "copy of the project")
    set_params(root, **TINY, encoder={"name": str(tiny_bert_dir)})
    return p


def test_dvc_repro_tiny_configuration(project: Project, tiny_bert_dir: Path, tmp_path: Path) -> None:
    root = project.root

    # 1. a full run
    ran = project.repro()
    for stage in ("download@data", "download@encoder", "split", "tokenize"):
        assert stage in ran, (stage, ran)
    assert ran.index("download@data") < ran.index("split") < ran.index("tokenize")

    manifest = project.json("data/raw/manifest.json")
    assert manifest["dataset"] == "r8"
    assert {f["file"] for f in manifest["files"].values()} == {"r8-train-all-terms.tsv",
                                                                "r8-test-all-terms.tsv"}
    assert (root / "models/encoder/config.json").is_file()
    assert (root / "models/encoder/model.safetensors").is_file()
    assert (root / "models/encoder/tokenizer.json").is_file()
    assert not (root / "data/raw/config.json").exists()  # dataset and encoder are separate outputs

    data = project.json("metrics/data.json")
    assert data["dataset"] == "r8"
    assert data["source_rows"] == {"train": 5485, "test": 2189}
    assert data["test_subsampled"] is True and data["test_rows_full"] == 2189
    rows = {name: data["splits"][name]["rows"] for name in ("train", "val", "test")}
    assert rows == {"train": 200, "val": round(200 * 0.1 / 0.9), "test": 100}
    for name, n in rows.items():
        assert sum(data["splits"][name]["labels"].values()) == n
        assert pq.read_metadata(root / f"data/split/{name}.parquet").num_rows == n
    assert set(data["duplicates"]) >= {"pool_rows_also_in_test", "removed_from_train_val"}
    assert data["duplicates"]["removed_from_train_val"] == 66
    assert json.loads((root / "data/split/labels.json").read_text())["labels"] == sorted(
        data["splits"]["train"]["labels"])

    tok = project.json("metrics/tokenize.json")
    assert tok["max_length"] == 48 and tok["truncation"] == "head"
    assert {name: tok["splits"][name]["docs"] for name in rows} == rows
    assert tok["docs"] == sum(rows.values())
    assert tok["tokens"] > 0 and tok["tokens_per_s"] > 0
    lengths = token_lengths(root)
    assert len(lengths) == 200 and max(lengths) <= 48

    # 2. nothing to do right after a successful run
    assert project.changed() == set()
    assert project.repro() == []
    assert project.changed() == set()

    # Below, `dvc repro tokenize` reproduces tokenize and everything upstream of it (whatever
    # is out of date there runs), but not the slower stages after it.

    # 3. tokenize.max_length re-runs tokenize, not download or split
    set_params(root, tokenize={"max_length": 32})
    changed = project.changed()
    assert "tokenize" in changed
    assert not changed & {"download@data", "download@encoder", "split"}
    ran = project.repro("tokenize")
    assert ran == ["tokenize"]
    assert project.json("metrics/tokenize.json")["max_length"] == 32
    assert max(token_lengths(root)) <= 32
    assert project.changed("tokenize") == set()

    # 4. encoder.name re-downloads the encoder only: never the dataset, never the split
    second = tmp_path / "tiny-bert-copy"
    shutil.copytree(tiny_bert_dir, second)
    set_params(root, encoder={"name": str(second)})
    changed = project.changed()
    assert "download@encoder" in changed
    assert not changed & {"download@data", "split"}
    ran = project.repro("tokenize")
    assert "download@encoder" in ran
    assert not set(ran) & {"download@data", "split"}, ran
    assert project.changed("tokenize") == set()
