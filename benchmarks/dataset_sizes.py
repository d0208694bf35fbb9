"""What each dataset costs on disk: documents and tokens after `split` and `tokenize` at the
defaults, and the size of `featurize`'s float16 token vectors for the default encoder (384 values
per token, 768 bytes) and for a BERT-base-sized one (768 values, 1,536 bytes per token).

    BERTCLF_MIRROR=../shared/data python -m benchmarks.dataset_sizes \
        --out benchmarks/results/dataset_sizes.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.benchlib import finish
from bertclf.config import Config
from bertclf.data.datasets import download_dataset, load_raw
from bertclf.data.splitting import make_splits, write_splits
from bertclf.data.tokenization import tokenize_splits

DATASETS = ("rotten_tomatoes", "webkb", "r8", "r52", "imdb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", type=Path, default=Path("models/encoder"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    config = Config()
    rows = {}
    for name in DATASETS:
        data = config.replace({"data.name": name})
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            download_dataset(data.data, root / "raw")
            write_splits(make_splits(load_raw(root / "raw", data.data), data.split), root / "split",
                         root / "split.json")
            report = tokenize_splits(root / "split", args.encoder, root / "tokens", data.tokenize)
            seconds = time.perf_counter() - t0
        raw_bytes = sum(f.stat().st_size for f in Path(os.environ["BERTCLF_MIRROR"], name).glob("*")
                        if f.is_file()) if name != "rotten_tomatoes" else None
        rows[name] = {"docs": report["docs"], "tokens": report["tokens"],
                      "features_mb_384": round(report["tokens"] * 384 * 2 / 1e6, 1),
                      "features_mb_768": round(report["tokens"] * 768 * 2 / 1e6, 1),
                      "mirror_mb": round(raw_bytes / 1e6, 1) if raw_bytes else None,
                      "split_and_tokenize_s": round(seconds, 1)}
        print(name, rows[name], flush=True)
    finish({"benchmark": "dataset_sizes", "tokenize": vars(config.tokenize), "datasets": rows}, args.out,
           load_before)


if __name__ == "__main__":
    main()
