"""Long work reports progress: a bar on a terminal, and where output is not a terminal (DVC stage
logs, CI) a periodic one-line log with the count, rate and time left."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from bertclf.config import FeaturizeConfig
from bertclf.features import featurize
from bertclf.progress import LogBar, duration, progress
from tests.test_features import tokens  # noqa: F401  (the module's fixture)

LINE = re.compile(r"featurize train: \d+/17 docs \(\d+%\), [\d,.]+ docs/s, [\dmh]+s left")


def test_featurize_logs_progress_lines_when_not_on_a_terminal(
        tokens: Path, tiny_bert_dir: Path, tmp_path: Path,  # noqa: F811
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTCLF_PROGRESS_SECONDS", "0")  # a line for every step
    with caplog.at_level(logging.INFO, logger="bertclf.progress"):
        featurize(tokens, tiny_bert_dir, tmp_path / "features", FeaturizeConfig(max_batch_tokens=64))
    lines = [r.getMessage() for r in caplog.records if r.name == "bertclf.progress"]
    assert any(LINE.fullmatch(line) for line in lines), lines
    final = re.compile(r"featurize train: 17 docs in [\dmh]+s \([\d,.]+ docs/s\)")
    assert any(final.fullmatch(line) for line in lines), lines
    assert any(line.startswith("featurize val: ") for line in lines), lines


def test_quick_work_and_off_log_nothing(caplog: pytest.LogCaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BERTCLF_PROGRESS_SECONDS", raising=False)
    with caplog.at_level(logging.INFO, logger="bertclf.progress"):
        with progress(10, "quick", "docs") as bar:  # done well within the 30 s interval
            bar.update(10)
        monkeypatch.setenv("BERTCLF_PROGRESS", "off")
        monkeypatch.setenv("BERTCLF_PROGRESS_SECONDS", "0")
        with progress(10, "silenced", "docs") as bar:
            bar.update(10)
    assert caplog.records == []


def test_the_line_reads_well_for_counts_bytes_and_unknown_totals() -> None:
    bar = LogBar(12_753, "featurize train", "docs", 30)
    bar.n, bar.start = 4_096, 0.0
    assert bar.line(50.0) == "featurize train: 4,096/12,753 docs (32%), 81 docs/s, 1m46s left"
    bar = LogBar(3 << 30, "download aclImdb_v1.tar.gz", "B", 30)
    bar.n, bar.start = 1 << 30, 0.0
    assert bar.line(10.0) == "download aclImdb_v1.tar.gz: 1.0 GiB/3.0 GiB (33%), 102.4 MiB/s, 20s left"
    bar = LogBar(None, "tokenize", "docs", 30)
    bar.n, bar.start = 500, 0.0
    assert bar.line(100.0) == "tokenize: 500 docs, 5.0 docs/s, 1m40s so far"
    bar = LogBar(125, "epoch 1/2", "batches", 30)
    bar.n, bar.start = 33, 0.0
    assert bar.line(25.0) == "epoch 1/2: 33/125 batches (26%), 1.3 batches/s, 1m10s left"
    assert (duration(59.4), duration(61), duration(3725)) == ("59s", "1m01s", "1h02m")
