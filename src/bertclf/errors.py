"""Errors a user can act on: each names the file, the line or row, and what was wrong."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class BertclfError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class DataError(BertclfError):
    """Bad input data. The message names the file and, where known, the line or row."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.detail = message
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}, line {line}"
            where += ": "
        super().__init__(where + message)


class ConfigError(BertclfError):
    """A parameter in params.yaml (or on the command line) is missing or invalid."""


class ArtifactNotFound(BertclfError):
    """No source of an artifact could be used; the message lists every place tried."""


# What an error of the environment (not of bertclf) means for the user, by errno.
_OS_ERRORS = {
    errno.ENOSPC: "no space left on the device: free some space (or write elsewhere) and run again",
    errno.EDQUOT: "the disk quota is exhausted: free some space and run again",
    errno.EROFS: "the file system is read-only: run where outputs can be written",
    errno.EACCES: "permission denied: check the owner and mode of the file or its directory",
    errno.EPERM: "operation not permitted: check the owner and mode of the file or its directory",
}

DEBUG_ENV = "BERTCLF_DEBUG"


def debugging() -> bool:
    """`BERTCLF_DEBUG=1` (or the command line's -v): show tracebacks instead of one line."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def explain(exc: BaseException) -> str | None:
    """One line saying what went wrong and what to do, for the errors a user can act on; None for
    anything else (a bug, whose traceback should be seen)."""
    if isinstance(exc, BertclfError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _OS_ERRORS:
        where = f"{exc.filename}: " if exc.filename else ""
        return where + _OS_ERRORS[exc.errno]
    return None
