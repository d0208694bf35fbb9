"""The code a stage runs: its `bertclf` imports, followed statically.

`dvc.yaml` declares each stage's code as dependencies, and the resume key of `train` hashes its
code, so both need the closure of a script's imports. The closure follows ``import bertclf.x``
and ``from bertclf.x import …`` at module level and inside functions (lazy imports run too),
skips ``if TYPE_CHECKING:`` blocks (they never run), and includes each package's
``__init__.py``. Function bodies of package ``__init__`` files are the one exception: they hold
conveniences for users (``bertclf.load``), which no stage calls, and following them would make
every stage depend on the whole package.

    python -m bertclf.codedeps stages/train.py     # the deps list for dvc.yaml
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "bertclf"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _package_of(path: Path) -> str:
    """The package a module file belongs to (for ``__init__.py``, the package itself)."""
    return ".".join(path.resolve().relative_to(PACKAGE_DIR.parent).parts[:-1])


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the `bertclf` modules `path` may import when it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_init = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if is_init and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                module = child.module or ""
                if child.level:
                    base = _package_of(path).split(".")
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join([*base, module] if module else base)
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return {name for name in found if name.split(".")[0] == PACKAGE}


def closure(entry: Path) -> list[Path]:
    """`entry` and every `bertclf` source file it can reach through imports, sorted."""
    seen: set[Path] = set()
    todo = [Path(entry).resolve()]
    package = todo[0].parent / "__init__.py"  # `python -m stages.train` runs stages/__init__.py first
    if package.is_file():
        todo.append(package)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # packages run their __init__ first
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)


def relative_closure(entry: Path, root: Path) -> list[str]:
    """The closure as paths relative to `root` (the form dvc.yaml uses)."""
    return [p.relative_to(root.resolve()).as_posix() for p in closure(entry)]


if __name__ == "__main__":
    root = Path.cwd()
    for script in sys.argv[1:]:
        print(f"{script}:")
        for rel in relative_closure(Path(script), root):
            print(f"  - {rel}")
