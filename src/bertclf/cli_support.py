"""Shared start-up for stage scripts and the CLI: logging, and user errors without tracebacks."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bertclf.errors import debugging, explain


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("BERTCLF_LOG", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """The one error boundary of stages and commands: an error the user can act on (bad input or
    params, a full or read-only disk, …) becomes one line, ``error: <message>`` on stderr, and exit
    status 1; anything else (a bug), or any error under `BERTCLF_DEBUG=1` (`bertclf -v`), goes on
    with its traceback."""
    try:
        yield
    except Exception as exc:
        message = None if debugging() else explain(exc)
        if message is None:
            raise  # a bug, or BERTCLF_DEBUG=1: the traceback
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


def run_stage(main: Callable[[], None], offline: bool = True) -> None:
    """Run a stage's `main` inside `user_errors`.

    Stages after `download` read only local files: `offline` keeps transformers and the hub
    from reaching for the network.
    """
    setup_logging()
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    with user_errors():
        main()
