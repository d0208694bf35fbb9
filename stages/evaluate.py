"""Stage `evaluate`: the saved best model on validation and test, beside TF-IDF + logistic regression.

    python stages/evaluate.py models/classifier data/features data/tokens models/encoder data/split \
        metrics/eval.json plots
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.evaluation import evaluate
from bertclf.model_inputs import Inputs
from bertclf.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("features", type=Path)
    parser.add_argument("tokens", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("splits", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("plots", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    p = section(load_params(args.params), "evaluate")
    inputs = Inputs(args.features, args.tokens, args.encoder)
    report = evaluate(args.model, inputs, args.splits, args.metrics, args.plots,
                      batch_size=int(p.get("batch_size", 256)))
    logging.info("test accuracy %.4f (TF-IDF + logistic regression %.4f)", report["test_acc"],
                 report["tfidf_logreg"]["test_acc"])


if __name__ == "__main__":
    run_stage(main)
