"""Shared start-up for stage scripts and the CLI: logging, and user errors without tracebacks."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from bertclf.errors import BertclfError


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("BERTCLF_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def run_stage(main: Callable[[], None], offline: bool = True) -> None:
    """Run a stage's `main`; a user error prints one clear message and exits with status 1.

    Stages after `download` read only local files: `offline` keeps transformers and the hub
    from reaching for the network.
    """
    setup_logging()
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        main()
    except BertclfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
