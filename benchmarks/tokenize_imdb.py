"""Tokenize throughput on all 50,000 IMDB reviews: bertclf's DocumentTokenizer vs plain Hugging Face.

bertclf: `DocumentTokenizer` at the `tokenize` params of params.yaml (head truncation to 256
tokens by default), which also cuts sentences (`<br />`, blank lines, . ! ?) and records sentence
spans for the hierarchical models. Plain Hugging Face: `tokenizer(texts, truncation=True,
max_length=...)` in batches of the same size, no sentence spans. Both use the real default
encoder's fast tokenizer (models/encoder, put there by `dvc repro`). The difference in time is
the cost of the sentence spans; the ids of reviews without `<br />` tags must be identical.

    python -m benchmarks.tokenize_imdb [--mirror ../shared/data] [--encoder models/encoder] \\
        [--out benchmarks/results/tokenize_imdb.json]
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # as the pipeline's stages set it
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # the environment above is set before anything imports tokenizers
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.benchlib import finish, interleaved

REPO = Path(__file__).resolve().parents[1]


def load_imdb(mirror: Path) -> tuple[list[str], float]:
    """All 50k labelled reviews (train then test), read by the pipeline's own imdb recipe."""
    from bertclf.config import DataConfig
    from bertclf.data.datasets import RECIPES
    from bertclf.data.resolve import locate
    from bertclf.errors import BertclfError

    made = RECIPES["imdb"]
    t0 = time.perf_counter()
    try:
        archive = locate(made.files["archive"], mirror)
        raw = made.load(archive.parent, {"archive": archive}, DataConfig(name="imdb"))
    except BertclfError as exc:
        sys.exit(f"cannot read IMDB from the mirror {mirror}: {exc}")
    assert raw.test is not None
    texts = raw.train["text"].tolist() + raw.test["text"].tolist()
    return texts, time.perf_counter() - t0


def tokenize_config() -> Any:
    from bertclf.config import load_config

    return load_config(REPO / "params.yaml").tokenize


def run_bertclf(doc_tok: Any, texts: list[str], batch_size: int) -> tuple[float, list[Any], int, int]:
    t0 = time.perf_counter()
    ids: list[Any] = []
    spans = 0
    full = 0
    for start in range(0, len(texts), batch_size):
        enc = doc_tok.encode(texts[start:start + batch_size])
        ids += enc["input_ids"]
        spans += sum(len(s) for s in enc["sentence_lengths"])
        full += sum(enc["full_tokens"])
    return time.perf_counter() - t0, ids, spans, full


def run_hf(tokenizer: Any, texts: list[str], batch_size: int, max_length: int) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    ids: list[Any] = []
    for start in range(0, len(texts), batch_size):
        ids += tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length)["input_ids"]
    return time.perf_counter() - t0, ids


def rates(seconds: float, docs: int, tokens: int) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "docs_per_s": round(docs / seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_mirror = os.environ.get("BERTCLF_MIRROR") or str(REPO.parent / "shared" / "data")
    parser.add_argument("--mirror", type=Path, default=Path(default_mirror))
    parser.add_argument("--encoder", type=Path, default=REPO / "models" / "encoder")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved timed passes of each method; the median is reported")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tokenize_imdb.json")
    args = parser.parse_args()

    if not (args.encoder / "config.json").is_file() or not (args.encoder / "tokenizer.json").is_file():
        sys.exit(f"{args.encoder} is missing or has no tokenizer.json: run `dvc repro download@encoder` "
                 "(or `make repro`) first, or pass --encoder DIR")
    if not (args.mirror / "imdb").is_dir():
        sys.exit(f"no imdb/ in the dataset mirror {args.mirror}: set BERTCLF_MIRROR or pass --mirror DIR")

    import tokenizers
    import transformers

    from bertclf.data.tokenization import DocumentTokenizer, load_tokenizer

    load_before = os.getloadavg()
    texts, load_s = load_imdb(args.mirror)
    cfg = tokenize_config()
    tokenizer = load_tokenizer(args.encoder)
    doc_tok = DocumentTokenizer(tokenizer, cfg)
    print(f"{len(texts)} reviews read in {load_s:.1f} s; config {cfg}", flush=True)

    # warm-up (thread pool, caches), untimed
    run_bertclf(doc_tok, texts[:2000], cfg.batch_size)
    run_hf(tokenizer, texts[:2000], cfg.batch_size, cfg.max_length)

    out: dict[str, Any] = {}

    def keep(name: str, run: tuple[Any, ...]) -> float:
        """The seconds a run measured itself; its results kept (the last run's replaced outside them)."""
        out[name] = run[1:]
        return run[0]

    methods = {
        "bertclf_document_tokenizer": lambda: keep("ours", run_bertclf(doc_tok, texts, cfg.batch_size)),
        "hf_plain": lambda: keep("hf", run_hf(tokenizer, texts, cfg.batch_size, cfg.max_length)),
    }
    timings = interleaved(methods, max(args.repeats, 1), warmup=False, self_timed=True,
                          on_run=lambda name, s: print(f"pass: {name} {s:.2f} s", flush=True))
    ours, hf = timings["bertclf_document_tokenizer"], timings["hf_plain"]
    ours_best, hf_best = ours["median_s"], hf["median_s"]
    (ours_ids, spans, full_tokens), (hf_ids,) = out["ours"], out["hf"]

    docs = len(texts)
    ours_tokens = int(sum(len(x) for x in ours_ids))
    hf_tokens = int(sum(len(x) for x in hf_ids))
    no_br = [i for i, t in enumerate(texts) if "<br" not in t.lower()]
    same = sum(ours_ids[i].tolist() == hf_ids[i] for i in no_br)

    result = {
        "benchmark": "tokenize all IMDB reviews (train + test)",
        "docs": docs,
        "config": {"max_length": cfg.max_length, "truncation": cfg.truncation, "head_tokens": cfg.head_tokens,
                   "max_sentences": cfg.max_sentences, "max_sentence_tokens": cfg.max_sentence_tokens,
                   "batch_size": cfg.batch_size},
        "encoder": str(args.encoder),
        "bertclf_document_tokenizer": {**rates(ours_best, docs, ours_tokens), "tokens": ours_tokens,
                                       "seconds_per_pass": ours["runs_s"],
                                       "full_tokens_before_truncation": int(full_tokens),
                                       "sentence_spans": int(spans),
                                       "mean_spans_per_doc": round(spans / docs, 2)},
        "hf_plain": {**rates(hf_best, docs, hf_tokens), "tokens": hf_tokens,
                     "seconds_per_pass": hf["runs_s"],
                     "call": f"tokenizer(texts, truncation=True, max_length={cfg.max_length}) "
                             f"in batches of {cfg.batch_size}"},
        "overhead_vs_hf": round(ours_best / hf_best, 2),
        "identical_ids_on_reviews_without_br": {"reviews": len(no_br), "identical": int(same)},
        "timing": f"median of {max(args.repeats, 1)} interleaved passes after a 2,000-review warm-up; "
                  f"reading the archive ({load_s:.1f} s) not counted",
    }
    finish(result, args.out, load_before,
           facts={"platform": platform.platform(), "tokenizers": tokenizers.__version__,
                  "transformers": transformers.__version__,
                  "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM")})
    print(f"\nbertclf DocumentTokenizer: {result['bertclf_document_tokenizer']['docs_per_s']:,.0f} docs/s, "
          f"{result['bertclf_document_tokenizer']['tokens_per_s']:,.0f} tokens/s, {ours_best:.2f} s wall")
    print(f"plain Hugging Face:        {result['hf_plain']['docs_per_s']:,.0f} docs/s, "
          f"{result['hf_plain']['tokens_per_s']:,.0f} tokens/s, {hf_best:.2f} s wall")
    print(f"sentence-span overhead: x{result['overhead_vs_hf']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
