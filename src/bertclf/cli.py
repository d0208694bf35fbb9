"""The `bertclf` command line. Pipeline stages run through `dvc repro`; this is for users."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from bertclf import __version__
from bertclf.datasets import RECIPES
from bertclf.errors import BertclfError

T = TypeVar("T")

app = typer.Typer(help="BERT-based text classifiers as a reproducible DVC pipeline.",
                  no_args_is_help=True, add_completion=False)


@app.command()
def datasets() -> None:
    """List the named datasets and where they come from."""
    for name, made in RECIPES.items():
        typer.echo(f"{name:16} {made.description}")
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
    from bertclf.study import load_study, run_study

    failed = _user_errors(lambda: run_study(load_study(study_file), jobs, echo=typer.echo))
    if failed:
        raise typer.Exit(1)


@study_app.command("report")
def study_report(study_file: Annotated[Path, typer.Argument(help="the study definition")]) -> None:
    """Write reports/<study>/ (tables, plots, analysis) and metrics/study_<study>.json."""
    from bertclf.study import load_study
    from bertclf.study_report import write_report

    out = _user_errors(lambda: write_report(load_study(study_file)))
    typer.echo(f"wrote {out}/README.md")


@app.command()
def compare(
    dataset: Annotated[str | None, typer.Option(help="data.name (default: params.yaml's)")] = None,
) -> None:
    """Table and bar chart of test accuracy per model (tfidf, cnn, rnn, bigru, han, finetune)."""
    from bertclf.compare import write_compare
    from bertclf.params import load_params

    name = dataset or load_params()["data"]["name"]
    out = _user_errors(lambda: write_compare(name))
    typer.echo(out.read_text())


def _user_errors(fn: Callable[[], T]) -> T:
    """Run `fn`; a user error becomes one line on stderr and exit status 1, not a traceback."""
    try:
        return fn()
    except BertclfError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
