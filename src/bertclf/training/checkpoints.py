"""Training checkpoints: one per epoch, resumed only by a run that would compute the same result.

``models/checkpoints/`` holds ``epoch_<N>/`` (``model.safetensors`` and ``trainer_state.pt``:
optimizer, scheduler, RNG and loop state, and the run's key); the loop state names the best epoch
so far, whose weights are its own checkpoint's, so no second copy can fall out of step. DVC keeps
the directory between runs (``persist``), so a killed `train` picks up after its last epoch, but
only when

- the checkpoint's key equals this run's key: a digest of the config (recipe, model knobs and
  runtime), the *contents* of every input the model reads (features or token ids, the encoder
  or pre-trained weights), the code of the training module and everything it imports, and the
  library versions; and
- the run it belongs to never finished. A finished run writes ``COMPLETE``; running again
  (``dvc repro -f``, an experiment in a fresh copy) then starts from epoch 1, so a forced
  re-run recomputes instead of handing back the stored model.

Anything else in the directory is another run's and is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bertclf.atomic import atomic_path, recover_all
from bertclf.codedeps import closure
from bertclf.config import Config

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
STATE = "trainer_state.pt"
COMPLETE = "COMPLETE"
REQUIRED = {"key", "optimizer", "scheduler", "torch_rng", "state"}  # what a trainer state holds


def _hash_tree(h: Any, root: Path, label: str) -> None:
    """Feed every file under `root` (name and contents, in sorted order) into `h`."""
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else (
        [root] if root.is_file() else [])
    h.update(f"{label}:{len(files)}\n".encode())
    for path in files:
        h.update(f"{path.relative_to(root).as_posix() if root.is_dir() else path.name}\n".encode())
        with path.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())


def resume_key(config: Config, inputs: list[Path]) -> str:
    """What a checkpoint must match to be resumed: config, input contents, code, library versions."""
    import numpy
    import transformers

    h = hashlib.sha256()
    settings = {"train": asdict(config.train), "model": asdict(config.model),
                "runtime": asdict(config.runtime)}
    h.update(json.dumps(settings, sort_keys=True, default=list).encode())
    h.update(f"torch {torch.__version__} transformers {transformers.__version__} numpy {numpy.__version__} "
             f"python {platform.python_version()}\n".encode())
    for i, path in enumerate(inputs):
        _hash_tree(h, Path(path), f"input {i}")
    for source in closure(Path(__file__).with_name("loop.py")):
        h.update(source.name.encode())
        h.update(source.read_bytes())
    return h.hexdigest()


def _canonical(obj: Any) -> Any:
    """`obj` rebuilt with every text interned and no container shared, so that its pickle is the
    same bytes whatever its history (a resumed run's state pickles as the uninterrupted run's)."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_canonical(v) for v in obj)
    return obj


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    state: dict[str, Any], key: str, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write ``epoch_<N>/`` whole (weights, optimizer, scheduler, fp16's loss scale, RNG, loop
    state and the key)."""
    from safetensors.torch import save_file

    rng = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda_rng"] = torch.cuda.get_rng_state_all()
    if scaler is not None and scaler.is_enabled():
        rng["scaler"] = scaler.state_dict()
    with atomic_path(path, is_dir=True) as tmp:
        save_file(model.state_dict(), tmp / WEIGHTS)
        torch.save(_canonical({"key": key, "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), **rng, "state": state}), tmp / STATE)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint found resumable by `prepare`, with the trainer state it was checked on."""

    path: Path
    saved: dict[str, Any]


def restore(ckpt: Checkpoint, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            device: torch.device, scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    """Put `ckpt`'s weights, optimizer, scheduler, loss scale and random state back; returns its
    loop state."""
    from safetensors.torch import load_file

    saved = ckpt.saved
    model.load_state_dict(load_file(ckpt.path / WEIGHTS, device=str(device)))
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and "scaler" in saved:
        scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["torch_rng"])
    if "cuda_rng" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    return saved["state"]


def _epochs(ckpt_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in ckpt_dir.glob("epoch_*"):
        number = path.name.removeprefix("epoch_")
        if number.isdigit() and path.is_dir():
            found.append((int(number), path))
    return sorted(found)


def load_state(path: Path) -> dict[str, Any] | None:
    """The trainer state of checkpoint `path`, or None when it is missing, empty or damaged."""
    try:
        saved = torch.load(path / STATE, weights_only=True)
    except Exception:  # a damaged file of any kind means "not resumable"
        return None
    if not isinstance(saved, dict) or not set(saved) >= REQUIRED:
        return None
    return saved


def weights_intact(path: Path) -> bool:
    """Whether a safetensors file is whole: its header parses and the file holds every tensor it
    declares (a truncated or empty file does not)."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size >= 8 + size + end
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def prepare(ckpt_dir: Path, key: str, is_main: bool = True) -> Checkpoint | None:
    """The newest checkpoint this run may resume, or None; clears what belongs to other runs."""
    resumable = None
    if is_main and ckpt_dir.exists():
        recover_all(ckpt_dir)  # what a save cut short by a kill left behind
    if (ckpt_dir / COMPLETE).exists():
        log.info("%s holds a finished run: training from epoch 1", ckpt_dir)
    else:
        for _, path in reversed(_epochs(ckpt_dir)):  # newest first; damaged ones are passed over
            saved = load_state(path)
            if saved is None or saved.get("key") != key or not weights_intact(path / WEIGHTS):
                continue
            best = ckpt_dir / f"epoch_{saved['state'].get('best_epoch', 0)}" / WEIGHTS
            if weights_intact(best):
                resumable = Checkpoint(path, saved)
                break
            log.warning("%s: the weights of its best epoch are damaged; trying an earlier epoch", path)
    if is_main and ckpt_dir.exists() and resumable is None:
        shutil.rmtree(ckpt_dir)  # another run's (other inputs, code or config) or a finished one
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return resumable


def mark_complete(ckpt_dir: Path, key: str) -> None:
    """Record that the run of `key` finished: a later run will not resume it."""
    with atomic_path(ckpt_dir / COMPLETE) as tmp:
        tmp.write_text(key + "\n", encoding="utf-8")
