"""Outputs are written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertclf.atomic import atomic_path, write_json


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_file_written_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        assert not tmp.exists()
        tmp.write_text("done")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_text() == "done"
    assert listing(tmp_path) == ["sub", "sub/out.txt"]


def test_directory_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_path(target, is_dir=True) as tmp:
        assert tmp.is_dir()
        (tmp / "new.txt").write_text("new")
        assert (target / "stale.txt").exists()
    assert listing(tmp_path) == ["out", "out/new.txt"]


@pytest.mark.parametrize("is_dir", [False, True])
@pytest.mark.parametrize("previous", [False, True])
def test_exception_leaves_no_output_and_no_temp(tmp_path: Path, is_dir: bool, previous: bool) -> None:
    target = tmp_path / "out"
    if previous:
        if is_dir:
            target.mkdir()
            (target / "kept.txt").write_text("previous")
        else:
            target.write_text("previous")
    before = listing(tmp_path)
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(target, is_dir=is_dir) as tmp:
        if is_dir:
            (tmp / "half.txt").write_text("half")
        else:
            tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert listing(tmp_path) == before
    if previous:
        assert (target / "kept.txt" if is_dir else target).read_text() == "previous"
    else:
        assert not target.exists()


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "out", is_dir=True) as tmp:
        (tmp / "x").write_text("x")
        raise KeyboardInterrupt
    assert listing(tmp_path) == []


def test_file_replaces_a_directory_and_back(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "a").write_text("a")
    with atomic_path(target) as tmp:
        tmp.write_text("file now")
    assert target.read_text() == "file now"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "b").write_text("b")
    assert listing(tmp_path) == ["out", "out/b"]


def test_write_json(tmp_path: Path) -> None:
    path = tmp_path / "m" / "x.json"
    write_json(path, {"b": 1, "a": [1, 2], "é": "ü"})
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == {"b": 1, "a": [1, 2], "é": "ü"}
    assert text.endswith("\n") and list(json.loads(text)) == ["b", "a", "é"]


def test_write_json_unserialisable_leaves_previous(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"previous": true}\n')
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert path.read_text() == '{"previous": true}\n'
    assert listing(tmp_path) == ["x.json"]
