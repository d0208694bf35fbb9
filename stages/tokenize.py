"""Stage `tokenize`: split parquet -> token ids + sentence spans, one parquet per split.

    python stages/tokenize.py data/split models/encoder data/tokens metrics/tokenize.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.params import load_params, section
from bertclf.tokenization import TokenizeConfig, tokenize_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("splits", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    cfg = TokenizeConfig.from_params(section(load_params(args.params), "tokenize"))
    report = tokenize_splits(args.splits, args.encoder, args.out, args.metrics, cfg)
    logging.info("tokenized %d docs at %.0f docs/s", report["docs"], report["docs_per_s"])


if __name__ == "__main__":
    run_stage(main)
