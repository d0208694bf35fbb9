"""What makes a model directory a Hugging Face model too: label names in ``config.json``, the
tokenizer's ``model_max_length``, and a model card (``README.md`` with the hub's YAML metadata).

The card says what the model is (arch, base model, dataset, labels), how good it was on
validation when it was saved (test scores come later, from `evaluate`, in
``metrics/eval.json``), the parameters, the command that reproduces it, and how to use it.
Nothing in it depends on the clock, so the same run writes the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bertclf.config import Config, to_dict

# The sections whose values decide what `train` produces (dvc.yaml's params of train and upstream).
TRAIN_SECTIONS = ("data", "split", "encoder", "tokenize", "pretrain", "featurize", "train")


def name_labels(model_dir: Path, labels: list[str]) -> None:
    """Write id2label / label2id into a Hugging Face ``config.json`` in `model_dir`, so that
    ``pipeline("text-classification", model=dir)`` answers with the label names, not LABEL_0."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    config.id2label = {i: str(label) for i, label in enumerate(labels)}
    config.label2id = {str(label): i for i, label in enumerate(labels)}
    config.save_pretrained(model_dir)


def set_max_length(model_dir: Path, max_length: int) -> None:
    """The tokenizer's ``model_max_length``: the length the model was trained on, so that
    ``truncation=True`` cuts long texts where training did."""
    path = model_dir / "tokenizer_config.json"
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        config["model_max_length"] = max_length
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def overrides(config: Config) -> list[str]:
    """``-S key=value`` for every parameter `train` depends on that differs from the defaults."""
    ours, default = to_dict(config), to_dict(Config())
    sections = (*TRAIN_SECTIONS, config.train.arch)
    return [f"{section}.{key}={_yaml_value(value)}" for section in sections
            for key, value in ours[section].items() if value != default[section][key]]


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(_yaml_value, value)) + "]"
    return str(value)


def model_card(config: Config, labels: list[str], summary: dict[str, Any], hf_native: bool,
               encoder: dict[str, Any], tokenize: dict[str, Any]) -> str:
    """The README.md of a model directory: YAML metadata for the hub, then what a reader needs.
    `encoder` is the encoder's source record (its hub id, revision, commit), `tokenize` the
    settings the training data was tokenized with."""
    from bertclf.data.encoder_source import local_encoder

    arch, data = config.train.arch, config.data.name
    dataset = f"{data} ({config.data.path})" if config.data.path else data
    base = str(encoder.get("name") or config.encoder.name)
    val = summary.get("best_val_acc")
    metadata: dict[str, Any] = {
        **({} if local_encoder(base) else {"base_model": base.removeprefix("hf:")}),  # hub ids only
        "library_name": "transformers" if hf_native else "bertclf",
        "pipeline_tag": "text-classification",
        "tags": ["bertclf", "text-classification", arch],
        "model-index": [{"name": f"bertclf-{arch}-{data}", "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": {"name": dataset, "type": data, "split": "validation"},
            "metrics": [{"type": "accuracy", "value": val, "name": "validation accuracy"}],
        }]}],
    }
    command = " ".join(["dvc exp run", *(f"-S '{o}'" for o in overrides(config))])
    params = {s: to_dict(config)[s] for s in (*TRAIN_SECTIONS, arch)}
    if hf_native:
        use = ("```python\nfrom transformers import pipeline\n\n"
               'clf = pipeline("text-classification", model="<this directory>", truncation=True)\n'
               'clf("a text to classify")\n```\n\nor with bertclf, which cuts texts as training did:\n\n')
    else:
        use = (f"`{arch}` classifies the token vectors of the frozen encoder in `encoder/`; load it with "
               "bertclf:\n\n")
    use += ("```python\nimport bertclf\n\nclf = bertclf.load(\"<this directory>\")\n"
            'clf.predict(["a text to classify"])\n```\n\n'
            "or `bertclf predict -m <this directory> \"a text\"`, `bertclf serve <this directory>`.\n")
    return "\n".join([
        "---", yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# bertclf {arch} on {dataset}", "",
        f"A `{arch}` text classifier trained by bertclf on `{dataset}` "
        f"over `{base}`" + (f" (commit {encoder['commit']})" if encoder.get("commit") else "") + ".", "",
        f"- labels ({len(labels)}): {', '.join(f'`{label}`' for label in labels)}",
        f"- validation accuracy {val} at epoch {summary.get('best_epoch')} of "
        f"{summary.get('epochs_run')}"
        + (" (trained on validation too, so not a held-out score)" if config.train.train_on_val else "")
        + "; test scores are in the project's `metrics/eval.json`",
        f"- inputs are cut to {tokenize['max_length']} tokens ({tokenize['truncation']})", "",
        "## Use", "", use,
        "## How it was made", "",
        "In the bertclf project, with its `params.yaml` at the defaults except what the command sets:", "",
        f"```sh\n{command}\n```", "",
        "The parameters that decide this model:", "",
        f"```yaml\n{yaml.safe_dump(params, sort_keys=False, allow_unicode=True).rstrip()}\n```", "",
    ])
