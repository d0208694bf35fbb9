"""Stage `pretrain`: in-domain masked-LM further pre-training of the encoder (pretrain.steps: 0 skips).

    python -m stages.pretrain data/tokens models/encoder models/pretrained metrics/pretrain.json \
        reports/pipeline/pretrain.json
"""

import argparse
import logging
from pathlib import Path

from bertclf.atomic import write_json
from bertclf.cli_support import run_stage
from bertclf.config import load_config
from bertclf.distributed import is_main_process, launch
from bertclf.pretrain import pretrain
from bertclf.runlog import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokens", type=Path)
    parser.add_argument("encoder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("report", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--runlog-dir", type=Path, default=Path("logs"),
                        help="where the run log (timings, machine) goes; untracked")
    args = parser.parse_args()

    config = load_config(args.params)
    if config.pretrain.steps and (code := launch(config.runtime.processes, __spec__.name)) is not None:
        raise SystemExit(code)  # runtime.processes > 1: the same stage, under torchrun
    report = pretrain(args.tokens, args.encoder, args.out, config.pretrain, device=config.runtime.device)
    if not is_main_process():
        return
    scores = {k: report[k] for k in ("mlm_loss_before", "mlm_loss_after") if k in report}
    write_json(args.metrics, scores)
    write_report(report, args.report, "pretrain", args.runlog_dir)
    if not report["skipped"]:
        logging.info("MLM loss on held-out train texts: %.4f -> %.4f", report["mlm_loss_before"],
                     report["mlm_loss_after"])


if __name__ == "__main__":
    run_stage(main)
