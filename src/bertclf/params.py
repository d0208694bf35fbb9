"""Read params.yaml: every hyperparameter of the pipeline lives there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bertclf.errors import ConfigError


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load the whole params file as nested dicts."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found (run from the project root)")
    with path.open(encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Return `params[name]`, failing with the key's name when it is missing."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value


def choice(value: Any, key: str, allowed: tuple[str, ...]) -> str:
    """Check that `value` is one of `allowed`, naming the key otherwise."""
    if value not in allowed:
        raise ConfigError(f"params.yaml: {key}={value!r} is not one of {', '.join(allowed)}")
    return value
