"""The saved model directory (``models/classifier``): one typed object, `ModelDir`, and its files.

A model directory is self-contained: the weights (as its arch saves them: ``model.safetensors``,
or a Hugging Face model for `finetune`), ``bertclf.json`` (what `ModelDir` holds: the arch, its
knobs and dimensions, the labels, the tokenize settings, the feature layers, the input's columns,
the training recipe, the encoder it came from, the runtime), ``labels.json``, the tokenizer files
(cut and padded as training cut), a model card (``README.md``), and for archs that read token
vectors the frozen encoder itself (``encoder/``) that makes them. An exported directory
(`bertclf export`) holds ``model.onnx`` or ``encoder.onnx`` and says so in its runtime.

This module is the only reader and writer of ``bertclf.json``; it reads format 1 (bertclf up to
0.x at 7ba0220: one flat ``model`` section, labels and layers under ``data``) and writes format 2.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from safetensors import SafetensorError
from torch import nn

from bertclf.atomic import atomic_path, write_json
from bertclf.config import SECTIONS, Config, TokenizeConfig, section_from
from bertclf.data.encoder_source import read_source
from bertclf.encoder import copy_tokenizer_files
from bertclf.errors import BertclfError, ConfigError
from bertclf.models import ARCHS, WEIGHTS, Arch, Dims, get
from bertclf.models.base import Knobs
from bertclf.tasks import MULTI, REGRESSION, TASKS, task_of

FORMAT_VERSION = 2
CONFIG = "bertclf.json"  # beside a fine-tuned model, config.json is the Hugging Face config
LABELS = "labels.json"
CARD = "README.md"
ENCODER = "encoder"  # archs that read token vectors: the frozen encoder that makes them
ONNX_FILE = "model.onnx"  # an exported finetune / cnn model
ENCODER_ONNX_FILE = "encoder.onnx"  # the exported encoder of a token-vector model (its head stays in PyTorch)

__all__ = ["CONFIG", "ENCODER", "ENCODER_ONNX_FILE", "FORMAT_VERSION", "ONNX_FILE", "WEIGHTS", "ModelDir",
           "Runtime", "save_model_dir"]


@dataclass(frozen=True)
class Runtime:
    """What runs the model: PyTorch, or an ONNX export (with its quantization and opset)."""

    format: Literal["torch", "onnx"] = "torch"
    quantize: str | None = None
    opset: int | None = None
    exported_from: str | None = None


@dataclass(frozen=True)
class ModelDir:
    """A model directory as `bertclf.json` describes it, read once (`ModelDir.read`)."""

    path: Path
    arch: str
    knobs: Knobs  # the arch's own section of params.yaml (bertclf.config), as trained
    dims: Dims
    labels: tuple[str, ...]
    tokenize: TokenizeConfig  # what the training text was cut to
    task: str = "single_label"  # the kind of label (bertclf.tasks)
    thresholds: tuple[float, ...] | None = None  # multi_label: a label is predicted from this probability on
    layers: str | None = None  # token-vector archs: the encoder layers their vectors combine
    store: str | None = None  # token-vector archs: float16 | int8, how their vectors were stored and rounded
    text_columns: tuple[str, ...] = ("text",)  # the training file's text column(s): predict's default
    columns: tuple[str, ...] | None = None  # the training file's column names when it had no header row
    test_subsampled: bool = False
    test_rows_full: int | None = None
    # what the inputs' meta.json said besides the above (the encoder that made the vectors, their
    # width and precision): a record for people, read by no code
    data: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)  # the train section it was trained with
    encoder: Mapping[str, Any] = field(default_factory=dict)  # the encoder's source record
    runtime: Runtime = Runtime()

    # ---- the files in it

    @property
    def family(self) -> Arch:
        return ARCHS[self.arch]

    # its files: bertclf.json, labels.json, the model card, the weights, the frozen encoder
    config_file = property(lambda self: self.path / CONFIG)
    labels_file = property(lambda self: self.path / LABELS)
    card = property(lambda self: self.path / CARD)
    weights = property(lambda self: self.path / WEIGHTS)
    encoder_dir = property(lambda self: self.path / ENCODER)

    @property
    def onnx_file(self) -> Path:
        return self.path / (ENCODER_ONNX_FILE if self.family.export == "encoder" else ONNX_FILE)

    @property
    def tokenizer_dir(self) -> Path:
        """Where its tokenizer files are (older token-vector models kept them in ``encoder/`` only)."""
        if (self.path / "tokenizer.json").is_file():
            return self.path
        if (self.encoder_dir / "tokenizer.json").is_file():
            return self.encoder_dir
        return self.need(self.path / "tokenizer.json")

    def need(self, path: Path) -> Path:
        """`path`, or an error saying the directory is incomplete."""
        if not path.exists():
            raise BertclfError(f"{self.path}: {path.name} is missing; the model was saved by an older "
                               "bertclf or copied incompletely — retrain it (`dvc repro train`) or copy the "
                               "whole directory")
        return path

    # ---- reading and writing bertclf.json

    @classmethod
    def read(cls, path: str | Path) -> ModelDir:
        """Parse `path`/bertclf.json (format 1 or 2); a missing, newer or damaged one is one line."""
        path = Path(path)
        raw = _read_json(path)
        try:
            return (_from_v1 if raw.get("format_version", 0) < 2 else _from_v2)(path, raw)
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
            what = str(exc).removeprefix("params.yaml: ") if isinstance(exc, ConfigError) else repr(exc)
            what = what[:200]
            raise BertclfError(f"{path / CONFIG}: damaged ({what}); copy the whole model directory again or "
                               "retrain it (dvc repro train)") from None

    def to_json(self) -> dict[str, Any]:
        """`bertclf.json` in format 2."""
        return {
            "format_version": FORMAT_VERSION, "arch": self.arch, "model": _plain(asdict(self.knobs)),
            "dims": asdict(self.dims), "labels": list(self.labels), "task": self.task,
            "thresholds": list(self.thresholds) if self.thresholds is not None else None,
            "tokenize": asdict(self.tokenize),
            "layers": self.layers, "store": self.store,
            "input": {"text_column": list(self.text_columns),
                      "columns": list(self.columns) if self.columns else None},
            "test": {"subsampled": self.test_subsampled, "rows_full": self.test_rows_full},
            "data": dict(self.data), "train": dict(self.recipe), "encoder": dict(self.encoder),
            "runtime": asdict(self.runtime),
        }

    def write(self, into: Path | None = None) -> None:
        """`bertclf.json` and `labels.json` into `into` (default: its own path; a temporary
        directory that becomes it)."""
        at = replace(self, path=Path(into or self.path))
        write_json(at.config_file, self.to_json())
        write_json(at.labels_file, {"labels": list(self.labels)})

    def exported(self, out: Path, quantize: str | None, opset: int) -> ModelDir:
        """The description of its ONNX export in `out`."""
        return replace(self, path=Path(out), runtime=Runtime("onnx", quantize, opset, str(self.path)))

    def load_model(self) -> nn.Module:
        """Its PyTorch model with the trained weights, in eval mode."""
        self.need(self.weights)
        try:
            return self.family.restore(self.knobs, self.dims, self.path).eval()
        except (SafetensorError, RuntimeError, ValueError) as exc:  # truncated, damaged, another model's
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BertclfError(f"{self.weights}: damaged or not this model's weights ({first}); retrain "
                               "(dvc repro train) or copy the whole model directory again") from None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise BertclfError(f"{path}: no such model directory")
    file = path / CONFIG
    if not file.is_file():
        raise BertclfError(f"{path}: not a bertclf model directory ({CONFIG} is missing)")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BertclfError(f"{file}: unreadable ({exc})") from None
    if not isinstance(raw, dict):
        raise BertclfError(f"{file}: not a JSON object; the file is damaged")
    version = raw.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise BertclfError(f"{path}: written by a newer bertclf (format {version}, this one reads up to "
                           f"{FORMAT_VERSION}); upgrade bertclf")
    if "model" not in raw:
        raise BertclfError(f"{file}: no 'model' section; the file is damaged")
    return raw


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _arch(name: Any) -> str:
    if name not in ARCHS:
        raise ValueError(f"arch {name!r} is not one of {', '.join(ARCHS)}")
    return str(name)


def _labels(labels: Any, num_labels: int) -> tuple[str, ...]:
    if not isinstance(labels, list) or not labels:
        raise ValueError("it names no labels")
    if len(labels) != num_labels:
        raise ValueError(f"{len(labels)} labels for a model of {num_labels} outputs")
    return tuple(str(label) for label in labels)


def _dims(raw: Mapping[str, Any]) -> Dims:
    values = {f.name: raw.get(f.name, 0) for f in fields(Dims)}
    if not all(type(v) is int and v >= 0 for v in values.values()) or values["num_labels"] < 1:
        raise ValueError(f"dimensions {values} must be non-negative integers")
    return Dims(**values)


def _task(task: Any, thresholds: Any, num_labels: int) -> tuple[str, tuple[float, ...] | None]:
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
    if thresholds is None:
        if task == MULTI:
            raise ValueError("a multi_label model without thresholds")
        return str(task), None
    if (not isinstance(thresholds, list) or len(thresholds) != num_labels
            or not all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in thresholds)):
        raise ValueError(f"thresholds {thresholds!r} must be {num_labels} probabilities")
    return str(task), tuple(float(t) for t in thresholds)


def _columns(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"columns {value!r} must be a list of names")
    return tuple(value)


def _from_v2(path: Path, raw: dict[str, Any]) -> ModelDir:
    arch = _arch(raw["arch"])
    dims = _dims(raw["dims"])
    task, thresholds = _task(raw.get("task", "single_label"), raw.get("thresholds"), dims.num_labels)
    return ModelDir(
        path=path, arch=arch, knobs=section_from(arch, raw["model"]), dims=dims,
        labels=_labels(raw["labels"], dims.num_labels), tokenize=section_from("tokenize", raw["tokenize"]),
        task=task, thresholds=thresholds,
        layers=raw.get("layers"), store=raw.get("store", "float16" if raw.get("layers") else None),
        text_columns=_columns(raw["input"]["text_column"]) or ("text",),
        columns=_columns(raw["input"].get("columns")), test_subsampled=bool(raw["test"]["subsampled"]),
        test_rows_full=raw["test"].get("rows_full"), data=raw.get("data", {}), recipe=raw.get("train", {}),
        encoder=raw.get("encoder", {}), runtime=Runtime(**raw.get("runtime", {})))


def _from_v1(path: Path, raw: dict[str, Any]) -> ModelDir:
    """Format 1: ``model`` is one flat dict of every arch's knobs and the dimensions; ``data`` the
    data's meta (labels, tokenize settings, layers); ``input`` the text columns only."""
    model, data = raw["model"], raw.get("data", {})
    arch = _arch(model["arch"])
    own = {f.name for f in fields(SECTIONS[arch])}
    dims = _dims(model)
    tokenize = {**data.get("tokenize", {})}
    return ModelDir(
        path=path, arch=arch, knobs=section_from(arch, {k: v for k, v in model.items() if k in own}),
        dims=dims, labels=_labels(data.get("labels"), dims.num_labels),
        tokenize=section_from("tokenize", tokenize),
        layers=data.get("layers", "last") if ARCHS[arch].reads == "features" else None,
        text_columns=_columns(raw.get("input", {}).get("text_column")) or ("text",),
        test_subsampled=bool(data.get("test_subsampled", False)), test_rows_full=data.get("test_rows_full"),
        data=_provenance(data), recipe=raw.get("train", {}), encoder=raw.get("encoder", {}),
        runtime=Runtime(**raw.get("runtime", {})))


# ---- writing a whole model directory


def trained_model_dir(out: Path, config: Config, dims: Dims, meta: Mapping[str, Any], encoder_dir: Path,
                      thresholds: Sequence[float] | None = None) -> ModelDir:
    """The description of the model `train` saves into `out`: its arch and knobs (`config.train.arch`
    and its section), `dims`, and what the data was made with (`meta`, the inputs' meta.json)."""
    text = config.data.text_column or "text"
    arch = get(config.train.arch)
    return ModelDir(
        path=Path(out), arch=arch.name, knobs=config.model, dims=dims,
        labels=tuple(str(label) for label in meta.get("labels", [])), task=task_of(meta),
        thresholds=tuple(thresholds) if thresholds is not None else None,
        tokenize=TokenizeConfig(**{**asdict(config.tokenize), **meta.get("tokenize", {})}),
        layers=meta.get("layers", "last") if arch.reads == "features" else None,
        store=meta.get("store", "float16") if arch.reads == "features" else None,
        text_columns=(text,) if isinstance(text, str) else tuple(text), columns=config.data.columns,
        test_subsampled=bool(meta.get("test_subsampled", False)), test_rows_full=meta.get("test_rows_full"),
        data=_provenance(meta), recipe=asdict(config.train), encoder=read_source(encoder_dir))


def _provenance(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs' meta less what `ModelDir` holds in its own fields."""
    own = {"labels", "task", "tokenize", "layers", "store", "test_subsampled", "test_rows_full"}
    return {k: v for k, v in meta.items() if k not in own}


def save_model_dir(md: ModelDir, model: nn.Module, encoder_dir: Path, card: str) -> None:
    """Write the whole model directory `md.path` (atomically): weights, tokenizer, card, encoder."""
    arch = md.family
    with atomic_path(md.path, is_dir=True) as tmp:
        arch.save(model, tmp)
        if arch.hf_model:
            name_labels(tmp, list(md.labels), md.task)
        write_tokenizer_files(encoder_dir, tmp, md.tokenize)
        replace(md, path=tmp).card.write_text(card, encoding="utf-8")
        if arch.reads == "features":
            (tmp / ENCODER).mkdir()
            for f in encoder_dir.iterdir():
                if f.is_file():
                    shutil.copyfile(f, tmp / ENCODER / f.name)
        md.write(tmp)


def name_labels(model_dir: Path, labels: list[str], task: str = "single_label") -> None:
    """Write id2label / label2id into a Hugging Face ``config.json`` in `model_dir`, so that
    ``pipeline("text-classification", model=dir)`` answers with the label names, not LABEL_0, and
    the task's ``problem_type``, so that it applies a sigmoid per label to a multi-label model
    (a regression model's output is the value: call the pipeline with ``function_to_apply="none"``)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    config.id2label = {i: str(label) for i, label in enumerate(labels)}
    config.label2id = {str(label): i for i, label in enumerate(labels)}
    if task == MULTI:
        config.problem_type = "multi_label_classification"
    elif task == REGRESSION:
        config.problem_type = "regression"
    config.save_pretrained(model_dir)


def write_tokenizer_files(src: Path, dst: Path, tokenize: TokenizeConfig) -> None:
    """The tokenizer files of `src` into `dst`, set to how the model's texts were cut: the
    tokenizer's ``model_max_length`` and ``truncation_side``, and ``tokenizer.json`` truncating at
    ``max_length`` (from the end for ``tail``, else from the start: ``head_tail`` is bertclf's own
    and reads as ``head`` there) and padding to the longest text of a batch, so that plain
    `tokenizers` and `transformers` with ``truncation=True`` cut long texts where training did."""
    copy_tokenizer_files(src, dst)
    side = "left" if tokenize.truncation == "tail" else "right"
    config, fast = dst / "tokenizer_config.json", dst / "tokenizer.json"
    pad = None
    if config.is_file():
        values = json.loads(config.read_text(encoding="utf-8"))
        pad = values.get("pad_token")
        values.update(model_max_length=tokenize.max_length, truncation_side=side)
        config.write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if fast.is_file():
        values = json.loads(fast.read_text(encoding="utf-8"))
        values["truncation"] = {"direction": side.capitalize(), "max_length": tokenize.max_length,
                                "strategy": "LongestFirst", "stride": 0}
        values["padding"] = _batch_padding(values, pad)
        fast.write_text(json.dumps(values, ensure_ascii=False) + "\n", encoding="utf-8")


def _batch_padding(tokenizer: Mapping[str, Any], pad_token: Any) -> dict[str, Any] | None:
    """``tokenizer.json``'s padding to the longest text of a batch, with the tokenizer's own pad
    token (its padding section's, else the one tokenizer_config.json names); None without one."""
    padding = tokenizer.get("padding")
    if padding:
        return {**padding, "strategy": "BatchLongest"}
    token = pad_token.get("content") if isinstance(pad_token, dict) else pad_token
    ids = [t["id"] for t in tokenizer.get("added_tokens", []) if t.get("content") == token]
    if token is None or not ids:
        return None
    return {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None, "pad_id": ids[0],
            "pad_type_id": 0, "pad_token": token}
