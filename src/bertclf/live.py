"""dvclive (iterative's logger for DVC) laid out the way this pipeline declares its outputs.

The summary a stage logs is its metrics file (``metrics/<stage>.json``, what `dvc exp show`
compares; rewritten at every epoch, so a running experiment shows live values); the series and
plots go under ``plots/<stage>/`` (``metrics/<name>.tsv``, ``sklearn/``, ``custom/``), which
dvc.yaml's top-level ``plots`` draw. dvclive never writes dvc.yaml or makes experiments here:
dvc.yaml declares every output, and `dvc exp run` makes the experiment.

dvclive (and DVC under it) is imported only when a stage opens its logger (`open_live`), so
training and evaluation import where it is not installed (a bare GPU image); there they write the
metrics file alone and say so once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from bertclf.atomic import write_json

log = logging.getLogger(__name__)
logging.getLogger("dvclive").setLevel(logging.WARNING)


def open_live(metrics_file: str | Path, plots_dir: str | Path) -> StageLogger:
    """A `StageLive` (a `dvclive.Live`) whose summary is `metrics_file` and whose plot data is under
    `plots_dir`, or, without dvclive, a `SummaryOnly` writing the summary. Either removes the series
    and summary of an earlier run."""
    try:
        from dvclive import Live
    except ImportError:
        log.warning("dvclive is not installed: %s is written, the series and plots under %s are not "
                    "(pip install dvclive for them)", metrics_file, plots_dir)
        return SummaryOnly(metrics_file)
    return _stage_live(Live)(metrics_file, plots_dir)


def _stage_live(live: type) -> type:
    class StageLive(live):  # type: ignore[misc, valid-type]
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

    return StageLive


class SummaryOnly:
    """What a stage logs, where dvclive is missing: the summary (nested as dvclive nests
    ``val/acc``) to the metrics file; series and plots are dropped."""

    def __init__(self, metrics_file: str | Path):
        self.metrics_file = os.fspath(metrics_file)
        self.summary: dict[str, Any] = {}
        self.step = 0
        Path(self.metrics_file).unlink(missing_ok=True)

    def log_metric(self, name: str, value: Any, plot: bool = True) -> None:
        *parents, leaf = name.split("/")
        node = self.summary
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    def log_plot(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_sklearn_plot(self, *args: Any, **kwargs: Any) -> None:
        pass

    def make_summary(self) -> None:
        write_json(self.metrics_file, self.summary)

    def end(self) -> None:
        self.make_summary()


class StageLogger(Protocol):
    """What a stage uses of its logger: `open_live`'s answer, with dvclive or without."""

    summary: dict[str, Any]
    step: int

    def log_metric(self, name: str, value: Any, plot: bool = True) -> None: ...
    def log_plot(self, *args: Any, **kwargs: Any) -> None: ...
    def log_sklearn_plot(self, *args: Any, **kwargs: Any) -> None: ...
    def make_summary(self) -> None: ...
    def end(self) -> None: ...
