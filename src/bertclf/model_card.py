"""The model card of a model directory: ``README.md`` with the hub's YAML metadata.

The card says what the model is (arch, base model, dataset, labels), how good it was on
validation when it was saved (test scores come later, from `evaluate`, in
``metrics/eval.json``), the parameters, the command that reproduces it, and how to use it.
Nothing in it depends on the clock, so the same run writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bertclf.config import Config, to_dict, to_yaml
from bertclf.model_dir import ModelDir
from bertclf.tasks import HEADLINE, NAMES

# The sections whose values decide what `train` produces (dvc.yaml's params of train and upstream).
TRAIN_SECTIONS = ("data", "split", "encoder", "tokenize", "pretrain", "featurize", "train")

Params = Mapping[str, Mapping[str, Any]]  # section -> key -> value


def model_params(config: Config) -> dict[str, dict[str, Any]]:
    """The sections of params.yaml that decide the model `train` makes: upstream stages, the recipe
    and the arch's own knobs."""
    values = to_dict(config)
    return {section: values[section] for section in (*TRAIN_SECTIONS, config.train.arch)}


def overrides(params: Params) -> list[str]:
    """``key=value`` for every parameter in `params` that differs from the defaults."""
    default = to_dict(Config())
    return [f"{section}.{key}={to_yaml(value)}" for section, values in params.items()
            for key, value in values.items() if value != default[section][key]]


def model_card(md: ModelDir, params: Params, summary: Mapping[str, Any]) -> str:
    """The README.md of model directory `md`, trained with `params` (`model_params`); `summary` is
    the training report (best validation accuracy and epoch)."""
    from bertclf.data.encoder_source import local_encoder

    arch, data = md.arch, params["data"]["name"]
    dataset = f"{data} ({params['data']['path']})" if params["data"]["path"] else data
    encoder = md.encoder
    base = str(encoder.get("name") or params["encoder"]["name"])
    headline = HEADLINE[md.task]
    val = summary.get(f"best_val_{headline}")
    metric = NAMES[headline]
    hf_native = md.family.hf_model
    metadata: dict[str, Any] = {
        **({} if local_encoder(base) else {"base_model": base.removeprefix("hf:")}),  # hub ids only
        "library_name": "transformers" if hf_native else "bertclf",
        "pipeline_tag": "text-classification",
        "tags": ["bertclf", "text-classification", arch],
        "model-index": [{"name": f"bertclf-{arch}-{data}", "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": {"name": dataset, "type": data, "split": "validation"},
            "metrics": [{"type": headline if headline != "acc" else "accuracy", "value": val,
                         "name": f"validation {metric}"}],
        }]}],
    }
    command = " ".join(["dvc exp run", *(f"-S '{o}'" for o in overrides(params))])
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
        "---", to_yaml(metadata, flow=False), "---", "",
        f"# bertclf {arch} on {dataset}", "",
        f"A `{arch}` text classifier trained by bertclf on `{dataset}` "
        f"over `{base}`" + (f" (commit {encoder['commit']})" if encoder.get("commit") else "") + ".", "",
        f"- labels ({len(md.labels)}): {', '.join(f'`{label}`' for label in md.labels)}",
        f"- task: {md.task}" + (f", a label predicted from probability {_cuts(md.thresholds)}"
                                if md.thresholds else ", the answer is the median of the predicted "
                                "distribution over the ordered labels" if md.task == "ordinal" else ""),
        f"- validation {metric} {val} at epoch {summary.get('best_epoch')} of "
        f"{summary.get('epochs_run')}"
        + (" (trained on validation too, so not a held-out score)" if params["train"]["train_on_val"] else "")
        + "; test scores are in the project's `metrics/eval.json`",
        f"- inputs are cut to {md.tokenize.max_length} tokens ({md.tokenize.truncation})", "",
        "## Use", "", use,
        "## How it was made", "",
        "In the bertclf project, with its `params.yaml` at the defaults except what the command sets:", "",
        f"```sh\n{command}\n```", "",
        "The parameters that decide this model:", "",
        f"```yaml\n{to_yaml(dict(params), flow=False)}\n```", "",
    ])


def _cuts(thresholds: tuple[float, ...]) -> str:
    """The thresholds in words: one number when all are the same."""
    return f"{thresholds[0]:.2f}" if len(set(thresholds)) == 1 else ", ".join(f"{t:.2f}" for t in thresholds)
