"""Stage `download`: fetch the dataset (`data`) or the encoder (`encoder`) into the pipeline.

    python stages/download.py data data/raw
    python stages/download.py encoder models/encoder

The mirror (BERTCLF_MIRROR) is tried first, then each artifact's own sources.
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.datasets import download_dataset
from bertclf.encoders import download_encoder
from bertclf.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", choices=["data", "encoder"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    params = load_params(args.params)
    if args.artifact == "data":
        manifest = download_dataset(section(params, "data"), args.out)
        logging.info("dataset %s: %s", manifest["dataset"], ", ".join(manifest["files"]))
    else:
        download_encoder(section(params, "encoder")["name"], args.out)
        logging.info("encoder %s -> %s", params["encoder"]["name"], args.out)


if __name__ == "__main__":
    run_stage(main, offline=False)
