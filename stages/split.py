"""Stage `split`: raw files -> train/val/test parquet (id, text, label) + labels.json.

    python -m stages.split data/raw data/split reports/pipeline/split.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.data.datasets import load_raw
from bertclf.data.splitting import make_splits, write_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("report", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    config = load_config(args.params)
    splits = make_splits(load_raw(args.raw, config.data), config.split)
    write_splits(splits, args.out, args.report)
    logging.info("rows: %s", {k: v["rows"] for k, v in splits.report["splits"].items()})


if __name__ == "__main__":
    run_stage(main)
