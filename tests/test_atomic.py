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


def _synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path behind every descriptor passed to os.fsync."""
    import os

    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_files_and_their_directory_reach_the_disk_before_and_after_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _synced(monkeypatch)
    target = tmp_path / "ckpt"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "state.pt").write_bytes(b"state")
        (tmp / "weights").write_bytes(b"weights")
        staged = str(tmp)
    # the files' contents, then the directory holding them, while still under the temporary name
    assert f"{staged}/sub/state.pt" in seen and f"{staged}/weights" in seen
    assert seen.index(f"{staged}/weights") < seen.index(staged)
    assert seen[-1] == str(tmp_path)  # and the parent, so the rename itself is durable


def test_replacing_an_output_never_leaves_the_target_missing(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from bertclf import atomic

    target = tmp_path / "out"
    target.mkdir()
    (target / "f").write_text("old")

    def no_rename(*args: object) -> None:
        raise AssertionError("replaced in two steps: a kill in between would leave no output")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", no_rename)
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / "f").write_text("new")
    assert (target / "f").read_text() == "new"  # swapped in one step (renameat2 RENAME_EXCHANGE)
    assert listing(tmp_path) == ["out", "out/f"]

    # Where the kernel cannot swap, a kill between the two renames leaves `.out.<pid>.old`; the next
    # writer (or atomic.recover) puts it back first.
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real = os.replace
    calls = []

    def killed_after_first(src: object, dst: object) -> None:
        calls.append(dst)
        real(src, dst)
        if len(calls) == 1:
            raise KeyboardInterrupt  # SIGKILL between the two renames, as far as the files can tell

    monkeypatch.setattr(os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt), atomic_path(target, is_dir=True) as tmp:
        (tmp / "f").write_text("newer")
    monkeypatch.setattr(os, "replace", real)
    assert not target.exists() and len(list(tmp_path.glob(".out.*.old"))) == 1
    atomic.recover(target)
    assert (target / "f").read_text() == "new"
    assert listing(tmp_path) == ["out", "out/f"]


def test_temporaries_of_a_killed_writer_are_removed_when_the_output_is_next_written(tmp_path: Path) -> None:
    target = tmp_path / "features"
    for stale in (".features.k1ll3d.tmp", ".features.x.tmp/train.npy"):
        (tmp_path / stale).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / stale).write_bytes(b"\0" * 1024)
    (tmp_path / ".other.abc.tmp").write_text("someone else's")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "meta.json").write_text("{}")
    assert listing(tmp_path) == [".other.abc.tmp", "features", "features/meta.json"]


def test_recover_all_restores_and_cleans_every_output_of_a_directory(tmp_path: Path) -> None:
    from bertclf.atomic import recover_all

    (tmp_path / ".epoch_2.4194305.old").mkdir()  # killed between the renames of epoch_2
    (tmp_path / ".epoch_2.4194305.old" / "w").write_text("epoch 2")
    (tmp_path / ".epoch_3.ab_c.tmp").mkdir()  # killed while writing epoch_3
    (tmp_path / "epoch_1").mkdir()
    recover_all(tmp_path)
    assert listing(tmp_path) == ["epoch_1", "epoch_2", "epoch_2/w"]


def test_what_a_live_writer_has_in_hand_is_left_alone(tmp_path: Path) -> None:
    """Another command writing the same output right now (its pid runs) keeps its temporary."""
    import subprocess
    import sys

    from bertclf.atomic import recover

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f".out.{live.pid}.abc.tmp").write_text("being written")
        (tmp_path / ".out.4194305.def.tmp").write_text("its writer is gone")  # above any pid_max
        recover(tmp_path / "out")
        assert listing(tmp_path) == [f".out.{live.pid}.abc.tmp"]
    finally:
        live.kill()
        live.wait()
