"""The README is a quick start read top to bottom: at most 150 lines, every shell command in it run
by a test, by CI or here, and every relative link of README.md and docs/*.md resolving.

A command added to a ```bash block of the README without an entry in COVERED fails
`test_every_readme_command_is_run_by_a_test_by_ci_or_here`; an entry must name an existing test
function, text of `.ci/run`, or be run by a test of this file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CI = ROOT / ".ci" / "run"
BIN = Path(sys.executable).parent
MAX_LINES = 150
MAX_COLUMNS = 200

PIPELINE = "tests/test_pipeline_integration.py::"
PREDICT = "tests/test_predict.py::"
COMPARE = PIPELINE + "test_experiments_compare_in_a_narrow_table_and_in_plots"
GOING_BACK = PIPELINE + "test_going_back_to_a_variant_restores_its_stages_from_the_run_cache"

# Every command of the README's ```bash blocks (as shlex.join writes it, comments dropped) and what
# runs it: "tests/<file>.py::<test>", "ci: <text> [+ <text>]" (each text is a command of .ci/run),
# or "here" (a test of this file runs it).
COVERED: dict[str, str] = {
    # `make repro` is `make setup` then `dvc repro`: CI runs `make test` (which sets up) and the repro
    "make repro": "ci: make test + dvc repro --force",
    "source .venv/bin/activate": "here",
    "dvc metrics show": "here",
    "bertclf predict 'the plot drags but the acting is superb'":
        PREDICT + "test_cli_predict_texts_files_and_interactive",
    "make test": "ci: make test",
    "bertclf init reviews.csv": "tests/test_init.py::test_a_file_with_a_header_and_other_columns",
    "bertclf init tags.csv": "tests/test_multi_label.py::test_init_recognises_each_multi_label_shape",
    "bertclf init ratings.csv":
        "tests/test_ordinal.py::test_init_takes_a_rating_column_for_ordinal_and_codes_for_classes",
    "dvc exp run": COMPARE,
    "bertclf predict -i new.csv -o scored.csv": PREDICT + "test_cli_predict_texts_files_and_interactive",
    "bertclf serve": "tests/test_serve.py::test_answers_equal_predict",
    "git checkout params.yaml": GOING_BACK,
    "dvc repro": GOING_BACK,
    "bertclf datasets": "here",
    "dvc exp run -S data.name=r8": PIPELINE + "test_a_queued_experiment_reads_a_dvc_tracked_file",
    "dvc exp run -n drop3 -S han.dropout=0.3": COMPARE,
    "dvc exp show --only-changed --keep 'val.acc|test.acc|combine.*acc' --drop "
    "'Created|.*/|best_epoch|.*loss|.*f1|.*subsampled|.*lambda|tfidf|runtime'": "here",
    "dvc exp show --drop '.*' --keep "
    "'Experiment|val.acc|test.acc|combine.*acc|data.name|train.(arch|seed)'": "here",
    "bertclf compare": COMPARE,
    "bertclf export -m models/classifier -o models/onnx":
        PREDICT + "test_export_onnx_and_int8_keep_predictions",
}

# the commands run here as they are, with a text their output shows
RUN_HERE = {"bertclf datasets": "rotten_tomatoes", "dvc metrics show": "test.acc"}
SCORES = ["val.acc", "test.acc", "combine.val_acc", "combine.test_acc"]


def shell_commands(text: str) -> list[str]:
    """Each command of the ```bash / ```sh blocks of `text`: lines joined at a trailing `\\`,
    comments dropped, split at `&&`, `||`, `|` and `;`, written back by shlex.join."""
    found = []
    for block in re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars="&|;")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            command: list[str] = []
            for token in [*lexer, ";"]:
                if token in ("&&", "||", "|", ";"):
                    if command:
                        found.append(shlex.join(command))
                    command = []
                else:
                    command.append(token)
    return found


def readme_commands() -> list[str]:
    return shell_commands(README.read_text(encoding="utf-8"))


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
            "NO_COLOR": "1", "COLUMNS": "1000"}


def test_the_readme_is_at_most_150_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move reference material to docs/"


def test_the_quick_start_shows_make_repro_and_make_test() -> None:
    commands = readme_commands()
    assert commands[:1] == ["make repro"] and "make test" in commands, commands


def test_the_command_extraction_splits_joins_and_drops_comments() -> None:
    text = ("```bash\ngit add a && git commit -m 'b c'   # why\nls \\\n  -l | wc -l\n```\n"
            "```\nnot a shell\n```\n")
    assert shell_commands(text) == ["git add a", "git commit -m 'b c'", "ls -l", "wc -l"]


def test_every_readme_command_is_run_by_a_test_by_ci_or_here() -> None:
    commands = readme_commands()
    uncovered = [c for c in commands if c not in COVERED]
    assert not uncovered, f"README commands run by no test: add a test, or an entry in COVERED: {uncovered}"
    stale = [c for c in COVERED if c not in commands]
    assert not stale, f"COVERED lists commands the README no longer has: {stale}"
    ci = "\n".join(line for line in CI.read_text(encoding="utf-8").splitlines()
                   if not line.lstrip().startswith("#"))  # commands, not comments
    for command, runner in COVERED.items():
        if runner == "here":
            assert command in RUN_HERE or command.startswith(("dvc exp show ", "source ")), command
        elif runner.startswith("ci: "):
            for needed in runner.removeprefix("ci: ").split(" + "):
                assert re.search(rf"(^|[\s/]){re.escape(needed)}(\s|$)", ci, re.M), (command, needed)
        else:
            file, _, name = runner.partition("::")
            source = (ROOT / file).read_text(encoding="utf-8")
            assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{command}: no {runner}"


@pytest.mark.parametrize("command", sorted(RUN_HERE))
def test_cheap_commands_run(command: str) -> None:
    assert command in readme_commands()
    done = subprocess.run(shlex.split(command), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert RUN_HERE[command] in done.stdout, done.stdout


def test_activating_the_environment_puts_its_commands_first() -> None:
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip("no .venv in the checkout (make setup makes it)")
    assert "source .venv/bin/activate" in readme_commands()
    done = subprocess.run(["bash", "-c", "source .venv/bin/activate && command -v bertclf dvc"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [Path(p).parent for p in done.stdout.split()] == [ROOT / ".venv" / "bin"] * 2, done.stdout


# Experiments like this repository's (RESULTS.md): dotted params changed against the defaults.
FT = {"train.arch": "finetune", "train.lr": 1e-4, "train.epochs": 3, "train.batch_size": 16,
      "train.lr_decay": "linear", "train.warmup_ratio": 0.1, "finetune.layer_lr_decay": 0.95,
      "runtime.eval_batch_size": 64}
NO_DROPOUT = {"finetune.hidden_dropout": 0, "finetune.attention_dropout": 0}
CONCAT = {"data.name": "r52", "featurize.layers": "concat_last_4", "train.epochs": 12}
# a study: five params differ from the baseline row
STUDY = {
    "han-r52-concat4-h100-s42": {**CONCAT, "han.hidden": 100},
    "han-r52-concat4-h100-s7": {**CONCAT, "han.hidden": 100, "train.seed": 7},
    "han-r52-concat4-h100-s1": {**CONCAT, "han.hidden": 100, "train.seed": 1},
    "han-r52-concat4-h200-s42": {**CONCAT, "han.hidden": 200},
}
# every kind at once: twenty params differ
MIXED = {
    **STUDY,
    "r8-ft-nodrop-s7": {"data.name": "r8", **FT, **NO_DROPOUT, "train.seed": 7},
    "r8-ft-nodrop-lr5e-5-s42": {"data.name": "r8", **FT, **NO_DROPOUT, "train.lr": 5e-5},
    "han-r52-concat4-h100-bal-s42": {**CONCAT, "han.hidden": 100, "train.class_weights": "balanced"},
    "han-webkb-concat4-span32-s1": {"data.name": "webkb", "featurize.layers": "concat_last_4",
                                    "tokenize.max_sentence_tokens": 32, "train.seed": 1},
    "imdb-ft-headtail-nodrop-e2-s42": {"data.name": "imdb", "tokenize.truncation": "head_tail", **FT,
                                       **NO_DROPOUT, "train.epochs": 2},
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True,
                          text=True)
    return done.stdout.strip()


def experiments_repo(root: Path, experiments: dict[str, dict[str, object]]) -> Path:
    """A git + DVC repository with this project's dvc.yaml, params and metrics, and one DVC
    experiment ref per entry: its params changed and metrics of its own (nothing run)."""
    import yaml

    root.mkdir()
    for rel in ("dvc.yaml", "params.yaml", ".dvc/config", *(p.relative_to(ROOT).as_posix()
                                                           for p in (ROOT / "metrics").glob("*.json"))):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, root / rel)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baseline")
    base = git(root, "rev-parse", "HEAD")
    default = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    for n, (name, changes) in enumerate(experiments.items()):
        params = json.loads(json.dumps(default))
        for key, value in changes.items():
            section, option = key.split(".")
            params[section][option] = value
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        score = round(0.9 + n / 1000 + 0.00123, 5)
        metrics = {"eval": {"val": {"acc": score, "macro_f1": score - 0.1},
                            "test": {"acc": score - 0.01, "macro_f1": score - 0.11, "subsampled": False}},
                   "train": {"best_epoch": 1 + n % 5, "train": {"loss": 0.12345 + n},
                             "val": {"loss": 0.23456}},
                   "combine": {"combine": {"lambda": 0.05 * n, "val_acc": score + 0.005, "test_acc": score}}}
        for file, values in metrics.items():
            (root / "metrics" / f"{file}.json").write_text(json.dumps(values), encoding="utf-8")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", name)
        git(root, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/{name}", "HEAD")
        git(root, "reset", "-q", "--hard", base)
    return root


def exp_show(repo: Path, command: str, tmp: Path) -> list[str]:
    """The table `command` prints, as a pager would get it: at its full width."""
    done = subprocess.run(shlex.split(command), cwd=repo, capture_output=True, text=True, timeout=120,
                          env={**env(), "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site")})
    assert done.returncode == 0, done.stderr
    return [line.rstrip() for line in done.stdout.splitlines() if line.strip()]


def columns_of(table: list[str]) -> list[str]:
    return table[1].split()


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("exp-show")
    return {"study": experiments_repo(tmp / "study", STUDY), "mixed": experiments_repo(tmp / "mixed", MIXED),
            "tmp": tmp}


def exp_show_commands() -> tuple[str, str]:
    shown = [c for c in readme_commands() if c.startswith("dvc exp show ")]
    assert len(shown) == 2, shown  # the compact table, and the one with named columns
    return shown[0], shown[1]


def test_the_compact_exp_show_fits_200_columns_with_the_params_that_differ(repos: dict[str, Path]) -> None:
    compact, _ = exp_show_commands()
    table = exp_show(repos["study"], compact, repos["tmp"])
    assert max(map(len, table)) <= MAX_COLUMNS, "\n".join(table)
    columns = columns_of(table)
    assert columns[0] == "Experiment" and columns[1:5] == SCORES, columns  # scores first
    assert set(columns[5:]) == {"data.name", "featurize.layers", "han.hidden", "train.epochs", "train.seed"}
    assert sum("[han-r52-concat4-" in line for line in table) == len(STUDY)


def test_the_exp_show_with_named_columns_fits_200_columns_whatever_differs(repos: dict[str, Path]) -> None:
    _, named = exp_show_commands()
    table = exp_show(repos["mixed"], named, repos["tmp"])
    assert max(map(len, table)) <= MAX_COLUMNS, "\n".join(table)
    assert columns_of(table) == ["Experiment", *SCORES, "data.name", "train.arch", "train.seed"]
    assert sum(" [" in line for line in table) == len(MIXED)


def test_both_exp_show_forms_fit_on_the_workspace_alone(tmp_path: Path) -> None:
    """A fresh clone: no experiments, the workspace and its commit."""
    repo = experiments_repo(tmp_path / "fresh", {})
    for command in exp_show_commands():
        table = exp_show(repo, command, tmp_path)
        assert max(map(len, table)) <= MAX_COLUMNS and columns_of(table)[1:5] == SCORES, "\n".join(table)


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    found = set()
    for heading in re.findall(r"^#+ +(.+?) *$", path.read_text(encoding="utf-8"), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_an_existing_file(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"
