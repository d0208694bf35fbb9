"""`bertclf export --format onnx [--quantize int8]`: the trained model as an ONNX graph with dynamic
batch and length, optionally with dynamic int8 quantization of its weights (onnxruntime), and a
parity check against PyTorch on real texts.

The exported directory holds ``model.onnx`` beside the original ``bertclf.json`` (with a
``runtime`` section), ``labels.json`` and the tokenizer, so `bertclf.load`, `predict` and `bench`
take it like any model directory. Token-id models (finetune, cnn) export whole. For han and
bigru the frozen encoder — nearly all of their compute — becomes ``encoder.onnx`` and the small
recurrent head stays in PyTorch, since packed sequences have no ONNX form; `rnn` (packed
sequences over learned embeddings, no encoder) is refused.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from bertclf import tasks
from bertclf.atomic import atomic_path, write_json
from bertclf.data.stores import Batch
from bertclf.encoder import encoder_vectors, load_encoder
from bertclf.errors import BertclfError
from bertclf.model_dir import WEIGHTS, ModelDir, write_tokenizer_files
from bertclf.models import ARCHS
from bertclf.progress import track
from bertclf.serving.predictor import TextClassifier, import_onnxruntime

QUANTIZE = ("int8",)
OPSET = 17


class _TokenGraph(nn.Module):
    """`forward(input_ids, attention_mask) -> logits`: the signature the ONNX graph gets."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch = Batch(input_ids=input_ids, attention_mask=attention_mask, lengths=attention_mask.sum(1))
        return self.model(batch)


class _EncoderGraph(nn.Module):
    """`forward(input_ids, attention_mask) -> vectors`: the frozen encoder of a token-vector model."""

    def __init__(self, encoder: nn.Module, layers: str):
        super().__init__()
        self.encoder = encoder
        self.layers = layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return encoder_vectors(self.encoder, input_ids, attention_mask, self.layers)


def export_graph(graph: nn.Module, path: Path, output: str, min_length: int = 1) -> None:
    """Trace `graph` (token ids and mask in) to ONNX with dynamic batch and length axes."""
    length = max(8, min_length)
    example = (torch.ones(2, length, dtype=torch.long), torch.ones(2, length, dtype=torch.long))
    out_axes = {0: "batch"} if output == "logits" else {0: "batch", 1: "length"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on Python control flow fixed at export size
        torch.onnx.export(graph.eval(), example, str(path), input_names=["input_ids", "attention_mask"],
                          output_names=[output], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                        "attention_mask": {0: "batch", 1: "length"}, output: out_axes})


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the weights of MatMul/Gemm (activations quantized at run time)."""
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a generic "consider pre-processing" warning
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        root.setLevel(level)


def export_onnx(model_dir: Path, out: Path, quantize: str | None = None) -> Path:
    """Write the exported model directory `out` (atomically)."""
    md = ModelDir.read(model_dir)
    arch = md.family
    if arch.export is None:
        exportable = ", ".join(a.name for a in ARCHS.values() if a.export)
        raise BertclfError(f"{model_dir}: export supports {exportable}; {arch.name} runs packed recurrent "
                           "sequences over learned embeddings, which ONNX cannot express")
    if quantize is not None and quantize not in QUANTIZE:
        raise BertclfError(f"--quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    model = md.load_model()
    exported = md.exported(out, quantize, OPSET)
    with atomic_path(out, is_dir=True) as tmp, tempfile.TemporaryDirectory() as scratch:
        if arch.export == "encoder":  # the encoder goes to ONNX; the small recurrent head stays in PyTorch
            graph: nn.Module = _EncoderGraph(load_encoder(md.need(md.encoder_dir)), md.layers or "last")
            output = "vectors"
            shutil.copyfile(md.weights, tmp / WEIGHTS)
        else:
            graph, output = _TokenGraph(model), "logits"
        graph_file = exported.onnx_file.name
        fp32 = Path(scratch) / graph_file if quantize else tmp / graph_file
        export_graph(graph, fp32, output, max(getattr(md.knobs, "filter_widths", (1,))))
        if quantize:
            quantize_int8(fp32, tmp / graph_file)
        write_tokenizer_files(md.tokenizer_dir, tmp, md.tokenize)
        exported.write(tmp)
    return out


def _logits(clf: TextClassifier, texts: list[str], desc: str, chunk: int = 256) -> np.ndarray:
    parts = [clf.logits(texts[i:i + chunk])
             for i in track(range(0, len(texts), chunk), len(texts), desc, "texts",
                            size=lambda i: len(texts[i:i + chunk]))]
    return np.concatenate(parts) if parts else np.zeros((0, len(clf.labels)), dtype=np.float32)


def parity(reference: TextClassifier, exported: TextClassifier, texts: list[str],
           labels: np.ndarray | None) -> dict[str, Any]:
    """Max abs logit difference, agreement of the answers and the headline score (accuracy;
    multi-label: Jaccard) of both on the same texts."""
    md = reference.md
    t0 = time.perf_counter()
    ref = _logits(reference, texts, "parity: PyTorch")
    t1 = time.perf_counter()
    got = _logits(exported, texts, "parity: exported")
    t2 = time.perf_counter()
    decided = [tasks.decide_logits(md.task, logits, md.thresholds) for logits in (ref, got)]
    # regression: the values agree to 1e-3 of their spread (their float bits never all do)
    same = (np.isclose(decided[0], decided[1], rtol=0, atol=1e-3 * max(float(np.std(decided[0])), 1e-6))
            if md.task == tasks.REGRESSION else decided[0] == decided[1])
    report: dict[str, Any] = {
        "texts": len(texts),
        "max_abs_logit_diff": float(np.abs(ref - got).max()) if len(texts) else 0.0,
        "agreement": round(float((same.all(1) if same.ndim == 2 else same).mean()), 5),
        "pytorch_docs_per_s": round(len(texts) / (t1 - t0), 1),
        "exported_docs_per_s": round(len(texts) / (t2 - t1), 1),
    }
    if labels is not None:
        name = tasks.HEADLINE[md.task]
        truth = (np.stack(labels) if md.task == tasks.MULTI else labels.astype(np.float64)
                 if md.task == tasks.REGRESSION else labels.astype(np.int64))  # a split's labels
        report[f"pytorch_{name}"] = round(tasks.headline_score(md.task, truth, ref, md.thresholds), 5)
        report[f"exported_{name}"] = round(tasks.headline_score(md.task, truth, got, md.thresholds), 5)
        drop = report[f"pytorch_{name}"] - report[f"exported_{name}"]
        report[f"{name}_drop_points"] = round(100 * drop, 2)
    return report


def check_parity(model_dir: Path, out: Path, texts_file: Path | None, limit: int | None = None) -> dict:
    """Run the parity check on the texts (and labels) of a split parquet; saves ``parity.json``."""
    if texts_file is None or not texts_file.is_file():
        raise BertclfError(f"{texts_file}: no texts to check parity on (a split parquet with a text column)")
    df = pd.read_parquet(texts_file)
    if "text" not in df.columns:
        raise BertclfError(f"{texts_file}: no 'text' column")
    if limit:
        df = df.iloc[:limit]
    labels = df["label"].to_numpy() if "label" in df.columns else None
    report = {"checked_on": str(texts_file),
              **parity(TextClassifier(model_dir), TextClassifier(out), df["text"].tolist(), labels)}
    write_json(out / "parity.json", report)
    return report


def describe(report: dict[str, Any]) -> str:
    lines = [f"parity on {report['texts']} texts of {report['checked_on']}:",
             f"  max |logit difference| {report['max_abs_logit_diff']:.2e}, same prediction on "
             f"{report['agreement'] * 100:.2f} %"]
    for key in tasks.HEADLINE.values():
        if f"pytorch_{key}" not in report:
            continue
        name, ours, theirs = tasks.NAMES[key], report[f"pytorch_{key}"], report[f"exported_{key}"]
        if key in tasks.LOWER_IS_BETTER:  # an error in the labels' units, not a share
            lines.append(f"  {name}: PyTorch {ours:.4f}, exported {theirs:.4f}")
        else:
            lines.append(f"  {name}: PyTorch {ours * 100:.2f} %, exported {theirs * 100:.2f} % "
                         f"({-report[f'{key}_drop_points']:+.2f} points)")
    lines.append(f"  speed: PyTorch {report['pytorch_docs_per_s']} docs/s, exported "
                 f"{report['exported_docs_per_s']} docs/s")
    return "\n".join(lines)
