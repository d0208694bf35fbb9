"""Stage `pretrain`: in-domain masked-LM further pre-training of the encoder (pretrain.steps: 0 skips).

    python stages/pretrain.py data/tokens models/encoder models/pretrained metrics/pretrain.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.params import load_params, section
from bertclf.pretrain import PretrainConfig, pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokens", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    cfg = PretrainConfig.from_params(section(load_params(args.params), "pretrain"))
    report = pretrain(args.tokens, args.encoder, args.out, args.metrics, cfg)
    if not report["skipped"]:
        logging.info("MLM loss on held-out train texts: %.4f -> %.4f", report["mlm_loss_before"],
                     report["mlm_loss_after"])


if __name__ == "__main__":
    run_stage(main)
