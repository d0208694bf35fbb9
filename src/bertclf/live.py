"""dvclive (iterative's logger for DVC) laid out the way this pipeline declares its outputs.

The summary a stage logs is its metrics file (``metrics/<stage>.json``, what `dvc exp show`
compares; rewritten at every epoch, so a running experiment shows live values); the series and
plots go under ``plots/<stage>/`` (``metrics/<name>.tsv``, ``sklearn/``, ``custom/``), which
dvc.yaml's top-level ``plots`` draw. dvclive never writes dvc.yaml or makes experiments here:
dvc.yaml declares every output, and `dvc exp run` makes the experiment.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from dvclive import Live

from bertclf.atomic import write_json

logging.getLogger("dvclive").setLevel(logging.WARNING)


class StageLive(Live):
    """A `dvclive.Live` whose summary is `metrics_file` and whose plot data is under `plots_dir`.

    Creating one removes the series and summary of an earlier run.
    """

    def __init__(self, metrics_file: str | Path, plots_dir: str | Path):
        self._metrics_path = os.fspath(metrics_file)
        self._plots_path = os.fspath(plots_dir)
        super().__init__(dir=self._plots_path, save_dvc_exp=False, dvcyaml=False, report=None)

    @property
    def metrics_file(self) -> str:
        return self._metrics_path

    @property
    def plots_dir(self) -> str:
        return self._plots_path

    def _init_dvc(self) -> None:
        # Outside `dvc repro` / `dvc exp run` there is no experiment to join, and dvclive would
        # open (or even initialise) a DVC repository in the working directory.
        if os.environ.get("DVC_ROOT"):
            super()._init_dvc()

    def make_summary(self) -> None:
        """Write the scores (atomically), without dvclive's step counter."""
        write_json(self.metrics_file, self.scores())

    def scores(self) -> dict[str, Any]:
        return {k: v for k, v in self.summary.items() if k != "step"}
