"""The `bertclf` command line. Pipeline stages run through `dvc repro`; this is for users."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from bertclf import __version__
from bertclf.cli_support import setup_logging, user_errors
from bertclf.data.datasets import RECIPES
from bertclf.errors import DEBUG_ENV, BertclfError


class _Commands(TyperGroup):
    """Every command (and `study`'s) runs inside `user_errors`: an error the user can act on is one
    line on stderr and exit status 1, not a traceback (`-v` or `BERTCLF_DEBUG=1` shows it)."""

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors():
            return super().invoke(ctx)


app = typer.Typer(cls=_Commands, help="BERT-based text classifiers as a reproducible DVC pipeline.",
                  no_args_is_help=True, add_completion=False)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"bertclf {__version__}")
        raise typer.Exit()


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show tracebacks of errors")] = False,
         version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print the version and exit")] = False) -> None:
    """BERT-based text classifiers as a reproducible DVC pipeline."""
    setup_logging()  # progress lines when stderr is not a terminal
    if verbose:
        os.environ[DEBUG_ENV] = "1"


@app.command()
def datasets() -> None:
    """List the named datasets and where they come from."""
    for name, recipe in RECIPES.items():
        typer.echo(f"{name:16} {recipe.description}")
    typer.echo(f"{'file':16} your own csv/tsv/jsonl/parquet (data.path, data.test_path)")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def init(
    file: Annotated[Path, typer.Argument(help="your labelled csv, tsv, jsonl or parquet file")],
    text_column: Annotated[list[str] | None, typer.Option(help="the text column (repeat it to join several); "
                                                          "default: guessed")] = None,
    label_column: Annotated[str | None, typer.Option(help="the label column; default: guessed")] = None,
    test: Annotated[Path | None, typer.Option(help="a separate test file with the same columns")] = None,
    dvc: Annotated[bool, typer.Option(help="register the file with DVC (dvc add)")] = True,
) -> None:
    """Train on your own file: guess its columns, show the label counts, put it under inputs/data/
    tracked by DVC, and set params.yaml's data section. Then: dvc repro."""
    from bertclf.data.own_file import init_file

    init_file(file, text_column or None, label_column, test, dvc=dvc, echo=typer.echo)


study_app = typer.Typer(help="Tuning studies through DVC experiments.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("run")
def study_run(
    study_file: Annotated[Path, typer.Argument(help="the study definition, e.g. studies/han_ablation.yaml")],
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="parallel queue workers")] = None,
) -> None:
    """Queue every variant as a DVC experiment, run the queue, then retrain the best on validation."""
    from bertclf.experiments.study import load_study, run_study

    failed = run_study(load_study(study_file), jobs, echo=typer.echo)
    if failed:
        raise typer.Exit(1)


@study_app.command("report")
def study_report(study_file: Annotated[Path, typer.Argument(help="the study definition")]) -> None:
    """Write reports/<study>/ (tables, plots, analysis) and metrics/study_<study>.json."""
    from bertclf.experiments.study import load_study
    from bertclf.experiments.study_report import write_report

    out = write_report(load_study(study_file))
    typer.echo(f"wrote {out}/README.md")


@app.command()
def compare(
    dataset: Annotated[str | None, typer.Option(help="data.name (default: params.yaml's)")] = None,
    task: Annotated[str | None, typer.Option(help="data.task, when the dataset has experiments of several "
                                             "(IMDB: single_label and ordinal)")] = None,
) -> None:
    """Table and bar chart of the test score per model (tfidf, cnn, rnn, bigru, han, finetune)."""
    from bertclf.config import load_config
    from bertclf.experiments.compare import write_compare

    name = dataset or load_config().data.name
    out = write_compare(name, task=task)
    typer.echo(out.read_text())


MODEL_OPTION = typer.Option("--model", "-m", help="a trained model directory (or an exported one)")


DEVICE_HELP = "where the model runs: auto (the GPU if there is one) | cpu | cuda | cuda:N"


def _device(value: str) -> str:
    """--device checked as it is parsed: auto, cpu, cuda or cuda:N."""
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N")


PRECISION_HELP = ("auto: bf16 where the CPU (AMX, AVX512-BF16) or GPU has bf16 units, fp16 on other GPUs, "
                  "else fp32; int8: dynamic int8 linear layers (CPU)")


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
    parquet = "parquet"


class Quantize(StrEnum):
    int8 = "int8"


class ExportFormat(StrEnum):
    onnx = "onnx"


@app.command()
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="texts to classify; - reads them from standard "
                                                       "input, one per line")] = None,
    model: Annotated[Path, MODEL_OPTION] = Path("models/classifier"),
    input: Annotated[Path | None, typer.Option("--input", "-i", help="txt (one text per line), csv, tsv, "
                                                "jsonl or parquet; - is standard input")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="csv, tsv, jsonl or parquet: the "
                                                 "input's columns, label, probability per class; - or none "
                                                 "given with --input: standard output")] = None,
    format: Annotated[Format | None, typer.Option("--format", "-f", help="output format (default: the "
                                                  "output's suffix; jsonl on standard output)")] = None,
    text_column: Annotated[list[str] | None, typer.Option(help="the text column of --input; repeat it to "
                                                          "join several (title, then body); default: the "
                                                          "column(s) the model was trained on")] = None,
    columns: Annotated[str | None, typer.Option(help="a csv/tsv without a header row: its column names, "
                                                "comma-separated")] = None,
    interactive: Annotated[bool, typer.Option("--interactive", help="a prompt loop with line editing and "
                                              "history; Ctrl-D quits")] = False,
    top_k: Annotated[int, typer.Option(help="classes shown per text")] = 3,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device)] = "auto",
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.auto,
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
) -> None:
    """Classify new text with a trained model: arguments, a file, standard input, or a prompt.

    \b
    bertclf predict "a text" "another"          label, probability and the runners-up
    bertclf predict -i new.csv -o scored.csv    every row, its other columns kept
    cat texts.txt | bertclf predict - > out.jsonl
    bertclf predict --interactive
    """
    from bertclf.serving.predict_io import STDIO, format_prediction, output_format, predict_file, read_lines
    from bertclf.serving.predict_io import interactive as loop
    from bertclf.serving.predictor import load

    if texts == [STDIO]:
        texts, input = None, Path(STDIO)
    if sum([bool(texts), input is not None, interactive]) != 1:
        typer.echo("error: give texts, - (standard input), --input FILE or --interactive (one of them)",
                   err=True)
        raise typer.Exit(2)
    fmt = format.value if format else None
    if output is not None or input is not None:
        output_format(output, fmt)
    if sys.stderr.isatty():
        typer.echo(f"loading {model}...", err=True)
    clf = load(model, device=device, precision=precision.value, batch_size=batch_size)
    if interactive:
        banner = (f"{clf.arch} model, {len(clf.labels)} labels ({', '.join(clf.labels[:8])}"
                  f"{', ...' if len(clf.labels) > 8 else ''}). Type a text and press Enter; Ctrl-D quits.")
        loop(clf, read_lines(sys.stdin), typer.echo, top_k, lambda m: typer.echo(m, err=True), banner)
        return
    names = tuple(c.strip() for c in columns.split(",")) if columns else None
    if input is not None:
        n = predict_file(clf, input, output, text_column or None, fmt, names)
        if output is not None and str(output) != STDIO:
            typer.echo(f"classified {n} texts from {input} into {output}", err=True)
        return
    if output is not None:
        from bertclf.serving.predict_io import output_rows, write_predictions

        probs = clf.predict_proba(texts or [])
        rows = output_rows(texts or [], probs, clf.answers)
        n = write_predictions(output, rows, clf.answers, fmt)
        if str(output) != STDIO:
            typer.echo(f"wrote {n} predictions to {output}", err=True)
        return
    probs = clf.predict_proba(texts or [])
    for text, row in zip(texts or [], probs, strict=True):
        typer.echo(format_prediction(text, row, clf.answers, top_k))


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="a trained model directory (or an exported one)")] = Path(
        "models/classifier"),
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_texts: Annotated[int, typer.Option(help="texts per request, at most")] = 256,
    max_body_kb: Annotated[int, typer.Option(help="request body size, at most (KiB)")] = 1024,
    batch_size: Annotated[int, typer.Option(help="texts per forward pass, from concurrent requests")] = 64,
    max_wait_ms: Annotated[float, typer.Option(help="how long a batch waits for more requests")] = 5.0,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device)] = "auto",
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.auto,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve a model over HTTP: POST /predict {"texts": [...]}, GET /health (Ctrl-C stops, gracefully).

    \b
    curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["a text"]}'
    """
    from bertclf.serving.predictor import load

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from bertclf.serving.server import Limits, serve
    except ImportError:
        typer.echo("error: bertclf serve needs fastapi and uvicorn: pip install 'bertclf[serve]'", err=True)
        raise typer.Exit(1) from None
    if min(max_texts, max_body_kb, batch_size) < 1 or max_wait_ms < 0:
        typer.echo("error: --max-texts, --max-body-kb and --batch-size must be positive, --max-wait-ms "
                   "not negative", err=True)
        raise typer.Exit(2)
    clf = load(model, device=device, precision=precision.value, batch_size=batch_size)
    limits = Limits(max_texts=max_texts, max_body_bytes=max_body_kb << 10, max_batch=batch_size,
                    max_wait_ms=max_wait_ms)
    serve(clf, host, port, limits, access_log)


@app.command()
def bench(
    model: Annotated[Path, MODEL_OPTION] = Path("models/classifier"),
    data: Annotated[Path, typer.Option(help="a parquet of real texts (text column)")] = Path(
        "data/split/test.parquet"),
    batch_sizes: Annotated[str, typer.Option(help="comma-separated")] = "1,8,32,128",
    limit: Annotated[int, typer.Option(help="texts used (the first N)")] = 1000,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, callback=_device)] = "auto",
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = Precision.auto,
    threads: Annotated[int, typer.Option(help="torch threads; 0 = default")] = 0,
    out: Annotated[Path, typer.Option(help="writes OUT.json and OUT.md")] = Path("reports/bench"),
) -> None:
    """Inference throughput (samples/s) and latency (p50/p95) per batch size, on real texts."""
    from bertclf.serving.bench import markdown, read_bench_texts, run_bench, write_bench
    from bertclf.serving.predictor import load

    sizes = _int_list(batch_sizes, "--batch-sizes")
    texts = read_bench_texts(data, limit)
    clf = load(model, device=device, precision=precision.value, threads=threads)
    report = run_bench(clf, texts, sizes)
    report["data"] = str(data)
    json_path, md_path = write_bench(report, out)
    typer.echo(markdown(report))
    typer.echo(f"wrote {json_path} and {md_path}", err=True)


@app.command()
def export(
    model: Annotated[Path, MODEL_OPTION] = Path("models/classifier"),
    format: Annotated[ExportFormat, typer.Option("--format", help="the exported model's format")] = (
        ExportFormat.onnx),
    quantize: Annotated[Quantize | None, typer.Option(help="dynamic quantization of the weights")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: MODEL-onnx[-int8]")] = None,
    data: Annotated[Path, typer.Option(help="split parquet for the parity check")] = Path(
        "data/split/test.parquet"),
    limit: Annotated[int | None, typer.Option(help="check parity on the first N texts only")] = None,
) -> None:
    """Export to ONNX (dynamic batch and length), optionally int8; check parity with PyTorch."""
    from bertclf.serving.export import check_parity, describe, export_onnx

    q = quantize.value if quantize else None
    target = output or model.with_name(model.name + "-onnx" + (f"-{q}" if q else ""))
    if sys.stderr.isatty():
        typer.echo(f"exporting {model} to ONNX{' and quantizing it to ' + q if q else ''}...", err=True)
    export_onnx(model, target, q)
    typer.echo(f"exported {model} to {target}")
    report = check_parity(model, target, data, limit)
    typer.echo(describe(report))


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BertclfError(f"{option} takes comma-separated integers, not {text!r}") from None
