"""params.yaml as typed config: one frozen dataclass per section, one loader, defaults in one place.

The loader reads YAML 1.2, as DVC writes it (`dvc exp run -S train.lr=3e-5` stores ``3e-05``,
a float in YAML 1.2 but a string to a YAML 1.1 reader such as PyYAML's). Every value is checked
against its field's type, every unknown key is refused with the closest valid one, and the
checks run on the whole file whichever stage loads it, so a typo stops the first stage that
runs, before it does any work.

Sections and who reads them (dvc.yaml declares exactly these):

- ``data``, ``split``: download / split; ``encoder``: download, featurize;
  ``tokenize``, ``pretrain``, ``featurize``, ``tfidf``: their stages;
- ``train``: the training recipe every arch shares; ``han``, ``bigru``, ``rnn``, ``cnn``,
  ``finetune``: each arch's model knobs, read by `train` only for ``train.arch``;
- ``runtime``: how to compute, never what (threads, device, logging cadence, evaluation batch
  size): no stage declares it, so changing it re-runs nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from bertclf.errors import ConfigError

PARAMS_FILE = "params.yaml"

Norm = Literal["none", "layer", "batch"]
Task = Literal["single_label", "multi_label", "ordinal", "regression"]  # the kinds of label (bertclf.tasks)
LrDecay = Literal["none", "step", "exponential", "cosine", "linear"]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(f"{PARAMS_FILE}: {message}")


@dataclass(frozen=True)
class DataConfig:
    # rotten_tomatoes | yelp2013 | imdb | webkb | r8 | r52 | cade12 | file
    name: str = "rotten_tomatoes"
    # file: the train file; yelp2013: the review file; cade12: cade-train-stemmed.txt.
    # Under inputs/data/ (tracked).
    path: str | None = None
    test_path: str | None = None  # file: an optional test file; cade12: cade-test-stemmed.txt
    # file: the text column, or a list of columns joined into one text; null means "text"
    text_column: str | tuple[str, ...] | None = None
    label_column: str | None = None  # null means "label"
    # file: names for the columns of a csv/tsv without a header row (null: the first row names them)
    columns: tuple[str, ...] | None = None
    # the kind of label: one class per document, any number of them (multi_label), one of an
    # ordered set (ordinal: stars, ratings; numbers sort as numbers, other names need label_order),
    # or a number (regression)
    task: Task = "single_label"
    # multi_label: one 0/1 column per label (["*"]: every column but the text), instead of
    # label_column holding the labels (a list in jsonl / parquet, or text split by label_separator)
    label_columns: tuple[str, ...] | None = None
    label_separator: str | None = None  # multi_label: e.g. "," for a label column of "earn,acq"
    label_order: tuple[str, ...] | None = None  # ordinal: the labels from lowest to highest
    # readable names for coded labels, as "code=name" ([1=World, 2=Sports]): used everywhere a label is shown
    label_names: tuple[str, ...] | None = None

    def check(self) -> None:
        _check(self.text_column != (), "data.text_column must name at least one column")
        _check(self.columns is None or len(self.columns) >= 2, "data.columns must name every column "
               "of the file (at least a text and a label column)")
        for key in ("label_columns", "label_separator"):
            _check(getattr(self, key) is None or self.task == "multi_label",
                   f"data.{key} is for data.task: multi_label (data.task is {self.task})")
        _check(self.label_order is None or self.task == "ordinal",
               f"data.label_order is for data.task: ordinal (data.task is {self.task})")
        _check(self.label_order is None or len(set(self.label_order)) == len(self.label_order) >= 2,
               "data.label_order must name at least two labels, each once")
        pairs = self.label_names or ()
        _check(all("=" in n and n.split("=", 1)[1].strip() for n in pairs),
               "data.label_names are code=name pairs, e.g. [1=World, 2=Sports]")
        _check(self.label_names is None or self.task != "regression",
               "data.label_names is for labels that are classes; data.task is regression")
        _check(not (self.label_columns and self.label_separator),
               "data.label_columns (one 0/1 column per label) and data.label_separator (labels in one "
               "column) exclude each other: set one")
        _check(self.label_columns != () and self.label_separator != "",
               "data.label_columns and data.label_separator must not be empty")


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    max_train: int | None = None
    max_test: int | None = None
    dedupe: bool = True
    empty_texts: Literal["drop", "error"] = "drop"

    def check(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            _check(0 <= getattr(self, key) < 1, f"split.{key}={getattr(self, key)} must be in [0, 1)")
        for key in ("max_train", "max_test"):
            value = getattr(self, key)
            _check(value is None or value >= 1, f"split.{key}={value} must be null or at least 1")


@dataclass(frozen=True)
class EncoderConfig:
    # a Hugging Face model id, hf:<id>, or a model directory under inputs/encoders/
    name: str = "sentence-transformers/all-MiniLM-L6-v2"
    revision: str | None = None  # a hub commit, branch or tag to pin; recorded in the model directory


@dataclass(frozen=True)
class TokenizeConfig:
    max_length: int = 256  # special tokens included
    truncation: Literal["head", "tail", "head_tail"] = "head"
    head_tokens: int = 128
    max_sentences: int = 30
    max_sentence_tokens: int = 64
    batch_size: int = 1024  # documents per tokenizer call
    # finetune: up to `windows` windows of max_length tokens per document, a new one every
    # `window_stride` text tokens, their logits pooled per document (1: the truncated text only)
    windows: int = 1
    window_stride: int = 128

    def check(self) -> None:
        _check(self.max_length >= 3 and self.max_sentences >= 1 and self.max_sentence_tokens >= 1,
               "tokenize.max_length must be >= 3 and the sentence limits >= 1")
        _check(self.windows >= 1 and self.window_stride >= 1,
               f"tokenize.windows={self.windows} and window_stride={self.window_stride} must be >= 1")
        _check(self.truncation != "head_tail" or 0 <= self.head_tokens <= self.max_length,
               "tokenize.head_tokens must be between 0 and max_length")
        _check(self.batch_size >= 1, "tokenize.batch_size must be positive")


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 0  # 0 skips: the encoder is used as downloaded
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 128
    mask_prob: float = 0.15
    warmup_ratio: float = 0.1
    eval_fraction: float = 0.05
    seed: int = 42
    # auto: bf16 autocast on a GPU with bf16 units, fp16 with a gradient scaler on one without,
    # fp32 on a CPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    def check(self) -> None:
        _check(self.steps >= 0 and 0 < self.mask_prob < 1 and 0 < self.eval_fraction < 1,
               "pretrain.steps >= 0, 0 < mask_prob < 1 and 0 < eval_fraction < 1")


@dataclass(frozen=True)
class FeaturizeConfig:
    layers: Literal["last", "mean_last_4", "sum_last_4", "concat_last_4"] = "mean_last_4"
    max_batch_tokens: int = 2048  # padded tokens per encoder pass (batches are grouped by length)
    # auto: bf16 weights where the CPU (or GPU) has bf16 units, fp16 weights on a GPU without
    # them, else fp32
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # how the vectors are stored: float16, or int8 with a scale per token (about half the disk)
    store: Literal["float16", "int8"] = "float16"

    def check(self) -> None:
        _check(self.max_batch_tokens >= 1, "featurize.max_batch_tokens must be positive")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe, the same for every arch."""

    arch: Literal["han", "bigru", "finetune", "cnn", "rnn"] = "han"  # the registry's (bertclf.models)
    lr: float = 0.002
    lr_decay: LrDecay = "none"
    warmup_ratio: float = 0.0
    lr_gamma: float = 0.5  # step / exponential: LR x gamma every lr_step_epochs
    lr_step_epochs: int = 1
    weight_decay: float = 0.01
    batch_size: int = 64
    grad_accum: int = 1  # batches per optimizer step
    epochs: int = 6
    patience: int = 3  # early stopping on the task's headline metric on validation (accuracy, Jaccard, QWK)
    seed: int = 42
    # balanced: each class weighed by the inverse of its frequency; multi_label: each label's
    # positives weighed by its negatives / positives (BCE's pos_weight)
    class_weights: Literal["none", "balanced"] = "none"
    grad_clip: float = 5.0  # 0: no clipping
    # auto: for finetune bf16 autocast on GPUs and CPUs with bf16 units, fp16 autocast with a
    # gradient scaler on GPUs without them (V100, T4); fp32 for the other archs
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # final retrain on train + validation (no early stopping, the last epoch is kept)
    train_on_val: bool = False
    # deterministic algorithms only (torch.use_deterministic_algorithms): the same result on a GPU
    # run after run, at some cost in speed; CPU runs are deterministic already
    deterministic: bool = False
    # multi_label: the probability above which a label is predicted, chosen on validation after
    # training: one for all labels, or one per label
    thresholds: Literal["global", "per_label"] = "global"
    # ordinal: cross_entropy, or emd (squared earth mover's distance: mass far from the true
    # rating costs more than mass next to it)
    ordinal_loss: Literal["cross_entropy", "emd"] = "cross_entropy"

    def check(self) -> None:
        _check(self.epochs >= 1 and self.batch_size >= 1 and self.grad_accum >= 1,
               "train.epochs, train.batch_size and train.grad_accum must be positive")
        _check(self.lr > 0, f"train.lr={self.lr} must be positive")
        _check(0 <= self.warmup_ratio < 1, f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        _check(self.lr_step_epochs >= 1 and self.patience >= 1,
               "train.lr_step_epochs and train.patience must be positive")


@dataclass(frozen=True)
class RecurrentConfig:
    """han / bigru over token vectors: stacked BiGRU layers and additive attention."""

    hidden: int = 50  # GRU units per direction
    depth: int = 1  # stacked recurrent layers per level
    dropout: float = 0.5
    norm: Norm = "none"
    residual: bool = False  # skip connections between stacked layers
    attention_dim: int = 100

    def check(self) -> None:
        _check(0 <= self.dropout < 1, f"dropout={self.dropout} must be in [0, 1)")
        _check(self.hidden >= 1 and self.depth >= 1 and self.attention_dim >= 1,
               "hidden, depth and attention_dim must be positive")


@dataclass(frozen=True)
class RNNConfig(RecurrentConfig):
    """rnn: BiLSTM + attention over learned embeddings of the token ids."""

    embedding_dim: int = 128


@dataclass(frozen=True)
class CNNConfig:
    """cnn (Kim 2014): learned embeddings, convolutions of several widths, max over time."""

    embedding_dim: int = 128
    num_filters: int = 100
    filter_widths: tuple[int, ...] = (3, 4, 5)
    dropout: float = 0.5

    def check(self) -> None:
        _check(0 <= self.dropout < 1, f"cnn.dropout={self.dropout} must be in [0, 1)")
        _check(bool(self.filter_widths) and min(self.filter_widths) >= 1,
               "cnn.filter_widths must be a non-empty list of positive integers")


@dataclass(frozen=True)
class FinetuneConfig:
    """finetune: AutoModelForSequenceClassification on the encoder, trained end to end."""

    layer_lr_decay: float = 1.0  # LR of layer l of L: lr * decay ** (L - 1 - l); Sun et al. use 0.95
    # dropout on the attention probabilities; None keeps the encoder's own (0.1 for BERT and MiniLM).
    # 0 lets attention train in SDPA's fused kernel on a CPU instead of the unfused math path.
    attention_dropout: float | None = None
    # dropout on the hidden states (after the embeddings, each attention output and feed-forward
    # block, and before the head); None keeps the encoder's own (0.1). 0 skips drawing its random
    # masks at every step (what that saves on a CPU is measured in benchmarks/README.md).
    hidden_dropout: float | None = None
    # how the logits of a document's windows (tokenize.windows > 1) become the document's
    window_pool: Literal["mean", "max"] = "mean"
    # keep the word embeddings (half of MiniLM's weights) as pre-trained: no gradient, no
    # optimizer state, a cheaper step
    freeze_embeddings: bool = False

    def check(self) -> None:
        _check(0 < self.layer_lr_decay <= 1, "finetune.layer_lr_decay must be in (0, 1]")
        _check(self.attention_dropout is None or 0 <= self.attention_dropout < 1,
               f"finetune.attention_dropout={self.attention_dropout} must be null or in [0, 1)")
        _check(self.hidden_dropout is None or 0 <= self.hidden_dropout < 1,
               f"finetune.hidden_dropout={self.hidden_dropout} must be null or in [0, 1)")


@dataclass(frozen=True)
class TfidfConfig:
    """The classic floor: word n-gram TF-IDF and logistic regression on the same split."""

    ngram_max: int = 2
    min_df: int = 2
    max_features: int = 200_000
    C: float = 10.0

    def check(self) -> None:
        _check(self.ngram_max >= 1 and self.min_df >= 1 and self.max_features >= 1 and self.C > 0,
               "tfidf.ngram_max, min_df, max_features and C must be positive")


@dataclass(frozen=True)
class RuntimeConfig:
    """How to compute, not what: no stage declares these, so changing them re-runs nothing."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # processes per stage for featurize, pretrain, train and evaluate, started by the stage under
    # torchrun (one per GPU; gloo on a CPU); auto: the number of visible GPUs (1 without one)
    processes: int | Literal["auto"] = 1
    threads: int = 0  # torch threads; 0: torch's default
    compile: bool = False  # torch.compile the model (GPU)
    eval_batch_size: int = 256  # documents per batch when scoring
    log_every: int = 20  # train loss and LR every N optimizer steps

    def check(self) -> None:
        _check(self.threads >= 0, "runtime.threads must be 0 (default) or positive")
        _check(self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:")
                                                          and self.device[5:].isdigit()),
               f"runtime.device={self.device!r} must be auto, cpu, cuda or cuda:N")
        _check(self.processes == "auto" or self.processes >= 1,
               "runtime.processes must be auto or a positive integer")
        _check(self.eval_batch_size >= 1 and self.log_every >= 1,
               "runtime.eval_batch_size and runtime.log_every must be positive")


ModelKnobs = RecurrentConfig | CNNConfig | FinetuneConfig


@dataclass(frozen=True)
class Config:
    """The whole params.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    han: RecurrentConfig = field(default_factory=RecurrentConfig)
    bigru: RecurrentConfig = field(default_factory=RecurrentConfig)
    rnn: RNNConfig = field(default_factory=RNNConfig)
    cnn: CNNConfig = field(default_factory=CNNConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def model(self) -> ModelKnobs:
        """The model knobs of `train.arch`."""
        return getattr(self, self.train.arch)

    def replace(self, overrides: Mapping[str, Any]) -> Config:
        """A copy with dotted keys set (``{"train.lr": 3e-5}``), checked like params.yaml."""
        raw = to_dict(self)
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if not name or section not in raw:
                raise ConfigError(f"{key!r} is not a key of {PARAMS_FILE}{_suggest(key)}")
            raw[section][name] = value
        return from_dict(raw)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


def to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Nested plain dicts (tuples as lists), as params.yaml holds them."""
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        values = dataclasses.asdict(getattr(config, name))
        out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def _suggest(key: str) -> str:
    """"; did you mean …?" for a mistyped dotted key: a close key of the same section first, then
    the same (or a close) name in other sections (train.dropout -> han.dropout, …)."""
    section, _, leaf = key.rpartition(".")
    if section not in SECTIONS:
        close = difflib.get_close_matches(key.split(".")[0], list(SECTIONS), n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""
    own = [f.name for f in fields(SECTIONS[section])]
    close = difflib.get_close_matches(leaf, own, n=1, cutoff=0.7)
    if close:
        return f"; did you mean {section}.{close[0]}?"
    others = {s: [f.name for f in fields(cls)] for s, cls in SECTIONS.items() if s != section}
    for cutoff in (1.0, 0.7):
        found = [f"{s}.{m}" for s, names in others.items()
                 for m in difflib.get_close_matches(leaf, names, n=1, cutoff=cutoff)]
        if found:
            return f"; did you mean {' or '.join(found)}?"
    return ""


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(annotation)))
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in get_args(annotation) if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in get_args(annotation) else "")
    if origin is tuple:
        return {int: "a list of integers", str: "a list of strings"}[get_args(annotation)[0]]
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, str(annotation))


_SCALARS: dict[Any, Any] = {
    bool: lambda v: v if isinstance(v, bool) else None,
    int: lambda v: v if type(v) is int else None,
    float: lambda v: float(v) if type(v) in (int, float) else None,
    str: lambda v: v if isinstance(v, str) else None,
}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` as `annotation` wants it, or a ConfigError naming the key, value and type."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(annotation):
            return None
        for option in get_args(annotation):
            if option is not type(None):
                try:
                    return _coerce(value, option, key)
                except ConfigError:
                    pass
    elif origin is Literal:
        if isinstance(value, str) and value in get_args(annotation):
            return value
    elif origin is tuple:
        item = get_args(annotation)[0]
        if isinstance(value, list | tuple) and all(type(v) is item for v in value):
            return tuple(value)
    elif annotation in _SCALARS and value is not None:
        converted = _SCALARS[annotation](value)
        if converted is not None:
            return converted
    quoted = isinstance(value, str) and annotation in (float, int)
    hint = " (write the number without quotes)" if quoted else ""
    raise ConfigError(f"{PARAMS_FILE}: {key}={_short(value)} must be {_type_name(annotation)}{hint}")


def _short(value: Any) -> str:
    """`value`'s repr, bounded while it is made (reprlib): a YAML alias bomb expands to megabytes,
    and an error is one line."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 2, 4, 4, 80, 80
    return short.repr(value)


def section_from(name: str, values: Mapping[str, Any] | None) -> Any:
    """The dataclass of section `name` from its mapping (missing keys take the defaults)."""
    cls = SECTIONS[name]
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{PARAMS_FILE}: section '{name}' must be a mapping, not {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{PARAMS_FILE}: unknown key {name}.{key}{_suggest(f'{name}.{key}')}")
        kwargs[key] = _coerce(value, hints[key], f"{name}.{key}")
    section = cls(**kwargs)
    if hasattr(section, "check"):
        section.check()
    return section


def from_dict(raw: Mapping[str, Any]) -> Config:
    """The config of a parsed params file; unknown sections and keys are refused."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{PARAMS_FILE}: expected a mapping at the top level")
    for name in raw:
        if name not in SECTIONS:
            raise ConfigError(f"{PARAMS_FILE}: unknown section {name!r}{_suggest(str(name))}")
    return Config(**{name: section_from(name, raw.get(name)) for name in SECTIONS})


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file as YAML 1.2 (the way DVC reads and writes params)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root)")
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None


def load_config(path: str | Path = PARAMS_FILE) -> Config:
    """Read and check the whole params file."""
    raw = read_yaml(path) or {}
    try:
        return from_dict(raw)
    except ConfigError as exc:
        if str(path) != PARAMS_FILE:
            raise ConfigError(str(exc).replace(f"{PARAMS_FILE}:", f"{path}:", 1)) from None
        raise


def lookup(raw: Mapping[str, Any], key: str) -> Any:
    """The value of a dotted key in nested mappings (``data.name``), or a ConfigError."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{key!r} is not a key of {PARAMS_FILE}{_suggest(key)}")
        node = node[part]
    return node



def to_yaml(value: Any, flow: bool = True) -> str:
    """`value` as YAML 1.2, the way params.yaml holds it and DVC writes it: in flow style (one line:
    ``3e-05``, ``[3, 4, 5]``, ``null``, ``'1'`` for a string that reads as a number), as
    ``dvc exp run -S key=VALUE`` takes it, or as a block document; keys in their order."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = flow
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.allow_unicode = True
    out = io.StringIO()
    yaml.dump(list(value) if isinstance(value, tuple) else value, out)
    return out.getvalue().strip().removesuffix("...").strip()
