"""Errors a user can act on: each names the file, the line or row, and what was wrong."""

from __future__ import annotations

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
