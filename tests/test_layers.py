"""The package's shape: layers that import only downward, and archs known only to the registry."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args, get_type_hints

from bertclf.codedeps import PACKAGE_DIR, imported_modules
from bertclf.config import TrainConfig
from bertclf.models import ARCHS

# (layer, group) of each module by path prefix under src/bertclf/, lowest layer first. A module may
# import any lower layer, and its own group, never sideways or upward.
LAYERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("0 foundation", "foundation", ("__init__.py", "errors.py", "atomic.py", "config.py", "codedeps.py",
                                    "runlog.py", "live.py", "plotting.py", "cli_support.py", "progress.py",
                                    "tasks.py", "distributed.py")),
    ("1 data", "data", ("data/",)),
    ("2 models", "models", ("encoder.py", "models/", "inference.py", "model_dir.py", "model_card.py")),
    ("3 tasks", "training", ("training/",)),
    ("3 tasks", "evaluation", ("evaluation.py", "baseline.py", "combine.py")),
    ("3 tasks", "featurize", ("features.py",)),
    ("3 tasks", "pretrain", ("pretrain.py",)),
    ("3 tasks", "serving", ("serving/",)),
    ("4 experiments", "experiments", ("experiments/",)),
    ("5 cli", "cli", ("cli.py", "__main__.py")),
]


def place(path: Path) -> tuple[str, str]:
    rel = path.relative_to(PACKAGE_DIR).as_posix()
    for layer, group, prefixes in LAYERS:
        if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in prefixes):
            return layer, group
    raise AssertionError(f"{rel} belongs to no layer: add it to LAYERS")


def module_path(name: str) -> Path | None:
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def test_every_import_goes_down_a_layer_or_stays_in_its_group() -> None:
    wrong = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        layer, group = place(path)
        for name in imported_modules(path):
            target = module_path(name)
            if target is None or target == path:
                continue
            their_layer, their_group = place(target)
            if not (their_layer < layer or their_group == group):
                wrong.append(f"{path.relative_to(PACKAGE_DIR)} ({layer}) imports {name} ({their_layer})")
    assert wrong == []


def test_no_module_outside_the_registry_branches_on_an_arch_name() -> None:
    names = set(ARCHS)
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR).as_posix()
        if rel.startswith("models/") or rel == "config.py":  # the registry, and params' choices
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert found == []


def test_the_params_choices_of_train_arch_are_the_registry() -> None:
    assert set(get_args(get_type_hints(TrainConfig)["arch"])) == set(ARCHS)
