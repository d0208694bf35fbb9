"""The `bertclf` command line. Pipeline stages run through `dvc repro`; this is for users."""

from __future__ import annotations

import typer

from bertclf import __version__
from bertclf.datasets import RECIPES

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
