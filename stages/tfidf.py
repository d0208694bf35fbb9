"""Stage `tfidf`: the classic floor, TF-IDF + logistic regression on the same split.

    python -m stages.tfidf data/split metrics/tfidf.json data/tfidf
"""

import argparse
import logging
from pathlib import Path

from bertclf.atomic import write_json
from bertclf.baseline import tfidf_baseline
from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.tasks import headline_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("probabilities", type=Path, help="its val/test class probabilities, for `combine`")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    scores = tfidf_baseline(args.splits, load_config(args.params).tfidf, args.probabilities)
    write_json(args.metrics, scores)
    tfidf = scores["tfidf"]
    key = headline_in(tfidf, "val_")  # the task's headline score
    logging.info("TF-IDF + logistic regression: val %s %.4f, test %.4f", key, tfidf[f"val_{key}"],
                 tfidf[f"test_{key}"])


if __name__ == "__main__":
    run_stage(main)
