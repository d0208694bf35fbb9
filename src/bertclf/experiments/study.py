"""Tuning studies through DVC experiments: define, queue, wait, select, retrain, report.

A study file (YAML) names a base configuration and, per factor (a params.yaml key), the values
to try. Variants change one factor at a time around the base (or, with ``grid: true``, every
combination), each once per seed. Every variant is a named DVC experiment, so
``dvc exp show`` lists them and ``dvc plots diff`` draws their curves; the upstream stages are
unchanged between variants, so their outputs come from the DVC cache and are computed once.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertclf import tasks
from bertclf.config import load_config, lookup, read_yaml, to_dict, to_yaml
from bertclf.errors import BertclfError, ConfigError

FINAL = "final"


@dataclass(frozen=True)
class Study:
    name: str
    base: dict[str, Any]
    factors: dict[str, list[Any]]
    # per factor, params set for all of its values (e.g. residual needs depth >= 2 to act)
    context: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [42])
    grid: bool = False
    train_on_val: bool = False
    jobs: int = 1


@dataclass(frozen=True)
class Variant:
    name: str  # the DVC experiment name
    overrides: dict[str, Any]  # params.yaml key -> value, on top of the workspace params
    factor: str | None  # the factor this variant moves (None: the base)
    value: Any
    seed: int


def load_params() -> dict[str, Any]:
    """The workspace's params.yaml, checked, as nested dicts."""
    return to_dict(load_config())


def _get(params: dict[str, Any], key: str) -> Any:
    try:
        return lookup(params, key)
    except ConfigError as exc:
        raise ConfigError(f"study: {exc}") from None


def load_study(path: Path) -> Study:
    """Read and check a study file against params.yaml."""
    if not path.exists():
        raise ConfigError(f"{path}: study file not found")
    raw = read_yaml(path) or {}
    unknown = set(raw) - {"name", "base", "factors", "seeds", "grid", "final", "jobs"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
    if not raw.get("factors"):
        raise ConfigError(f"{path}: 'factors' must map params keys to lists of values")
    params = load_params()
    factors: dict[str, list[Any]] = {}
    context: dict[str, dict[str, Any]] = {}
    for key, spec in raw["factors"].items():
        # `key: [values]`, or `key: {values: [...], with: {other.key: value}}`
        values = spec.get("values") if isinstance(spec, dict) else spec
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: factor {key} needs a non-empty list of values")
        factors[key] = list(values)
        if isinstance(spec, dict) and spec.get("with"):
            context[key] = dict(spec["with"])
    for key in [*raw.get("base", {}), *factors, *(k for c in context.values() for k in c)]:
        _get(params, key)
    config = load_config()
    for key, values in factors.items():  # every variant's values are checked like params.yaml
        for value in values:
            config.replace({**(raw.get("base") or {}), **context.get(key, {}), key: value})
    return Study(
        name=str(raw.get("name") or path.stem),
        base=dict(raw.get("base") or {}),
        factors=factors,
        context=context,
        seeds=[int(s) for s in raw.get("seeds") or [42]],
        grid=bool(raw.get("grid", False)),
        train_on_val=bool((raw.get("final") or {}).get("train_on_val", False)),
        jobs=int(raw.get("jobs", 1)),
    )


def _slug(value: Any) -> str:
    text = to_yaml(value)
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text.lower()).strip(".") or "x"


def base_config(study: Study) -> dict[str, Any]:
    """The value of every factor in the base: the study's base, else params.yaml."""
    params = load_params()
    return {k: study.base.get(k, _get(params, k)) for k in study.factors}


def variants(study: Study) -> list[Variant]:
    """Every run of the study (base first), each once per seed; duplicates are run once."""
    base = base_config(study)
    out: list[Variant] = []
    for seed in study.seeds:
        fixed = {**study.base, "train.seed": seed}
        if study.grid:
            keys = list(study.factors)
            for i, combo in enumerate(itertools.product(*study.factors.values())):
                combo_overrides = {**fixed, **dict(zip(keys, combo, strict=True))}
                out.append(Variant(f"{study.name}-g{i}-s{seed}", combo_overrides, None, None, seed))
            continue
        seen = {json.dumps(expected_config(study, None, None), sort_keys=True, default=str)}
        out.append(Variant(f"{study.name}-base-s{seed}", {**fixed, **base}, None, None, seed))
        # factors without a context first: their runs keep their plain names when a factor
        # with a context lands on the same configuration
        for key in sorted(study.factors, key=lambda k: k in study.context):
            values = study.factors[key]
            ctx = study.context.get(key, {})
            suffix = "".join(f"-{k.split('.')[-1]}{_slug(v)}" for k, v in ctx.items())
            for value in values:
                config = expected_config(study, key, value)
                fingerprint = json.dumps(config, sort_keys=True, default=str)
                if fingerprint in seen:
                    continue  # an earlier run (the base, or another factor's) has this configuration
                seen.add(fingerprint)
                short = key.split(".")[-1]
                out.append(Variant(f"{study.name}-{short}-{_slug(value)}{suffix}-s{seed}",
                                   {**fixed, **base, **ctx, key: value}, key, value, seed))
    return out


def expected_config(study: Study, factor: str | None, value: Any) -> dict[str, Any]:
    """The factor values of the run that shows `factor = value` (one at a time, with its context)."""
    config = base_config(study)
    if factor is not None:
        config.update({k: v for k, v in study.context.get(factor, {}).items() if k in config})
        config[factor] = value
    return config


def set_args(overrides: dict[str, Any]) -> list[str]:
    """`-S key=value` arguments for `dvc exp run` (values in YAML syntax)."""
    args = []
    for key, value in overrides.items():
        args += ["-S", f"{key}={to_yaml(value)}"]
    return args


class StudyError(BertclfError):
    """A DVC command of the study failed; the message carries its output."""


def _dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        out = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise StudyError(f"`dvc {' '.join(args)}` failed:\n{out}")
    return proc


def _row(rev: dict[str, Any], name: str, kind: str, state: str) -> dict[str, Any]:
    body = rev.get("data") or {}
    params = ((body.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = {path.split("/")[-1].removesuffix(".json"): (m or {}).get("data") or {}
               for path, m in (body.get("metrics") or {}).items()}
    # What the pipeline reads but no stage writes (code and source data), by content hash.
    outs = body.get("outs") or {}
    inputs = {path: (dep or {}).get("hash") for path, dep in (body.get("deps") or {}).items()
              if path not in outs}
    return {"name": name, "rev": rev.get("rev"), "kind": kind, "state": state, "params": params,
            "metrics": metrics, "inputs": inputs}


def experiments(all_commits: bool = False) -> list[dict[str, Any]]:
    """The workspace, the baseline commits and their experiments (of HEAD, or of every commit),
    each as {name, rev, kind, state, params, metrics, inputs, baseline}; kind is workspace, commit
    or experiment; inputs maps each dependency no stage writes (code, source data) to its hash;
    baseline is the commit whose code ran ("workspace" for the workspace)."""
    data = json.loads(_dvc("exp", "show", "--json", *(["-A"] if all_commits else [])).stdout or "[]")
    found = []
    for commit in data:
        rev = commit.get("rev") or ""
        kind = "workspace" if rev == "workspace" else "commit"
        found.append({**_row(commit, commit.get("name") or (rev if kind == "workspace" else rev[:7]), kind,
                             "success"), "baseline": rev})
        for exp in commit.get("experiments") or []:
            first = exp["revs"][0]
            found.append({**_row(first, exp.get("name") or first.get("name") or "", "experiment",
                                 (exp.get("executor") or {}).get("state") or "success"), "baseline": rev})
    return found


def score(exp: dict[str, Any], *path: str) -> Any:
    """A metric of an experiment row by its path (``score(exp, "eval", "test", "acc")``), or None."""
    node: Any = exp["metrics"]
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def run_study(study: Study, jobs: int | None = None,
              echo: Callable[[str], None] = print) -> list[str]:
    """Queue every variant, run the queue, wait, then retrain the best; return failed names."""
    runs = variants(study)
    done = {e["name"] for e in experiments(all_commits=True) if e["state"] == "success"}
    todo = [v for v in runs if v.name not in done]
    echo(f"{study.name}: {len(runs)} runs, {len(runs) - len(todo)} already done")
    if todo:
        # The first run goes in the workspace: it computes (or restores) the upstream stages
        # once, so every queued variant finds features in the cache.
        first, rest = todo[0], todo[1:]
        echo(f"running {first.name} in the workspace")
        _dvc("exp", "run", "-n", first.name, *set_args(first.overrides))
        for v in rest:
            _dvc("exp", "run", "--queue", "-n", v.name, *set_args(v.overrides))
        if rest:
            # The workers outlive `dvc queue start`: give them no pipe of ours to hold open.
            subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs or study.jobs)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            wait_for({v.name for v in rest}, echo)
    names = {v.name for v in runs}
    failed = [e["name"] for e in experiments(all_commits=True)
              if e["name"] in names and e["state"] == "failed"]
    for name in failed:
        logs = _dvc("queue", "logs", name, check=False).stdout.strip().splitlines()
        echo(f"FAILED {name}; last lines of its log:\n  " + "\n  ".join(logs[-15:]))
    if failed:
        return failed
    best = select_best(study)
    final = {**best["overrides"], "train.train_on_val": study.train_on_val}
    echo(f"best on validation: {best['label']} (val acc {best['val_acc']:.4f}); retraining as "
         f"{study.name}-{FINAL}")
    _dvc("exp", "run", "-n", f"{study.name}-{FINAL}", *set_args(final))
    return []


def wait_for(names: set[str], echo: Callable[[str], None], poll: float = 10.0) -> None:
    """Poll the experiments until none of `names` is queued or running; show progress."""
    t0 = time.time()
    while True:
        states = {e["name"]: e["state"] for e in experiments(all_commits=True) if e["name"] in names}
        finished = sum(s in ("success", "failed") for s in states.values())
        failed = sum(s == "failed" for s in states.values())
        running = [n for n, s in states.items() if s == "running"]
        echo(f"[{time.time() - t0:6.0f}s] {finished}/{len(names)} done, {failed} failed, "
             f"running: {', '.join(running) or '-'}")
        if finished >= len(names):
            return
        time.sleep(poll)


def _value(params: dict[str, Any], key: str) -> Any:
    try:
        return _get(params, key)
    except ConfigError:
        return None


def study_runs(study: Study) -> list[dict[str, Any]]:
    """The finished runs of the study with their factor values and metrics."""
    by_name = {v.name: v for v in variants(study)}
    rows = []
    for exp in experiments(all_commits=True):
        variant = by_name.get(exp["name"])
        if variant is None or exp["state"] != "success":
            continue
        # the task's headline score: accuracy, or (multi-label) Jaccard; "acc" in the row's names
        metric = tasks.HEADLINE.get(_value(exp["params"], "data.task") or tasks.SINGLE, "acc")
        rows.append({
            "name": exp["name"], "rev": exp["rev"], "factor": variant.factor, "value": variant.value,
            "metric": metric,
            "dataset": _value(exp["params"], "data.name"),
            "seed": variant.seed, "overrides": variant.overrides,
            "config": {k: _value(exp["params"], k) for k in study.factors},
            "val_acc": score(exp, "eval", "val", metric), "test_acc": score(exp, "eval", "test", metric),
            "tfidf_test_acc": score(exp, "tfidf", "tfidf", f"test_{metric}"),
            "best_epoch": score(exp, "train", "best_epoch"),
        })
    return sorted(rows, key=lambda r: r["name"])


def select_best(study: Study) -> dict[str, Any]:
    """The configuration with the best mean validation score over seeds (test never looked at)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in study_runs(study):
        key = json.dumps(row["config"], sort_keys=True, default=str)
        groups.setdefault(key, []).append(row)
    if not groups:
        raise ConfigError(f"study {study.name}: no finished runs; run `bertclf study run` first")
    base = base_config(study)

    def mean_val(item: tuple[str, list[dict[str, Any]]]) -> tuple[float, int, str]:
        # ties go to the configuration closest to the base (fewest changed factors)
        changed = sum(item[1][0]["config"][k] != base[k] for k in base)
        mean = sum(r["val_acc"] for r in item[1]) / len(item[1])
        return tasks.ranked(item[1][0].get("metric", "acc"), mean), -changed, item[0]

    key, rows = max(groups.items(), key=mean_val)
    config = json.loads(key)
    overrides = {**rows[0]["overrides"], **config, "train.seed": study.seeds[0]}
    label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in config.items())
    return {"config": config, "overrides": overrides, "label": label,
            "val_acc": sum(r["val_acc"] for r in rows) / len(rows), "runs": [r["name"] for r in rows]}
