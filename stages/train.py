"""Stage `train`: a classifier (han | bigru | finetune | cnn | rnn), a checkpoint per epoch, loss curves.

    python stages/train.py data/features data/tokens models/encoder \
        models/classifier models/checkpoints metrics/train.json plots

A run that was interrupted resumes from its last checkpoint in models/checkpoints.
"""

import argparse
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.model_inputs import Inputs
from bertclf.params import load_params, section
from bertclf.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", type=Path)
    parser.add_argument("tokens", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("checkpoints", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("plots", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    cfg = TrainConfig.from_params(section(load_params(args.params), "train"))
    inputs = Inputs(args.features, args.tokens, args.encoder)
    train(cfg, inputs, args.model, args.checkpoints, args.metrics, args.plots)


if __name__ == "__main__":
    run_stage(main)
