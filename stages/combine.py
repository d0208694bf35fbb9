"""Stage `combine`: the model's class probabilities interpolated with TF-IDF's, λ picked on validation.

    python -m stages.combine data/predictions data/tfidf metrics/combine.json plots/combine/lambda.json \
        reports/pipeline/combine.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.atomic import write_json
from bertclf.cli_support import run_stage
from bertclf.combine import combine, headline
from bertclf.tasks import headline_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("tfidf", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("curve", type=Path, help="validation accuracy and log-loss at every lambda")
    parser.add_argument("report", type=Path, help="accuracy and macro-F1 of the mix and of each part alone")
    args = parser.parse_args()

    result, curve = combine(args.predictions, args.tfidf)
    write_json(args.curve, curve)
    write_json(args.report, result)
    write_json(args.metrics, headline(result))
    key = headline_in(result["val"])  # the task's headline score
    val, test = result["val"], result["test"]
    logging.info("model + TF-IDF, lambda %.2f: val %s %.4f (model %.4f, TF-IDF %.4f), test %.4f "
                 "(model %.4f, TF-IDF %.4f)", result["lambda"], key, val[key], val[f"model_{key}"],
                 val[f"tfidf_{key}"], test[key], test[f"model_{key}"], test[f"tfidf_{key}"])


if __name__ == "__main__":
    run_stage(main)
