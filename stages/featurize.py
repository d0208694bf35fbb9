"""Stage `featurize`: token ids -> frozen encoder token vectors (float16, memory-mapped).

    python -m stages.featurize data/tokens models/pretrained data/features reports/pipeline/featurize.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.distributed import is_main_process, launch
from bertclf.features import featurize
from bertclf.models import get
from bertclf.runlog import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokens", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("report", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--runlog-dir", type=Path, default=Path("logs"),
                        help="where the run log (timings, machine) goes; untracked")
    args = parser.parse_args()

    config = load_config(args.params)
    needed = get(config.train.arch).reads == "features"
    if needed and (code := launch(config.runtime.processes, __spec__.name)) is not None:
        raise SystemExit(code)  # runtime.processes > 1: the same stage, under torchrun
    report = featurize(args.tokens, args.encoder, args.out, config.featurize,
                       encoder_name=config.encoder.name, needed=needed, threads=config.runtime.threads,
                       device=config.runtime.device)
    if not is_main_process():
        return
    write_report(report, args.report, "featurize", args.runlog_dir)
    if needed:
        logging.info("featurized %d docs: %.0f tokens/s, %.1f MB", report["docs"], report["tokens_per_s"],
                     report["bytes"] / 1e6)
    else:
        logging.info("train.arch reads token ids: no features computed")


if __name__ == "__main__":
    run_stage(main)
