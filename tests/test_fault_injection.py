"""Kill the running stage with SIGKILL at seeded moments, run `dvc repro`, and nothing is lost.

The way SQLite and DVC prove their atomicity: the tiny pipeline runs once uninterrupted (its
`dvc.lock` is the reference). Then, moment after moment, one stage is forced to run again
(`dvc repro -f -s <stage>`) and its process is killed — at a seeded random time within its run,
or the moment it starts writing an output (a temporary appears beside the output), or, for
`train`, after an epoch's checkpoint. `dvc repro` must then succeed, and every output must hash
exactly as in the uninterrupted run (so the model and the metrics are the same), `dvc status`
must be clean, and no temporary (``.*.tmp``, ``.*.old``) may be left anywhere.

The killed stage's outputs are dropped from DVC's cache before each moment: with them there,
`dvc repro` restores them without running the stage, which is DVC's recovery, not ours; without
them (the case of any run that computes something new) the killed stage itself has to recover.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline_integration import TINY, new_project

pytestmark = pytest.mark.integration

# Somewhat larger than the other integration tests' data, so each stage spends a while writing.
FAULT_PARAMS = {**TINY, "split": {"max_train": 600, "max_test": 200},
                "train": {"epochs": 6, "batch_size": 32}}
# The stages killed, and what identifies each one's process (its argv after `python -m`).
STAGES = {
    "download@data": ("stages.download", "data"),
    "split": ("stages.split",),
    "tokenize": ("stages.tokenize",),
    "featurize": ("stages.featurize",),
    "train": ("stages.train",),
    "evaluate": ("stages.evaluate",),
}
# Where each stage's outputs are written (a temporary there means it is writing).
WRITES = {"download@data": "data", "split": "data", "tokenize": "data", "featurize": "data",
          "train": "models/checkpoints", "evaluate": "plots/eval"}
TEMPORARY = re.compile(r"^\..+\.(tmp|old)$")
SEED = 20261127


@dataclass
class Moment:
    stage: str
    how: str  # "time": a random moment in its run | "writing": as a temporary appears | "epoch"
    fraction: float


def moments(seed: int = SEED) -> list[Moment]:
    """Two moments per stage (a random time, and mid-write or mid-training), shuffled."""
    rng = random.Random(seed)
    chosen = [Moment(stage, how, rng.uniform(0.3, 1.0)) for stage in STAGES
              for how in ("time", "epoch" if stage == "train" else "writing")]
    rng.shuffle(chosen)
    return chosen


def stage_process(root: Path, argv: tuple[str, ...]) -> int | None:
    """The pid of a process running `python -m <argv...>` in `root`, if there is one."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            if os.readlink(Path(entry.path, "cwd")) != str(root):
                continue
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmd]
        if "-m" in words and words[words.index("-m") + 1:][: len(argv)] == list(argv):
            return int(entry.name)
    return None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def temporaries(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".dvc") or dirpath != str(root)]
        for name in [*dirnames, *filenames]:
            if TEMPORARY.match(name):
                found.append(str(Path(dirpath, name).relative_to(root)))
    return found


def lock_outputs(root: Path) -> dict[str, str]:
    """Every stage output's hash as `dvc.lock` records it."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {f"{stage}:{out['path']}": out.get("md5", "") for stage, entry in lock["stages"].items()
            for out in entry.get("outs", [])}


def uncache(root: Path, stage: str) -> None:
    """Drop the stage's outputs (and the run-cache) from DVC's cache, so `dvc repro` has to run it."""
    shutil.rmtree(root / ".dvc" / "cache" / "runs", ignore_errors=True)
    for out in yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage].get("outs", []):
        md5 = out.get("md5", "")
        if md5:
            (root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink(missing_ok=True)


def kill_at(root: Path, moment: Moment, lifetime: float, deadline: float) -> str:
    """Wait for the stage's process, kill it at `moment`; return what was hit ("missed": it ended)."""
    argv = STAGES[moment.stage]
    while (pid := stage_process(root, argv)) is None:
        if time.monotonic() > deadline:
            return "never started"
        time.sleep(0.002)
    started = time.monotonic()
    watch = root / WRITES[moment.stage]
    while alive(pid):
        now = time.monotonic()
        if moment.how == "time" and now - started >= moment.fraction * lifetime:
            break
        writing = watch.is_dir() and any(TEMPORARY.match(p.name) for p in watch.iterdir())
        if moment.how == "writing" and writing:
            time.sleep(moment.fraction * 0.02)  # somewhere inside the write
            break
        if moment.how == "epoch" and (watch / "epoch_2").is_dir() and not (watch / "COMPLETE").exists():
            time.sleep(moment.fraction * 0.05)
            break
        time.sleep(0.001)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "missed"
    return f"{moment.how} {time.monotonic() - started:.2f}s"


def test_sigkill_at_seeded_moments_loses_nothing(tmp_path: Path, mirror: Path) -> None:
    root = tmp_path / "repo"
    project = new_project(root, tmp_path, mirror, FAULT_PARAMS)

    # The uninterrupted run, timing each stage's process (for the moments chosen by time).
    lifetimes: dict[str, float] = {}
    stop = threading.Event()

    def time_stages() -> None:
        seen: dict[str, float] = {}
        while not stop.is_set():
            for stage, argv in STAGES.items():
                pid = stage_process(root, argv)
                if pid is not None and stage not in seen:
                    seen[stage] = time.monotonic()
                elif pid is None and stage in seen and stage not in lifetimes:
                    lifetimes[stage] = time.monotonic() - seen[stage]
            time.sleep(0.005)

    watcher = threading.Thread(target=time_stages, daemon=True)
    watcher.start()
    project.repro()
    stop.set()
    watcher.join()
    project.commit("the uninterrupted run")
    reference = lock_outputs(root)
    metrics = (root / "metrics" / "eval.json").read_bytes()

    hits = []
    for moment in moments():
        uncache(root, moment.stage)
        forced = subprocess.Popen([project.dvc, "repro", "-f", "-s", moment.stage], cwd=root, env=project.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        hit = kill_at(root, moment, lifetimes.get(moment.stage, 2.0), time.monotonic() + 120)
        out = forced.communicate(timeout=300)[0]
        assert hit != "never started", out
        if forced.returncode == 0:
            hit = "missed"  # the stage finished just before the signal came
        else:
            assert hit != "missed" and "failed to reproduce" in out, out  # DVC saw the stage die
        ran = project.repro()  # what the user runs next
        label = f"{moment.stage} killed at {hit}"
        assert hit == "missed" or moment.stage in ran, (label, ran)  # our recovery, not DVC's cache
        assert lock_outputs(root) == reference, label
        assert (root / "metrics" / "eval.json").read_bytes() == metrics, label
        assert project.changed() == set(), label
        assert temporaries(root) == [], label
        hits.append(label)
    killed = [h for h in hits if "missed" not in h]
    print("\n".join(hits))  # shown with pytest -s
    assert len(killed) >= 10, hits
    assert {h.split(" killed")[0] for h in killed} == set(STAGES), hits
