"""Write outputs whole or not at all: build under a temporary name, make it durable, then rename.

`atomic_path(target)` yields ``.<name>.<pid>.<random>.tmp`` beside `target`. When the block ends
normally the temporary file or directory is flushed to disk (its files and then the directory, so
a power loss cannot leave a renamed but empty file) and takes `target`'s place:

- where the kernel can (Linux `renameat2(RENAME_EXCHANGE)`), the two are swapped in one step and
  the old output removed afterwards, so a kill at any moment leaves either the old or the new
  output under `target`, never none;
- elsewhere the old output is first renamed to ``.<name>.<pid>.old``; a kill between the two
  renames is repaired the next time anything writes `target` (the ``.old`` is put back first).

On an exception the temporary path is removed and `target` is left as it was. Temporaries that a
killed process left behind (``.<name>.*.tmp``, its pid no longer running) are removed the next
time `target` is written, or when the stage that owns them starts (`recover`, `recover_all`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync(path: Path) -> None:
    """Flush a file, or every file in a directory and the directory itself, to disk."""
    if path.is_dir():
        for child in path.rglob("*"):
            if child.is_file() and not child.is_symlink():
                _fsync(child)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2); False where that is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return result == 0


def _writer_alive(path: Path) -> bool:
    """Whether the process named in a temporary's name (``.<name>.<pid>.….tmp|old``) still runs
    here; not for this process itself, which writes one output at a time."""
    match = re.fullmatch(r"\..+?\.(\d+)\.(?:[^.]+\.tmp|old)", path.name)
    if match is None or int(match.group(1)) == os.getpid():
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def recover(target: Path) -> None:
    """Undo what a killed writer of `target` left: put a lone ``.old`` back, drop temporaries.
    What a live process (another command writing the same output right now) has in hand stays."""
    olds = sorted(p for p in target.parent.glob(f".{target.name}.*.old") if not _writer_alive(p))
    if not (target.exists() or target.is_symlink()) and olds:
        os.replace(olds[-1], target)  # killed between the two renames: the previous output returns
        olds = olds[:-1]
    for stale in [*olds, *target.parent.glob(f".{target.name}.*.tmp")]:
        if not _writer_alive(stale):
            _remove(stale)


def recover_all(directory: Path) -> None:
    """`recover` every output in `directory` that a killed writer left temporaries of."""
    names = {m.group(1) for p in Path(directory).glob(".*.*")
             if (m := re.fullmatch(r"\.(.+?)\.(?:\d+\.)?[^.]+\.(?:tmp|old)", p.name))}
    for name in sorted(names):
        recover(Path(directory) / name)


@contextlib.contextmanager
def atomic_path(target: str | Path, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; when the block ends normally it replaces `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    if is_dir:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; outputs get the usual mode
    else:
        tmp.rmdir()
    try:
        yield tmp
        _fsync(tmp)
        if not (target.exists() or target.is_symlink()):
            os.replace(tmp, target)
        elif _exchange(tmp, target):
            _remove(tmp)  # now the previous output
        else:
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        _fsync(target.parent)
    except BaseException:
        _remove(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
