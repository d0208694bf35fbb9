"""The environment is pinned: requirements.lock holds exact, hash-checked versions of everything
pyproject.toml asks for (torch aside: `make` installs its CPU build by name), and `make` installs
exactly those."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked() -> dict[str, list[tuple[str, str | None, list[str]]]]:
    """name -> [(version, marker, hashes)] from requirements.lock."""
    pins: dict[str, list[tuple[str, str | None, list[str]]]] = {}
    current: list[str] | None = None
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = []
            pins.setdefault(canonicalize_name(match.group(1)), []).append(
                (match.group(2), match.group(3), current))
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            current.append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return pins


def applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate()


def test_every_dependency_is_pinned_exactly_with_hashes_within_its_range() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for r in project["optional-dependencies"]["dev"] if "bertclf" not in r]
    wanted += [Requirement(r) for r in project["optional-dependencies"]["export"]]
    pins = locked()
    for req in wanted:
        name = canonicalize_name(req.name)
        if name == "torch":  # the CPU build is installed by name (Makefile: TORCH)
            assert name not in pins
            continue
        versions = [(v, m, h) for v, m, h in pins.get(name, []) if applies(m)]
        assert len(versions) == 1, f"{req.name} is not pinned once for this Python: {pins.get(name)}"
        version, _, hashes = versions[0]
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is not in {req}"
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), req.name


def test_the_environment_is_the_locked_one() -> None:
    """What `make` installed is what the lock says (in an environment `make` made)."""
    if not (Path(sys.prefix) / ".bertclf-installed").is_file():
        pytest.skip("not the environment `make` installs (.venv); nothing to compare")
    for name, entries in locked().items():
        for version, marker, _ in entries:
            if applies(marker):
                assert metadata.version(name) == version, name
