"""Stage `tokenize`: split parquet -> token ids + sentence spans, one parquet per split.

    python -m stages.tokenize data/split models/encoder data/tokens reports/pipeline/tokenize.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.data.tokenization import tokenize_splits
from bertclf.runlog import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("report", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--runlog-dir", type=Path, default=Path("logs"),
                        help="where the run log (timings, machine) goes; untracked")
    args = parser.parse_args()

    config = load_config(args.params)
    report = tokenize_splits(args.splits, args.encoder, args.out, config.tokenize)
    write_report(report, args.report, "tokenize", args.runlog_dir)
    logging.info("tokenized %d docs at %.0f docs/s", report["docs"], report["docs_per_s"])


if __name__ == "__main__":
    run_stage(main)
