"""Stage `train`: a classifier (han | bigru | finetune | cnn | rnn), a checkpoint per epoch, loss curves.

    python -m stages.train data/features data/tokens models/pretrained models/classifier \
        models/checkpoints metrics/train.json plots/train reports/pipeline/train.json

A run that was interrupted resumes from its last checkpoint in models/checkpoints, if that
checkpoint belongs to the same run (config, input contents and code).
"""

import argparse
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.data.stores import Inputs
from bertclf.distributed import is_main_process, launch
from bertclf.runlog import write_report
from bertclf.training.loop import TrainOutputs, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("features", "tokens", "encoder", "model", "checkpoints", "metrics", "plots", "report"):
        parser.add_argument(name, type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--runlog-dir", type=Path, default=Path("logs"),
                        help="where the run log (timings, machine) goes; untracked")
    args = parser.parse_args()

    config = load_config(args.params)
    if (code := launch(config.runtime.processes, __spec__.name)) is not None:
        raise SystemExit(code)  # runtime.processes > 1: the same stage, under torchrun
    report = train(config, Inputs(args.features, args.tokens, args.encoder),
                   TrainOutputs(args.model, args.checkpoints, args.metrics, args.plots))
    if is_main_process():
        write_report(report, args.report, "train", args.runlog_dir)


if __name__ == "__main__":
    run_stage(main)
