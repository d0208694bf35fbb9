"""Your own files as pipeline inputs DVC can see.

`dvc.yaml` cannot name a dependency whose path is a parameter, so each `download` item depends on
a fixed directory instead: ``inputs/data/`` for data files, ``inputs/encoders/`` for model
directories. A file there (committed to git, or added with `dvc add` when large, or a link to
it) is hashed by DVC: editing it in place re-runs `download` and whatever its change reaches. A
path elsewhere would be invisible to DVC, so it is refused rather than silently left stale.
"""

from __future__ import annotations

import os
from pathlib import Path

from bertclf.errors import ConfigError


def is_under(path: str | Path, root: str | Path) -> bool:
    """Whether `path` lies inside `root`, by the names written (a link inside `root` counts)."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    root = Path(os.path.abspath(root))
    return path != root and root in path.parents


def check_tracked(value: str, key: str, root: Path) -> Path:
    """`value` (a params path) as a path inside the tracked directory `root`, or a ConfigError."""
    path = Path(value).expanduser()
    if not is_under(path, root):
        raise ConfigError(
            f"params.yaml: {key}={value!r} is outside {root}/, the directory DVC tracks for your own "
            f"files, so an edit to it would go unnoticed: move or link it there "
            f"(ln -s {Path(os.path.abspath(path))} {root}/) and set {key}={root.as_posix()}/{path.name}")
    if not path.exists():
        raise ConfigError(
            f"params.yaml: {key}={value!r} does not exist. Commit it to git or track it with "
            f"`dvc add {value}`: queued experiments (dvc exp run --queue) run in a copy of the "
            "repository that holds only tracked files")
    return path
