"""`dvc repro`, `dvc exp`, `dvc plots` and a DVC remote end to end, in temporary git repositories.

The repository's files (tracked, plus untracked ones git does not ignore, so work in progress is
exercised too) are copied into a fresh git repository; params.yaml is the project's own with a
few keys made tiny (R8 from the mirror, 200 train / 100 test rows, a tiny BERT under
inputs/encoders/, short token sequences). The pipeline is reproduced once per module; each test
works on its own copy of that repository, DVC cache included.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import build_tiny_bert

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
RUNNING = re.compile(r"Running stage '([^']+)'")
STAGES = ("download@data", "download@encoder", "split", "tokenize", "pretrain", "featurize", "tfidf",
          "train", "evaluate", "combine")

# Tiny overrides of the project's params.yaml.
TINY: dict[str, dict[str, Any]] = {
    "data": {"name": "r8"},
    "split": {"max_train": 200, "max_test": 100},
    "encoder": {"name": "inputs/encoders/tiny"},
    "tokenize": {"max_length": 48, "max_sentences": 8, "max_sentence_tokens": 16, "batch_size": 64},
    "train": {"epochs": 2, "batch_size": 32},
    "han": {"hidden": 8, "attention_dim": 8},
    "runtime": {"log_every": 2},
}

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
        if not src.is_file() or rel.startswith(("tests/", "benchmarks/", "metrics/", "reports/", "plots/")):
            continue
        if rel == "dvc.lock":
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)


def set_params(repo: Path, **changes: dict[str, Any]) -> None:
    """Update sections of params.yaml (keys must exist: the loader refuses unknown ones)."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


class Project:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env, self.dvc = root, env, str(dvc_bin())

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), cwd=self.root, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            command = " ".join(args)
            raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def repro(self, *targets: str) -> list[str]:
        """Run `dvc repro [targets]`; return the names of the stages that ran."""
        done = self.run(self.dvc, "repro", *targets)
        return RUNNING.findall(done.stdout + done.stderr)

    def exp_run(self, *args: str) -> list[str]:
        done = self.run(self.dvc, "exp", "run", *args)
        return RUNNING.findall(done.stdout + done.stderr)

    def changed(self, *targets: str) -> set[str]:
        """Stages `dvc status [targets]` reports as changed (targets include their upstream)."""
        out = self.run(self.dvc, "status", "--json", *targets).stdout
        return set(json.loads(out or "{}"))

    def json(self, rel: str) -> Any:
        return json.loads((self.root / rel).read_text())

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "--allow-empty", "-m", message)

    def git_status(self) -> str:
        return self.run("git", "status", "--porcelain").stdout


def environment(tmp: Path, mirror: Path, root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(root / "src"),  # the copy's code, not the editable install's
        "BERTCLF_MIRROR": str(mirror),
        "BERTCLF_CACHE": str(tmp / "cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"),
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }


def new_project(root: Path, tmp: Path, mirror: Path, params: dict[str, dict[str, Any]]) -> Project:
    """This worktree copied to `root` with the tiny encoder, as a git + DVC repository whose
    params are `params`, committed."""
    root.mkdir()
    copy_worktree(root)
    build_tiny_bert(root / "inputs" / "encoders" / "tiny")
    project = Project(root, environment(tmp, mirror, root))
    project.run("git", "init", "-q")
    if not (root / ".dvc" / "config").exists():
        project.run(project.dvc, "init", "-q")
    set_params(root, **params)
    project.commit("the project with small params")
    return project


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> tuple[Path, list[str]]:
    """A repository where the tiny pipeline has run once and everything is committed."""
    tmp = tmp_path_factory.mktemp("pipeline")
    p = new_project(tmp / "base", tmp, mirror, TINY)
    ran = p.repro()
    p.commit("a first run")
    return p.root, ran


@pytest.fixture
def project(built: tuple[Path, list[str]], tmp_path: Path, mirror: Path) -> Iterator[Project]:
    """A copy of the built repository (git history, DVC cache and outputs) for one test."""
    root = tmp_path / "repo"
    shutil.copytree(built[0], root, symlinks=True)
    yield Project(root, environment(tmp_path, mirror, root))


def token_lengths(root: Path) -> list[int]:
    return pq.read_table(root / "data/tokens/train.parquet", columns=["length"]).column("length").to_pylist()


def test_a_full_run_writes_scores_reports_and_a_model(built: tuple[Path, list[str]],
                                                      project: Project) -> None:
    root, ran = project.root, built[1]
    assert sorted(ran) == sorted(STAGES)
    assert ran.index("download@data") < ran.index("split") < ran.index("tokenize") < ran.index("featurize")

    manifest = project.json("data/raw/manifest.json")
    assert manifest["dataset"] == "r8"
    assert {f["file"] for f in manifest["files"].values()} == {"r8-train-all-terms.tsv",
                                                                "r8-test-all-terms.tsv"}
    assert (root / "models/encoder/model.safetensors").is_file()
    assert json.loads((root / "models/encoder/source.json").read_text())["name"] == "inputs/encoders/tiny"

    data = project.json("reports/pipeline/split.json")
    assert data["source_rows"] == {"train": 5485, "test": 2189}
    assert data["test_subsampled"] is True and data["test_rows_full"] == 2189
    rows = {name: data["splits"][name]["rows"] for name in ("train", "val", "test")}
    assert rows == {"train": 200, "val": round(200 * 0.1 / 0.9), "test": 100}
    for name, n in rows.items():
        assert pq.read_metadata(root / f"data/split/{name}.parquet").num_rows == n
    assert data["duplicates"]["removed_from_train_val"] == 66
    tok = project.json("reports/pipeline/tokenize.json")
    assert tok["max_length"] == 48 and tok["docs"] == sum(rows.values())
    assert "docs_per_s" not in tok and "seconds" not in json.dumps(tok)  # timings are in the run log
    assert project.json("logs/tokenize.json")["docs_per_s"] > 0
    assert len(token_lengths(root)) == 200 and max(token_lengths(root)) <= 48

    # metrics are scores, and the subsampled test set is flagged beside them
    scores = project.json("metrics/eval.json")
    assert set(scores) == {"val", "test"} and set(scores["val"]) == {"acc", "macro_f1"}
    assert scores["test"]["subsampled"] is True
    assert set(project.json("metrics/train.json")) == {"best_epoch", "train", "val"}
    tfidf = project.json("metrics/tfidf.json")["tfidf"]
    assert set(tfidf) == {"val_acc", "test_acc"}
    # the interpolation of the two, its weight picked on validation, scores each part as they do
    both = project.json("reports/pipeline/combine.json")
    assert 0 <= both["lambda"] <= 1 and len(project.json("plots/combine/lambda.json")) == 21
    assert both["val"]["model_acc"] == scores["val"]["acc"] and both["test"]["tfidf_acc"] == tfidf["test_acc"]
    assert both["val"]["acc"] >= max(scores["val"]["acc"], tfidf["val_acc"])
    assert project.json("metrics/combine.json") == {"combine": {
        "lambda": both["lambda"], "val_acc": both["val"]["acc"], "test_acc": both["test"]["acc"]}}
    assert project.json("metrics/pretrain.json") == {}
    model = project.json("models/classifier/bertclf.json")
    assert model["encoder"] == {"name": "inputs/encoders/tiny", "revision": None}
    assert (root / "models/checkpoints/COMPLETE").is_file()

    assert project.changed() == set()
    assert project.repro() == []


def test_a_change_reruns_only_the_stages_it_reaches(project: Project, tmp_path: Path) -> None:
    root = project.root
    set_params(root, tokenize={"max_length": 32})
    changed = project.changed()
    assert "tokenize" in changed and not changed & {"download@data", "download@encoder", "split"}
    assert project.repro("tokenize") == ["tokenize"]
    assert max(token_lengths(root)) <= 32

    shutil.copytree(root / "inputs/encoders/tiny", root / "inputs/encoders/tiny2")
    set_params(root, encoder={"name": "inputs/encoders/tiny2"})
    ran = project.repro("tokenize")
    assert "download@encoder" in ran and not set(ran) & {"download@data", "split"}, ran

    # knobs that never change a result, and knobs of an arch not trained, re-run nothing
    project.repro()
    set_params(root, runtime={"threads": 1, "log_every": 5, "eval_batch_size": 7, "device": "cpu"},
               cnn={"num_filters": 7}, rnn={"hidden": 3}, finetune={"layer_lr_decay": 0.9})
    assert project.changed() == set()
    set_params(root, han={"dropout": 0.3})
    assert project.changed() == {"train"}


def test_going_back_to_a_variant_restores_its_stages_from_the_run_cache(project: Project) -> None:
    """Trying a variant and returning recomputes nothing upstream of training: DVC keeps a stage
    in its run-cache only when every output is cached (or a metric or plot), so a report kept in
    git as a plain `cache: false` output would make every `dvc exp run` re-featurize."""
    root = project.root
    set_params(root, tokenize={"max_length": 32})
    assert {"tokenize", "featurize"} <= set(project.repro())
    assert max(token_lengths(root)) <= 32
    project.run("git", "checkout", "--", "params.yaml")
    ran = project.repro()
    assert not set(ran) & {"split", "tokenize", "pretrain", "featurize", "tfidf"}, ran
    assert max(token_lengths(root)) > 32  # the first variant's tokens, restored
    assert project.changed() == set()


def test_typos_and_dvc_written_numbers(project: Project) -> None:
    root = project.root
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(text.replace("  dropout: 0.5\n", "  dropuot: 0.5\n", 1))
    done = project.run(project.dvc, "repro", check=False)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: params.yaml: unknown key han.dropuot; did you mean han.dropout?"], done.stderr
    assert "Traceback" not in done.stderr
    (root / "params.yaml").write_text(text)

    ran = project.exp_run("-S", "train.lr=3e-5")  # DVC writes `lr: 3e-05`
    assert "train" in ran
    assert "lr: 3e-05" in (root / "params.yaml").read_text()
    assert project.json("models/classifier/bertclf.json")["train"]["lr"] == 3e-05


def test_a_stale_model_is_never_reused(project: Project) -> None:
    root = project.root
    # features change upstream: the finished run's checkpoints are not resumed
    ran = project.exp_run("-S", "pretrain.steps=3")
    assert {"pretrain", "featurize", "train", "evaluate"} <= set(ran)
    log = project.json("logs/train.json")
    assert log["resumed_from_epoch"] == 0 and project.json("reports/pipeline/train.json")["epochs_run"] == 2
    assert project.json("metrics/pretrain.json")["mlm_loss_after"] > 0
    project.commit("pretrain 3 steps")

    # a forced re-run recomputes, and gives the same bytes: git stays clean
    assert "train" in project.repro("-f")
    assert project.json("logs/train.json")["resumed_from_epoch"] == 0
    assert project.git_status() == ""

    # a run killed after its last checkpoint resumes there; after a change to the model code it
    # starts over
    (root / "models/checkpoints/COMPLETE").unlink()
    assert "train" in project.repro("-f", "-s", "train")
    assert project.json("logs/train.json")["resumed_from_epoch"] == 2
    (root / "models/checkpoints/COMPLETE").unlink()
    models = root / "src/bertclf/models/han.py"
    models.write_text(models.read_text() + "\n# a change to the model code\n")
    assert "train" in project.repro()
    assert project.json("logs/train.json")["resumed_from_epoch"] == 0


def write_csv(path: Path, rows: int, offset: int = 0) -> None:
    words = {"pos": "great good fine", "neg": "bad awful poor"}
    lines = ["text,label"]
    for i in range(offset, offset + rows):
        label = "pos" if i % 2 else "neg"
        lines.append(f"\"{words[label]} film number {i}\",{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_your_own_files_are_dependencies(project: Project) -> None:
    root = project.root
    write_csv(root / "inputs/data/my.csv", 60)
    write_csv(root / "inputs/data/my_test.csv", 20, offset=1000)
    set_params(root, data={"name": "file", "path": "inputs/data/my.csv",
                           "test_path": "inputs/data/my_test.csv"},
               split={"max_test": None})
    project.commit("my own data")
    project.repro()
    assert project.json("reports/pipeline/split.json")["source_rows"] == {"train": 60, "test": 20}
    project.commit("run on my data")

    write_csv(root / "inputs/data/my.csv", 80)  # edited in place
    assert "download@data" in project.changed()
    ran = project.repro()
    assert {"download@data", "split", "tokenize", "train", "evaluate"} <= set(ran), ran
    assert project.json("reports/pipeline/split.json")["source_rows"] == {"train": 80, "test": 20}

    write_csv(root / "inputs/data/my_test.csv", 24, offset=1000)
    assert "download@data" in project.changed()
    config = root / "inputs/encoders/tiny/config.json"
    config.write_text(config.read_text() + "\n")  # a local encoder directory, edited
    assert {"download@data", "download@encoder"} <= project.changed()


def test_a_queued_experiment_reads_a_dvc_tracked_file(project: Project) -> None:
    root = project.root
    write_csv(root / "inputs/data/big.csv", 70)
    project.run(project.dvc, "add", "-q", "inputs/data/big.csv")
    project.commit("a large file, tracked by DVC")
    project.run(project.dvc, "exp", "run", "--queue", "-n", "mine", "-S", "data.name=file",
                "-S", "data.path=inputs/data/big.csv", "-S", "split.max_test=null")
    project.run(project.dvc, "exp", "run", "--run-all")
    shown = json.loads(project.run(project.dvc, "exp", "show", "--json").stdout)
    exps = {e["name"]: e for c in shown for e in c.get("experiments") or []}
    assert exps["mine"]["executor"] is None or exps["mine"]["executor"]["state"] == "success"
    project.run(project.dvc, "exp", "apply", "mine")
    assert project.json("reports/pipeline/split.json")["source_rows"]["train"] == 70


def test_experiments_compare_in_a_narrow_table_and_in_plots(project: Project) -> None:
    for name, setting in (("drop3", "han.dropout=0.3"), ("lr5", "train.lr=0.005"), ("wide", "han.hidden=12")):
        project.exp_run("-n", name, "-S", setting)
    # changed columns only, without the hash columns of directories (the README's forms: test_readme.py)
    table = project.run(project.dvc, "exp", "show", "--only-changed", "--drop", ".*/", "--no-pager",
                        env={"COLUMNS": "1000"}).stdout
    lines = [line.rstrip() for line in table.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 200, table
    header = lines[1].split()
    assert header[:2] == ["Experiment", "Created"]
    metrics = [i for i, name in enumerate(header) if name.split(".")[0] in ("val", "test", "train", "epoch",
                                                                            "best_epoch", "tfidf", "combine")
               and name not in ("train.lr",)]
    params = [i for i, name in enumerate(header) if name in ("train.lr", "han.dropout", "han.hidden")]
    assert metrics and params and max(metrics) < min(params), header  # scores first, then params

    shown = json.loads(project.run(project.dvc, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown.get("errors")
    vega = {name: items[0]["content"] for name, items in shown["data"].items() if items[0]["type"] == "vega"}
    assert set(vega) == {"Loss per epoch", "Validation accuracy per epoch", "Train loss per step",
                         "Learning rate per step", "Accuracy (validation and test)", "Per-class F1 (test)",
                         "Confusion matrix (test)", "Confusion matrix, normalized (test)",
                         "Validation accuracy against the TF-IDF weight (combine)"}
    for name, spec in vega.items():
        assert spec["data"]["values"], name
        body = spec.get("spec", spec)
        encoding = body.get("encoding") or body["layer"][0]["encoding"]
        assert encoding["y"].get("title"), name
        if "epoch" in name:
            assert encoding["x"]["title"] == "epoch" and encoding["x"]["axis"]["tickMinStep"] == 1, name

    diff = json.loads(project.run(project.dvc, "plots", "diff", "drop3", "lr5", "wide", "--json").stdout)
    accuracy = diff["data"]["Accuracy (validation and test)"][0]["content"]["data"]["values"]
    assert {(v["rev"], v["split"]) for v in accuracy} == {
        (rev, split) for rev in ("drop3", "lr5", "wide") for split in ("validation", "test")}

    compare = project.run(str(VENV_BIN / "bertclf"), "compare", "--dataset", "r8")
    assert "| tfidf |" in compare.stdout and "| han |" in compare.stdout
    listed = project.run(str(VENV_BIN / "python"), "-c", "from bertclf.experiments.study import experiments; "
                         "print(sorted((e['kind'], e['name']) for e in experiments()))").stdout
    rows = ast.literal_eval(listed)
    assert ("workspace", "workspace") in rows and ("experiment", "wide") in rows


def test_a_remote_shares_the_results(project: Project, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    project.run(project.dvc, "remote", "add", "-d", "store", str(remote))
    project.commit("a remote")
    project.run(project.dvc, "push")
    clone = tmp_path / "clone"
    project.run("git", "clone", "-q", str(project.root), str(clone))
    other = Project(clone, {**project.env, "PYTHONPATH": str(clone / "src")})
    other.run(other.dvc, "pull")
    assert other.changed() == set()
    assert other.git_status() == ""
    done = other.run(str(VENV_BIN / "bertclf"), "predict", "-m", "models/classifier", "crude oil prices rose")
    label = done.stdout.split("\t")[0]
    assert label in json.loads((clone / "models/classifier/labels.json").read_text())["labels"]
