"""Stage `evaluate`: the saved best model on validation and test.

    python -m stages.evaluate models/classifier data/features data/tokens models/pretrained \
        metrics/eval.json plots/eval data/predictions reports/pipeline/eval.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.data.stores import Inputs
from bertclf.distributed import is_main_process, launch
from bertclf.evaluation import evaluate
from bertclf.runlog import write_report
from bertclf.tasks import headline_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("model", "features", "tokens", "encoder", "metrics", "plots", "predictions", "report"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--runlog-dir", type=Path, default=Path("logs"),
                        help="where the run log (timings, machine) goes; untracked")
    args = parser.parse_args()

    runtime = load_config(args.params).runtime
    if (code := launch(runtime.processes, __spec__.name)) is not None:
        raise SystemExit(code)  # runtime.processes > 1: the same stage, under torchrun
    report = evaluate(args.model, Inputs(args.features, args.tokens, args.encoder), args.metrics,
                      args.plots, args.predictions, batch_size=runtime.eval_batch_size,
                      device=runtime.device)
    if not is_main_process():
        return
    write_report(report, args.report, "eval", args.runlog_dir)
    key = headline_in(report, "val_")  # the task's headline score
    logging.info("val %s %.4f, test %s %.4f", key, report[f"val_{key}"], key, report[f"test_{key}"])


if __name__ == "__main__":
    run_stage(main)
