"""Bad input through the `download` + `split` stages: a clear error naming the file and the line
(or the policy applied, recorded in reports/pipeline/split.json), and no output left half-written.

Each case runs twice: in a fresh work directory (the outputs must not appear) and over the
outputs of an earlier successful run (they must be left byte for byte as they were).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from bertclf.config import DataConfig
from bertclf.errors import BertclfError, ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
GOOD_ROWS = [row for i in range(10) for row in ((f"fine movie {i}", "pos"), (f"bad movie {i}", "neg"))]


def csv_text(rows: list[tuple[str, str]], header: str = "text,label") -> str:
    return header + "\n" + "".join(f"{t},{lab}\n" for t, lab in rows)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes), hidden temp files included."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def seed_previous_run(work: Path) -> None:
    """Outputs as an earlier successful run left them."""
    for rel in ("data/raw/manifest.json", "data/split/train.parquet", "data/split/labels.json"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(f"previous {rel}\n")
    (work / "reports").mkdir(exist_ok=True)
    (work / "reports" / "split.json").write_text('{"previous": true}\n')


def fails_cleanly(work: Path, run: Callable[[Path], Any], error: type[BertclfError],
                  previous: bool) -> str:
    """Run a failing stage in `work`; check the outputs; return the error message."""
    if previous:
        seed_previous_run(work)
    before = {d: snapshot(work / d) for d in ("data/split", "reports")}
    with pytest.raises(error) as err:
        run(work)
    for d, files in before.items():
        assert snapshot(work / d) == files, f"{d} changed by a failed run"
        if not previous:
            assert not (work / d).exists() or not any((work / d).iterdir()), f"{d} left behind"
    for parent in (work / "data", work / "reports", work):
        if parent.exists():
            leftovers = [p.name for p in parent.iterdir() if p.name.endswith((".tmp", ".old"))]
            assert leftovers == [], f"temporary files left in {parent}: {leftovers}"
    return str(err.value)


def names_file_and_line(msg: str, file_names: tuple[str, ...], line: int | None) -> None:
    """The message names one of `file_names` (the user's file or its copy in data/raw)."""
    assert any(n in msg for n in file_names), f"no file name {file_names} in: {msg}"
    if line is not None:
        assert re.search(rf"\bline {line}\b", msg), f"no 'line {line}' in: {msg}"


@pytest.fixture(params=[False, True], ids=["fresh", "over-previous-run"])
def previous(request: pytest.FixtureRequest) -> bool:
    return request.param


def user_file(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / "user" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_malformed_json_line(tmp_path: Path, split_stage: Callable, previous: bool) -> None:
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in GOOD_ROWS]
    lines.insert(6, '{"text": "cut short", "label": ')
    f = user_file(tmp_path, "reviews.jsonl", "\n".join(lines) + "\n")
    data = {"name": "file", "path": str(f)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    names_file_and_line(msg, ("reviews.jsonl", "train.jsonl"), 7)
    assert "malformed JSON" in msg


def test_tsv_row_without_tab(tmp_path: Path, split_stage: Callable, previous: bool) -> None:
    rows = "".join(f"{t}\t{lab}\n" for t, lab in GOOD_ROWS[:4])
    f = user_file(tmp_path, "mine.tsv", "text\tlabel\n" + rows + "a row with no tab\n" + rows)
    data = {"name": "file", "path": str(f)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    names_file_and_line(msg, ("mine.tsv", "train.tsv"), 6)


@pytest.mark.parametrize("missing", ["text", "label"])
def test_missing_text_or_label_column(tmp_path: Path, split_stage: Callable, previous: bool,
                                      missing: str) -> None:
    header = "review,label" if missing == "text" else "text,sentiment"
    f = user_file(tmp_path, "mine.csv", csv_text(GOOD_ROWS, header))
    data = {"name": "file", "path": str(f)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    names_file_and_line(msg, ("mine.csv", "train.csv"), 1)
    assert f"no column '{missing}'" in msg and "data.text_column" in msg


def test_missing_label_key_in_jsonl(tmp_path: Path, split_stage: Callable, previous: bool) -> None:
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in GOOD_ROWS]
    lines[3] = json.dumps({"text": "no label here"})
    f = user_file(tmp_path, "reviews.jsonl", "\n".join(lines) + "\n")
    data = {"name": "file", "path": str(f)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    names_file_and_line(msg, ("reviews.jsonl", "train.jsonl"), 4)
    assert "missing key 'label'" in msg


def test_empty_texts_error_policy(tmp_path: Path, split_stage: Callable, previous: bool) -> None:
    rows = [*GOOD_ROWS[:5], ("", "pos"), *GOOD_ROWS[5:]]
    f = user_file(tmp_path, "mine.csv", csv_text(rows))
    data = {"name": "file", "path": str(f)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data, {"empty_texts": "error"}),
                        DataError, previous)
    names_file_and_line(msg, ("mine.csv", "train.csv"), 7)
    assert "empty text" in msg and "split.empty_texts" in msg


def test_empty_texts_drop_policy_is_recorded(tmp_path: Path, split_stage: Callable) -> None:
    train = [*GOOD_ROWS, ("", "pos"), ("   ", "neg")]
    test = [("fine film", "pos"), ("", "neg"), ("bad film", "neg")]
    data = {"name": "file", "path": str(user_file(tmp_path, "train.csv", csv_text(train))),
            "test_path": str(user_file(tmp_path, "test.csv", csv_text(test)))}
    work = tmp_path / "work"
    report = split_stage(work, data)
    metrics = json.loads((work / "reports" / "split.json").read_text())
    assert metrics == json.loads(json.dumps(report))
    assert metrics["empty_texts"]["train"] == 2 and metrics["empty_texts"]["test"] == 1
    assert metrics["empty_texts"]["policy"] == "drop"
    for name in ("train", "val"):
        df = pd.read_parquet(work / "data" / "split" / f"{name}.parquet")
        assert not df["text"].str.strip().eq("").any()
    test_df = pd.read_parquet(work / "data" / "split" / "test.parquet")
    assert test_df["text"].tolist() == ["fine film", "", "bad film"]  # test kept whole
    assert metrics["splits"]["train"]["rows"] + metrics["splits"]["val"]["rows"] == len(GOOD_ROWS)


def test_label_in_test_that_train_never_saw(tmp_path: Path, split_stage: Callable, previous: bool) -> None:
    test = [("fine film", "pos"), ("odd film", "neutral"), ("bad film", "neg")]
    data = {"name": "file", "path": str(user_file(tmp_path, "train.csv", csv_text(GOOD_ROWS))),
            "test_path": str(user_file(tmp_path, "heldout.csv", csv_text(test)))}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    names_file_and_line(msg, ("heldout.csv", "test.csv"), 3)
    assert "'neutral'" in msg and "pos" in msg and "neg" in msg


@pytest.mark.parametrize("kind", ["csv", "jsonl", "tsv"])
def test_non_utf8_bytes(tmp_path: Path, split_stage: Callable, previous: bool, kind: str) -> None:
    good = {"csv": "fine,pos\n", "jsonl": '{"text": "fine", "label": "pos"}\n', "tsv": "fine\tpos\n"}[kind]
    bad = {"csv": b"caf\xe9,pos\n", "jsonl": b'{"text": "caf\xe9", "label": "pos"}\n',
           "tsv": b"caf\xe9\tpos\n"}[kind]
    header = {"csv": "text,label\n", "jsonl": "", "tsv": "text\tlabel\n"}[kind]
    content = (header + good * 4).encode() + bad + (good * 4).encode()
    f = user_file(tmp_path, f"latin1.{kind}", content)
    data = {"name": "file", "path": str(f)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    names_file_and_line(msg, (f"latin1.{kind}", f"train.{kind}"), 5 + (header != ""))
    assert "UTF-8" in msg


@pytest.mark.parametrize("content", ["", "text,label\n", "text,label\n,pos\n  ,neg\n"],
                         ids=["empty-file", "header-only", "only-empty-texts"])
def test_empty_dataset(tmp_path: Path, split_stage: Callable, previous: bool, content: str) -> None:
    f = user_file(tmp_path, "nothing.csv", content)
    data = {"name": "file", "path": str(f)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    names_file_and_line(msg, ("nothing.csv", "train.csv"), None)


def test_unknown_data_name(tmp_path: Path, split_stage: Callable, previous: bool) -> None:
    work = tmp_path / "work"
    msg = fails_cleanly(work, lambda w: split_stage(w, {"name": "imbd"}), ConfigError, previous)
    assert "data.name" in msg and "'imbd'" in msg
    for name in ("imdb", "r8", "r52", "webkb", "yelp2013", "rotten_tomatoes", "file"):
        assert name in msg
    if previous:
        assert (work / "data" / "raw" / "manifest.json").read_text() == "previous data/raw/manifest.json\n"
    else:
        assert not (work / "data" / "raw").exists()


def test_file_dataset_without_path(tmp_path: Path, split_stage: Callable) -> None:
    with pytest.raises(ConfigError, match=r"data\.path"):
        split_stage(tmp_path, {"name": "file"})


def test_missing_user_file_names_it(tmp_path: Path, split_stage: Callable) -> None:
    from bertclf.errors import ArtifactNotFound

    missing = tmp_path / "nope.csv"
    with pytest.raises(ArtifactNotFound) as err:
        split_stage(tmp_path / "work", {"name": "file", "path": str(missing)})
    assert str(missing) in str(err.value)
    assert not (tmp_path / "work" / "data" / "raw").exists()


def test_raw_data_of_another_dataset_is_refused(tmp_path: Path, split_stage: Callable) -> None:
    from bertclf.data.datasets import load_raw

    f = user_file(tmp_path, "mine.csv", csv_text(GOOD_ROWS))
    split_stage(tmp_path / "work", {"name": "file", "path": str(f)})
    with pytest.raises(ConfigError, match=r"holds 'file' but data\.name is 'r8'"):
        load_raw(tmp_path / "work" / "data" / "raw", DataConfig(name="r8"))


# --- the stage scripts themselves: exit status 1, one line, no traceback, no output ---------

def run_stage(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    env.pop("BERTCLF_MIRROR", None)
    return subprocess.run([sys.executable, "-m", f"stages.{args[0].removesuffix('.py')}", *args[1:]],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)


def write_params(work: Path, data: dict[str, Any]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(data)
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params))


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The stage failed with exit status 1 and one `error:` line, no traceback; return the line."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, done.stderr
    return error_lines[0]


def test_split_stage_script_reports_malformed_json_without_traceback(tmp_path: Path) -> None:
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in GOOD_ROWS]
    lines[2] = "{not json"
    work = tmp_path / "work"
    user_file(work / "inputs", "reviews.jsonl", "\n".join(lines) + "\n")
    write_params(work, {"name": "file", "path": "inputs/user/reviews.jsonl"})
    done = run_stage(work, "download.py", "data", "data/raw", "--inputs", "inputs")
    assert done.returncode == 0, done.stderr
    done = run_stage(work, "split.py", "data/raw", "data/split", "reports/split.json")
    names_file_and_line(one_error_line(done), ("reviews.jsonl", "train.jsonl"), 3)
    assert not (work / "data" / "split").exists()
    assert not (work / "reports").exists()


def test_a_user_file_outside_the_tracked_inputs_is_refused(tmp_path: Path) -> None:
    f = user_file(tmp_path, "mine.csv", csv_text(GOOD_ROWS))
    work = tmp_path / "work"
    (work / "inputs" / "data").mkdir(parents=True)
    write_params(work, {"name": "file", "path": str(f)})
    done = run_stage(work, "download.py", "data", "data/raw", "--inputs", "inputs/data")
    line = one_error_line(done)
    assert f"data.path='{f}' is outside inputs/data/" in line and "ln -s" in line
    assert not (work / "data").exists()
    write_params(work, {"name": "file", "path": "inputs/data/absent.csv"})
    line = one_error_line(run_stage(work, "download.py", "data", "data/raw", "--inputs", "inputs/data"))
    assert "does not exist" in line and "dvc add" in line


def test_download_stage_script_reports_unknown_dataset(tmp_path: Path) -> None:
    work = tmp_path / "work"
    write_params(work, {"name": "no-such-set"})
    done = run_stage(work, "download.py", "data", "data/raw", "--inputs", "inputs/data")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "error: params.yaml: unknown data.name 'no-such-set'" in done.stderr
    assert not (work / "data").exists()


# --- labels that cannot make a classifier -------------------------------------------------

def test_single_class_data_is_refused_in_split_naming_the_file_and_the_label(
        tmp_path: Path, split_stage: Callable, previous: bool) -> None:
    rows = [(f"fine movie {i}", "pos") for i in range(20)]
    data = {"name": "file", "path": str(user_file(tmp_path, "reviews.csv", csv_text(rows)))}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, previous)
    assert str(tmp_path / "user" / "reviews.csv") in msg and "'pos'" in msg and "two labels" in msg


@pytest.mark.parametrize("spelling", ["NaN", "nan", "NULL", "N/A", "#N/A", "None"])
@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_a_missing_value_as_label_is_refused_not_made_a_class(tmp_path: Path, split_stage: Callable,
                                                              spelling: str, kind: str) -> None:
    rows = [*GOOD_ROWS[:5], ("unlabelled film", spelling), *GOOD_ROWS[5:]]
    path = tmp_path / "user" / f"reviews.{kind}"
    path.parent.mkdir(parents=True)
    if kind == "csv":
        path.write_text(csv_text(rows), encoding="utf-8")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    else:
        pd.DataFrame(rows, columns=["text", "label"]).to_parquet(path)
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, {"name": "file", "path": str(path)}),
                        DataError, False)
    assert str(path) in msg and repr(spelling) in msg and "missing value" in msg
    assert {"csv": "line 7", "jsonl": "line 6", "parquet": "row 5"}[kind] in msg  # csv: after the header


def test_a_class_too_small_for_every_split_is_warned_about(tmp_path: Path, split_stage: Callable,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    rows = [*GOOD_ROWS, ("a rare film", "rare")]
    data = {"name": "file", "path": str(user_file(tmp_path, "reviews.csv", csv_text(rows)))}
    with caplog.at_level("WARNING"):
        split_stage(tmp_path / "work", data)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'rare' has 1 row" in w and "validation" in w for w in warnings), warnings
    assert not any("'pos'" in w or "'neg'" in w for w in warnings)


def test_an_unknown_test_label_names_the_users_test_file_once(tmp_path: Path, split_stage: Callable) -> None:
    test = [("fine film", "pos"), ("odd film", "neutral")]
    held = user_file(tmp_path, "heldout.csv", csv_text(test))
    data = {"name": "file", "path": str(user_file(tmp_path, "train.csv", csv_text(GOOD_ROWS))),
            "test_path": str(held)}
    msg = fails_cleanly(tmp_path / "work", lambda w: split_stage(w, data), DataError, False)
    assert msg.count(str(held)) == 1 and "data/raw" not in msg and "line 3" in msg


@pytest.mark.parametrize(("args", "module", "function"), [
    (["compare", "--dataset", "r8"], "bertclf.experiments.compare", "write_compare"),
    (["study", "report", "studies/none.yaml"], "bertclf.experiments.study", "load_study"),
])
def test_every_command_runs_inside_the_one_error_boundary(args: list[str], module: str, function: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A command of the app or of its `study` group: an error the user can act on is one line and
    status 1; -v shows it whole; a bug is never turned into one line."""
    import errno
    import importlib

    from typer.testing import CliRunner

    from bertclf.cli import app
    from bertclf.errors import DEBUG_ENV

    target = importlib.import_module(module)
    monkeypatch.setenv(DEBUG_ENV, "0")  # teardown undoes what -v sets below

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "from the kernel", "reports/out.md")

    monkeypatch.setattr(target, function, full)
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0] == ("error: reports/out.md: no space left on the device: free some space "
                        "(or write elsewhere) and run again")
    assert "Traceback" not in result.output

    verbose = CliRunner().invoke(app, ["-v", *args])
    assert isinstance(verbose.exception, OSError) and verbose.exit_code == 1
    monkeypatch.setenv(DEBUG_ENV, "0")  # -v set it for the rest of the process

    def bug(*_: Any, **__: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(target, function, bug)
    crashed = CliRunner().invoke(app, args)
    assert isinstance(crashed.exception, KeyError) and "error: " not in crashed.stderr
