"""Stage `download`: fetch the dataset (`data`) or the encoder (`encoder`) into the pipeline.

    python -m stages.download data data/raw --inputs inputs/data
    python -m stages.download encoder models/encoder --inputs inputs/encoders

The mirror (BERTCLF_MIRROR) is tried first, then each artifact's own sources. Your own files
(data.path, data.test_path, a local encoder directory) must lie under --inputs, the directory
dvc.yaml declares as this stage's dependency, so that editing one re-runs the stage.
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.data.datasets import download_dataset, user_files
from bertclf.data.encoder_source import download_encoder, local_encoder
from bertclf.data.tracked import check_tracked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", choices=["data", "encoder"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--inputs", type=Path, required=True, help="the tracked directory of your own files")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    config = load_config(args.params)
    if args.artifact == "data":
        for key, value in user_files(config.data).items():
            check_tracked(value, key, args.inputs)
        manifest = download_dataset(config.data, args.out)
        logging.info("dataset %s: %s", manifest["dataset"], ", ".join(manifest["files"]))
    else:
        if local_encoder(config.encoder.name, args.inputs):
            check_tracked(config.encoder.name, "encoder.name", args.inputs)
        download_encoder(config.encoder.name, args.out, revision=config.encoder.revision)
        logging.info("encoder %s -> %s", config.encoder.name, args.out)


if __name__ == "__main__":
    run_stage(main, offline=False)
