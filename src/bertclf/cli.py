"""The `bertclf` command line. Pipeline stages run through `dvc repro`; this is for users."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from bertclf import __version__
from bertclf.data.datasets import RECIPES
from bertclf.errors import DEBUG_ENV, BertclfError, debugging, explain

T = TypeVar("T")

app = typer.Typer(help="BERT-based text classifiers as a reproducible DVC pipeline.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show tracebacks of errors")] = False
         ) -> None:
    """BERT-based text classifiers as a reproducible DVC pipeline."""
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


study_app = typer.Typer(help="Tuning studies through DVC experiments.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("run")
def study_run(
    study_file: Annotated[Path, typer.Argument(help="the study definition, e.g. studies/han_ablation.yaml")],
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="parallel queue workers")] = None,
) -> None:
    """Queue every variant as a DVC experiment, run the queue, then retrain the best on validation."""
    from bertclf.experiments.study import load_study, run_study

    failed = _user_errors(lambda: run_study(load_study(study_file), jobs, echo=typer.echo))
    if failed:
        raise typer.Exit(1)


@study_app.command("report")
def study_report(study_file: Annotated[Path, typer.Argument(help="the study definition")]) -> None:
    """Write reports/<study>/ (tables, plots, analysis) and metrics/study_<study>.json."""
    from bertclf.experiments.study import load_study
    from bertclf.experiments.study_report import write_report

    out = _user_errors(lambda: write_report(load_study(study_file)))
    typer.echo(f"wrote {out}/README.md")


@app.command()
def compare(
    dataset: Annotated[str | None, typer.Option(help="data.name (default: params.yaml's)")] = None,
) -> None:
    """Table and bar chart of test accuracy per model (tfidf, cnn, rnn, bigru, han, finetune)."""
    from bertclf.config import load_config
    from bertclf.experiments.compare import write_compare

    name = dataset or _user_errors(load_config).data.name
    out = _user_errors(lambda: write_compare(name))
    typer.echo(out.read_text())


MODEL_OPTION = typer.Option("--model", "-m", help="a trained model directory (or an exported one)")


@app.command()
def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="texts to classify")] = None,
    model: Annotated[Path, MODEL_OPTION] = Path("models/classifier"),
    input: Annotated[Path | None, typer.Option("--input", "-i", help="txt (one text per line), csv, tsv, "
                                                "jsonl or parquet with a text column")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="csv or jsonl: text, label, "
                                                 "probability per class")] = None,
    text_column: Annotated[str, typer.Option(help="the text column of --input")] = "text",
    interactive: Annotated[bool, typer.Option("--interactive", help="a prompt loop; Ctrl-D quits")] = False,
    top_k: Annotated[int, typer.Option(help="classes shown per text")] = 3,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    precision: Annotated[str, typer.Option(help="fp32 | bf16")] = "fp32",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
) -> None:
    """Classify new text with a trained model: arguments, a file, or an interactive prompt."""
    import sys

    from bertclf.serving.predict_io import (
        check_output,
        format_prediction,
        output_rows,
        predict_file,
        write_predictions,
    )
    from bertclf.serving.predict_io import interactive as loop
    from bertclf.serving.predictor import load

    if sum([bool(texts), input is not None, interactive]) != 1:
        typer.echo("error: give texts, --input FILE or --interactive (one of them)", err=True)
        raise typer.Exit(2)
    if output is not None:
        _user_errors(lambda: check_output(output))
    clf = _user_errors(lambda: load(model, device=device, precision=precision, batch_size=batch_size))
    if interactive:
        show = (lambda: typer.echo("> ", nl=False)) if sys.stdin.isatty() else None
        loop(clf, sys.stdin, typer.echo, top_k, show)
        return
    if input is not None:
        if output is None:
            typer.echo("error: --input needs --output (csv or jsonl)", err=True)
            raise typer.Exit(2)
        n = _user_errors(lambda: predict_file(clf, input, output, text_column))
        typer.echo(f"classified {n} texts from {input} into {output}", err=True)
        return
    probs = _user_errors(lambda: clf.predict_proba(texts or []))
    if output is not None:
        rows = output_rows(texts or [], probs, clf.labels)
        n = _user_errors(lambda: write_predictions(output, rows, clf.labels))
        typer.echo(f"wrote {n} predictions to {output}", err=True)
        return
    for text, row in zip(texts or [], probs, strict=True):
        typer.echo(format_prediction(text, row, clf.labels, top_k))


@app.command()
def bench(
    model: Annotated[Path, MODEL_OPTION] = Path("models/classifier"),
    data: Annotated[Path, typer.Option(help="a parquet of real texts (text column)")] = Path(
        "data/split/test.parquet"),
    batch_sizes: Annotated[str, typer.Option(help="comma-separated")] = "1,8,32,128",
    limit: Annotated[int, typer.Option(help="texts used (the first N)")] = 1000,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    precision: Annotated[str, typer.Option(help="fp32 | bf16")] = "fp32",
    threads: Annotated[int, typer.Option(help="torch threads; 0 = default")] = 0,
    out: Annotated[Path, typer.Option(help="writes OUT.json and OUT.md")] = Path("reports/bench"),
) -> None:
    """Inference throughput (samples/s) and latency (p50/p95) per batch size, on real texts."""
    from bertclf.serving.bench import markdown, read_bench_texts, run_bench, write_bench
    from bertclf.serving.predictor import load

    sizes = _user_errors(lambda: _int_list(batch_sizes, "--batch-sizes"))
    texts = _user_errors(lambda: read_bench_texts(data, limit))
    clf = _user_errors(lambda: load(model, device=device, precision=precision, threads=threads))
    report = _user_errors(lambda: run_bench(clf, texts, sizes))
    report["data"] = str(data)
    json_path, md_path = write_bench(report, out)
    typer.echo(markdown(report))
    typer.echo(f"wrote {json_path} and {md_path}", err=True)


@app.command()
def export(
    model: Annotated[Path, MODEL_OPTION] = Path("models/classifier"),
    format: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic quantization of the weights")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: MODEL-onnx[-int8]")] = None,
    data: Annotated[Path, typer.Option(help="split parquet for the parity check")] = Path(
        "data/split/test.parquet"),
    limit: Annotated[int | None, typer.Option(help="check parity on the first N texts only")] = None,
) -> None:
    """Export to ONNX (dynamic batch and length), optionally int8; check parity with PyTorch."""
    from bertclf.serving.export import check_parity, describe, export_onnx

    if format != "onnx":
        typer.echo(f"error: --format {format!r} is not supported; use onnx", err=True)
        raise typer.Exit(2)
    target = output or model.with_name(model.name + "-onnx" + (f"-{quantize}" if quantize else ""))
    _user_errors(lambda: export_onnx(model, target, quantize))
    typer.echo(f"exported {model} to {target}")
    report = _user_errors(lambda: check_parity(model, target, data, limit))
    typer.echo(describe(report))


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BertclfError(f"{option} takes comma-separated integers, not {text!r}") from None


def _user_errors(fn: Callable[[], T]) -> T:
    """Run `fn`; an error the user can act on becomes one line on stderr and exit status 1, not a
    traceback (`-v` or `BERTCLF_DEBUG=1` shows it)."""
    try:
        return fn()
    except Exception as exc:
        message = None if debugging() else explain(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None
