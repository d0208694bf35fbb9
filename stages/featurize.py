"""Stage `featurize`: token ids -> frozen encoder token vectors (float16, memory-mapped).

    python stages/featurize.py data/tokens models/encoder data/features metrics/featurize.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.features import FeaturizeConfig, featurize
from bertclf.models import FEATURE_ARCHS
from bertclf.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokens", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    params = load_params(args.params)
    cfg = FeaturizeConfig.from_params(section(params, "featurize"))
    needed = section(params, "train").get("arch", "han") in FEATURE_ARCHS
    report = featurize(args.tokens, args.encoder, args.out, args.metrics, cfg,
                       encoder_name=section(params, "encoder")["name"], needed=needed)
    if needed:
        logging.info("featurized %d docs: %.0f tokens/s, %.1f MB", report["docs"], report["tokens_per_s"],
                     report["bytes"] / 1e6)
    else:
        logging.info("train.arch reads token ids: no features computed")


if __name__ == "__main__":
    run_stage(main)
