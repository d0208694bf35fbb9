"""Shared start-up for stage scripts and the CLI: logging, and user errors without tracebacks."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from bertclf.errors import debugging, explain


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("BERTCLF_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def run_stage(main: Callable[[], None], offline: bool = True) -> None:
    """Run a stage's `main`; an error the user can act on (bad input or params, a full or read-only
    disk, …) prints one line and exits with status 1; `BERTCLF_DEBUG=1` shows the traceback.

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
    except Exception as exc:
        message = None if debugging() else explain(exc)
        if message is None:
            raise  # a bug, or BERTCLF_DEBUG=1: the traceback
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
