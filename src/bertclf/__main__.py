"""`python -m bertclf`: the command line."""

from bertclf.cli import app

app(prog_name="bertclf")
