"""Classify new text with a saved model, applying exactly the preprocessing it was trained with.

    import bertclf
    clf = bertclf.load("models/classifier")
    clf.predict(["great food, slow service"])  # [Prediction(label='4', probability=0.71, ...)]

The model directory carries what prediction needs: the label names, the tokenizer, the tokenize
settings (max length, truncation), and for the archs that read token vectors the
frozen encoder and its layer combination. An exported ONNX directory (`bertclf export`) loads the
same way and runs on onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bertclf import tasks
from bertclf.data.stores import Batch, FeatureStore, TokenStore, pad_ids
from bertclf.data.tokenization import DocumentTokenizer, load_tokenizer
from bertclf.encoder import batch_encoder, encode_documents, load_encoder
from bertclf.errors import BertclfError
from bertclf.inference import HALF, autocast, predict_logits, resolve_device, resolve_precision
from bertclf.model_dir import ModelDir
from bertclf.models.finetune import pool_windows

MAX_BATCH_TOKENS = 8192  # padded tokens per encoder pass (token-vector models), as featurize's default
# padded tokens per forward pass of a token-id model (at most `batch_size` texts): a fixed token
# budget keeps long texts from making huge batches and short ones from making tiny passes
# (measured in benchmarks/results/predict_batching.json, docs/SPEED.md)
PREDICT_BATCH_TOKENS = 2048


@dataclass(frozen=True)
class Prediction:
    label: str  # the answer (ordinal: the distribution's median); multi-label: the most probable label
    probability: float
    probabilities: dict[str, float]  # every class, in the model's label order
    labels: tuple[str, ...] = ()  # what the model answers: (label,), or a multi-label model's labels
    value: float | None = None  # a regression model's answer (its `label` is the value as text)


@dataclass(frozen=True)
class Answers:
    """How a model's probabilities become its answer: the most probable class, the median class
    (ordinal), or (multi-label, with `thresholds`) every label whose probability reaches its threshold."""

    labels: list[str]
    thresholds: tuple[float, ...] | None = None
    task: str = tasks.SINGLE

    @property
    def fields(self) -> tuple[str, ...]:
        """The columns of a prediction row before the probabilities."""
        if self.task == tasks.REGRESSION:
            return ("text", "value")
        return ("text", "labels") if self.thresholds is not None else ("text", "label", "probability")

    @property
    def has_probabilities(self) -> bool:
        return self.task != tasks.REGRESSION

    def of(self, row: np.ndarray) -> dict[str, Any]:
        """One text's answer, as serve returns it: the label and its probability (multi-label: the
        labels), and every class's probability; regression: the value."""
        if self.task == tasks.REGRESSION:
            return {"value": round(float(row[0]), 6)}
        every = {name: round(float(p), 6) for name, p in zip(self.labels, row, strict=True)}
        if self.thresholds is not None:
            chosen = [name for name, p, t in zip(self.labels, row, self.thresholds, strict=True) if p >= t]
            return {"labels": chosen, "probabilities": every}
        best = int(tasks.decide(self.task, row[None, :])[0])
        return {"label": self.labels[best], "probability": round(float(row[best]), 6), "probabilities": every}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BertclfError("exported models need onnxruntime: pip install 'bertclf[export]'") from None
    return onnxruntime


def onnx_session(path: Path, threads: int = 0) -> Any:
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxClassifier(nn.Module):
    """A whole model exported to ONNX (the token-id archs: finetune, cnn), behind `forward(batch)`."""

    def __init__(self, path: Path, threads: int = 0, window_pool: str = "mean"):
        super().__init__()
        self.session = onnx_session(path, threads)
        self.window_pool = window_pool

    def forward(self, batch: Batch) -> torch.Tensor:
        assert batch.input_ids is not None and batch.attention_mask is not None
        feed = {"input_ids": batch.input_ids.numpy(), "attention_mask": batch.attention_mask.numpy()}
        (logits,) = self.session.run(["logits"], feed)
        return pool_windows(torch.from_numpy(logits), batch.doc_windows, self.window_pool)


class OnnxEncoder:
    """The exported encoder of a token-vector model: a batch of token id arrays in, token vectors out."""

    def __init__(self, path: Path, pad_id: int, threads: int = 0):
        self.session = onnx_session(path, threads)
        self.pad_id = pad_id

    def __call__(self, ids: list[np.ndarray]) -> torch.Tensor:
        input_ids, mask = pad_ids(ids, self.pad_id)
        (vectors,) = self.session.run(["vectors"], {"input_ids": input_ids.numpy(),
                                                    "attention_mask": mask.numpy()})
        return torch.from_numpy(vectors)


def check_texts(texts: Sequence[Any]) -> None:
    """Refuse, naming the first, a text that is not a string or not valid Unicode (a lone
    surrogate such as JSON's "\\ud800" is a valid JSON string that no tokenizer can encode)."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BertclfError(f"text {i} is a {type(text).__name__}, not a string")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BertclfError(f"text {i} is not valid Unicode: {exc.reason} at character {exc.start} "
                               f"({text[exc.start]!r}); send UTF-8 text") from None


def quantize_int8(model: nn.Module) -> nn.Module:
    """`model` with every linear layer dynamically quantized to int8 (weights int8 per output
    channel, activations quantized per batch at run time): torch's dynamic quantization, for CPUs
    without bf16 units. Per channel, not per tensor: on rotten_tomatoes per tensor lost 0.78
    points of test accuracy, per channel 0.16 (docs/SPEED.md)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch notes that quantized tensors are to move to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class TextClassifier:
    """A trained model plus its preprocessing: raw strings in, labels and probabilities out."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", precision: str = "fp32",
                 batch_size: int = 64, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self.md = md = ModelDir.read(model_dir)
        self.model_dir, self.family, self.arch = md.path, md.family, md.arch
        self.labels, self.text_columns = list(md.labels), list(md.text_columns)
        self.answers = Answers(self.labels, md.thresholds if md.task == tasks.MULTI else None, md.task)
        self.tokenize_cfg = md.tokenize
        if precision == "int8" and device not in ("auto", "cpu"):
            raise BertclfError(f"precision int8 runs on the CPU (dynamic int8 linear layers), not on "
                               f"{device}: use --device cpu")
        self.device = resolve_device("cpu" if precision == "int8" else device)
        self.precision = "int8" if precision == "int8" else resolve_precision(precision, self.device)
        if md.task == tasks.REGRESSION and precision == "auto":  # bf16 keeps 3 digits: 1503 would read 1496
            self.precision = "fp32"
        elif (precision == "auto" and self.precision == "fp32" and self.device.type == "cpu"
              and self.family.reads == "tokens" and self.family.bf16_by_default
              and md.runtime.format != "onnx"):
            # a CPU without bf16 units: a fine-tuned transformer's dynamic int8 linear layers are
            # 2.3x fp32 and pipeline() at its best (r8, AVX2), at the same accuracy (docs/SPEED.md)
            self.precision = "int8"
        self.batch_size = batch_size
        self.runtime = md.runtime.format
        self.tokenizer = DocumentTokenizer(load_tokenizer(md.tokenizer_dir),
                                           md.tokenize)
        # bf16 / fp16: a pre-trained transformer runs on 16-bit weights (no per-step casts; faster
        # than autocast at the same accuracy, docs/SPEED.md), a small head under autocast
        self.half_weights = (HALF.get(self.precision) if self.runtime != "onnx"
                             and self.family.reads == "tokens" and self.family.bf16_by_default else None)
        self.model = self._model(threads)
        # models over token vectors: the encoder that turns token ids into the vectors they read
        self.encoder: nn.Module | None = None  # (its PyTorch module, where it is one)
        self.encode_ids = self._encoder(threads) if self.family.reads == "features" else None

    def _model(self, threads: int) -> nn.Module:
        md = self.md
        if self.runtime == "onnx" and self.family.export == "model":
            return OnnxClassifier(md.need(md.onnx_file), threads, getattr(md.knobs, "window_pool", "mean"))
        model = md.load_model().to(self.device)
        if self.precision == "int8" and self.family.reads == "tokens" and self.family.bf16_by_default:
            return quantize_int8(model)
        return model.to(self.half_weights) if self.half_weights else model

    def _encoder(self, threads: int) -> Callable[[list[np.ndarray]], torch.Tensor]:
        md = self.md
        pad_id = self.tokenizer.tok.pad_token_id or 0
        if self.runtime == "onnx":
            return OnnxEncoder(md.need(md.onnx_file), pad_id, threads)
        encoder = load_encoder(md.need(md.encoder_dir), str(self.device))
        if self.precision in HALF:
            encoder.to(HALF[self.precision])
        elif self.precision == "int8":
            encoder = quantize_int8(encoder)
        self.encoder = encoder
        return batch_encoder(encoder, md.layers or "last", pad_id, self.device)

    # ---- the three steps: text -> token ids -> model input store -> logits

    def encode(self, texts: Sequence[str]) -> dict[str, list]:
        """Token ids and sentence spans, exactly as the `tokenize` stage makes them."""
        check_texts(texts)
        return self.tokenizer.encode(list(texts))

    def store(self, encoded: dict[str, list]) -> FeatureStore | TokenStore:
        """The model's input for encoded texts: token ids, or the encoder's token vectors."""
        if self.encode_ids is None:
            return TokenStore.from_ids(encoded["input_ids"], encoded["windows"], encoded["window_lengths"])
        ids = encoded["input_ids"]
        lengths = np.asarray(encoded["length"], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        int8 = self.md.store == "int8"  # the vectors rounded as the model's training vectors were
        vectors = np.zeros((int(offsets[-1]), self.md.dims.input_dim), dtype=np.int8 if int8 else np.float16)
        scales = np.zeros(int(offsets[-1]), dtype=np.float32) if int8 else None
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        encode_documents(self.encode_ids, flat, offsets, MAX_BATCH_TOKENS, vectors, scales=scales)
        return FeatureStore.from_arrays(vectors, lengths, encoded["sentence_lengths"], scales)

    def _autocast(self) -> Any:
        exact = self.half_weights or self.precision == "int8"  # the weights carry the precision
        return autocast(self.device, "fp32" if exact else self.precision)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw scores ``[len(texts), num_labels]``."""
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.logits_of(self.store(self.encode(texts)))

    def logits_of(self, store: FeatureStore | TokenStore) -> np.ndarray:
        with self._autocast():
            budget = PREDICT_BATCH_TOKENS if self.family.reads == "tokens" else 0
            return predict_logits(self.model, store, self.batch, self.batch_size, self.device,
                                  max_batch_tokens=budget)

    def batch(self, store: FeatureStore | TokenStore, idx: np.ndarray) -> Batch:
        """The model's inputs for documents `idx` of `store`."""
        return self.family.batch(store, idx, self.md.knobs, self.md.dims)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities ``[len(texts), num_labels]``: a softmax over classes, or (multi-label) a
        sigmoid per label; regression: the values ``[len(texts), 1]``."""
        return tasks.probabilities(self.md.task, self.logits(texts))

    def predict(self, texts: str | Sequence[str]) -> list[Prediction]:
        """The answer and class probabilities of each text (a single string is one text)."""
        if isinstance(texts, str):
            texts = [texts]
        probs = self.predict_proba(texts)
        decided = tasks.decide(self.md.task, probs, self.md.thresholds)
        out = []
        for row, choice in zip(probs, decided, strict=True):
            if self.md.task == tasks.REGRESSION:
                out.append(Prediction(f"{float(choice):.6g}", float("nan"), {}, (), float(choice)))
                continue
            best = int(row.argmax()) if choice.ndim else int(choice)
            chosen = (tuple(self.labels[j] for j in np.flatnonzero(choice)) if choice.ndim
                      else (self.labels[best],))
            out.append(Prediction(self.labels[best], float(row[best]),
                                  {name: float(p) for name, p in zip(self.labels, row, strict=True)}, chosen))
        return out

    def describe(self) -> dict[str, Any]:
        """What a user (and `bench`) wants to know about the loaded model."""
        return {"model": str(self.model_dir), "arch": self.arch, "runtime": self.runtime,
                "quantize": self.md.runtime.quantize, "labels": len(self.labels),
                "device": str(self.device), "precision": self.precision, "threads": torch.get_num_threads(),
                "max_length": self.tokenize_cfg.max_length, "truncation": self.tokenize_cfg.truncation,
                "windows": self.tokenize_cfg.windows,
                "max_batch_tokens": PREDICT_BATCH_TOKENS if self.family.reads == "tokens" else None}


def load(model_dir: str | Path, **kwargs: Any) -> TextClassifier:
    """A saved model (`models/classifier`, or an exported ONNX directory) ready to `predict`."""
    return TextClassifier(model_dir, **kwargs)


