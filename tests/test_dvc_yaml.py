"""dvc.yaml against the code: each stage depends on exactly the code it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bertclf.codedeps import imported_modules, relative_closure
from bertclf.config import read_yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = re.compile(r"python -m stages\.(\w+)")


def stages() -> dict[str, dict[str, Any]]:
    """Every stage of dvc.yaml (foreach expanded) with its cmd and deps, ${key} filled in."""
    found = {}
    for name, body in read_yaml(REPO / "dvc.yaml")["stages"].items():
        if "foreach" in body:
            for key, item in body["foreach"].items():
                def fill(text: str, key: str = key, item: dict = item) -> str:
                    text = text.replace("${key}", key)
                    return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), text)
                found[f"{name}@{key}"] = {"cmd": fill(body["do"]["cmd"]),
                                          "deps": [fill(d) for d in body["do"]["deps"]]}
        else:
            found[name] = body
    return found


def test_each_stage_depends_on_exactly_the_code_it_runs() -> None:
    for name, stage in stages().items():
        script = SCRIPT.search(stage["cmd"])
        assert script, f"{name}: cmd does not run a stage script"
        code = set(relative_closure(REPO / "stages" / f"{script.group(1)}.py", REPO))
        declared = {d for d in stage["deps"] if d.endswith(".py")}
        assert declared == code, (f"{name}: missing {sorted(code - declared)}, "
                                  f"not run {sorted(declared - code)}")


def test_the_closure_follows_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "bertclf"  # the analysis only needs the text of the files
    pkg.mkdir()
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from bertclf import config\n"
        "if TYPE_CHECKING:\n    from bertclf.serving.predictor import TextClassifier\n"
        "def f():\n    import bertclf.features\n    from bertclf.models import Batch\n")
    found = imported_modules(source)
    assert {"bertclf.config", "bertclf.features", "bertclf.models"} <= found
    assert not any(m.startswith("bertclf.predictor") for m in found)


def test_the_modules_a_stage_loads_when_it_starts_are_declared() -> None:
    """The static closure against what Python really loads: each script's imports, run for real."""
    probe = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
             "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items() "
             "if n.split('.')[0] in ('bertclf', 'stages') and getattr(m, '__file__', None))))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
    for name, stage in stages().items():
        script = "stages." + SCRIPT.search(stage["cmd"]).group(1)  # type: ignore[union-attr]
        done = subprocess.run([sys.executable, "-c", probe, script], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        loaded = {Path(f).resolve().relative_to(REPO).as_posix() for f in done.stdout.split()}
        declared = set(stage["deps"])
        assert "src/bertclf/cli_support.py" in loaded, (name, loaded)  # the probe saw the imports
        assert loaded <= declared, f"{name} loads {sorted(loaded - declared)} but does not depend on them"
