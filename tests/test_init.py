"""`bertclf init FILE`: columns guessed, label counts shown, the file tracked by DVC under
inputs/data/, params.yaml's data section set (comments kept); a file it cannot use is refused
with one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bertclf.cli import app
from bertclf.config import load_config
from bertclf.data.datasets import download_dataset, load_raw
from tests.test_real_world_files import AG_NEWS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty git + DVC project with the real params.yaml, as the working directory."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copyfile(ROOT / "params.yaml", root / "params.yaml")
    for args in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=root, check=True, capture_output=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    return root


def ag_news(path: Path, repeats: int = 4) -> Path:
    lines = AG_NEWS.splitlines(keepends=True)
    # distinct titles and descriptions, as in the real file
    body = "".join(line.replace('","', f' {i}","', 1).rstrip('"\n') + f' ({i})"\n'
                   for i in range(repeats) for line in lines)
    path.write_text(body, encoding="utf-8")
    return path


def test_a_headerless_file_is_set_up_in_one_step(repo: Path, tmp_path: Path) -> None:
    src = ag_news(tmp_path / "ag_news.csv")
    result = CliRunner().invoke(app, ["init", str(src)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "12 rows without a header row; text: c2 + c3; label: c1 (3 classes)" in out, out
    assert all(f"  {label}         4   33.3 %" in out for label in "234"), out
    assert (repo / "inputs/data/ag_news.csv").read_bytes() == src.read_bytes()
    assert (repo / "inputs/data/ag_news.csv.dvc").is_file()  # dvc add: an edit re-runs the pipeline
    assert "# Every hyperparameter of the pipeline" in (repo / "params.yaml").read_text()  # comments kept
    data = load_config(repo / "params.yaml").data
    assert (data.name, data.path, data.text_column, data.label_column, data.columns) == (
        "file", "inputs/data/ag_news.csv", ("c2", "c3"), "c1", ("c1", "c2", "c3"))
    download_dataset(data, repo / "data/raw")
    raw = load_raw(repo / "data/raw", data)  # the real recipe reads it as set
    assert len(raw.train) == 12 and raw.train["text"][0].startswith("Wall St. Bears Claw Back Into the Black")


def test_a_file_with_a_header_and_other_columns(repo: Path) -> None:
    own = repo / "inputs/data/reviews.jsonl"
    own.parent.mkdir(parents=True)
    rows = [{"id": f"r{i}", "review": f"review number {i}, long enough to be text", "stars": str(i % 5 + 1)}
            for i in range(20)]
    own.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(app, ["init", str(own), "--no-dvc"])
    assert result.exit_code == 0, result.output
    data = load_config(repo / "params.yaml").data
    assert (data.path, data.text_column, data.label_column, data.columns) == (
        "inputs/data/reviews.jsonl", "review", "stars", None)
    assert "copied" not in result.stdout  # already under inputs/data/


@pytest.mark.parametrize(("content", "name", "expected"), [
    ("text,label\nfine film,pos\nbad film,pos\ngreat plot,pos\n", "one.csv", "every row has the label 'pos'"),
    ("a,b\n1,2\n", "sheet.xlsx", "unsupported file type '.xlsx'"),
    ("text,label\nok,good\n\xff\n", "bad.csv", ""),
    ("id,text\n1,a long enough text here\n2,another long enough text\n", "nolabel.csv", "--label-column"),
    ('text,label\n"an unclosed quote,pos\nmore,neg\n', "quote.csv", "cannot read it as csv"),
    ('["a text", "pos"]\n["another", "neg"]\n', "arrays.jsonl", "rows are not objects"),
    ("PAR1 not really a parquet file", "damaged.parquet", "cannot read it as parquet"),
])
def test_a_file_it_cannot_use_is_refused_in_one_line(repo: Path, tmp_path: Path, content: str, name: str,
                                                      expected: str) -> None:
    src = tmp_path / name
    src.write_bytes(content.encode("latin-1"))
    before = (repo / "params.yaml").read_text()
    result = CliRunner().invoke(app, ["init", str(src)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert name in lines[0] and expected in lines[0], lines
    assert (repo / "params.yaml").read_text() == before and not (repo / "inputs/data" / name).exists()
