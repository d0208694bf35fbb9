"""Progress of long work, with an ETA: a tqdm bar on a terminal, a periodic one-line log elsewhere.

DVC stage logs, CI and files are not terminals: a bar there would be carriage-return noise, so
the same progress is logged as one line every ``BERTCLF_PROGRESS_SECONDS`` (default 30)::

    12:01:30 INFO bertclf.progress: featurize: 4,096/12,753 docs (32%), 81 docs/s, 1m47s left

``BERTCLF_PROGRESS=bar|log|off`` forces a mode. Work that ends within the interval logs nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

MODE_ENV = "BERTCLF_PROGRESS"
SECONDS_ENV = "BERTCLF_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0

log = logging.getLogger(__name__)
T = TypeVar("T")


def _mode() -> str:
    mode = os.environ.get(MODE_ENV, "").strip().lower()
    if mode in ("bar", "log", "off"):
        return mode
    return "bar" if sys.stderr.isatty() else "log"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get(SECONDS_ENV, DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _amount(n: float, unit: str) -> str:
    if unit == "B":
        for size, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if n >= size:
                return f"{n / size:.1f} {name}"
        return f"{int(n)} B"
    return f"{int(n):,} {unit}"


def _rate(per_s: float, unit: str) -> str:
    """A rate: ``81 docs/s``, ``1.3 batches/s`` (a slow step keeps a decimal), ``12.5 MiB/s``."""
    if unit == "B":
        return _amount(per_s, unit) + "/s"
    return f"{per_s:,.1f} {unit}/s" if per_s < 10 else f"{int(per_s):,} {unit}/s"


class LogBar:
    """The non-terminal bar: `update` logs one line when the interval has passed since the last."""

    def __init__(self, total: float | None, desc: str, unit: str, interval: float):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n = 0.0
        self.start = self.last = time.monotonic()
        self.logged = False

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.logged = True
            log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        shown = _amount(self.n, self.unit)
        if self.total:
            left = (self.total - self.n) / rate if rate > 0 else float("inf")
            eta = duration(left) + " left" if left != float("inf") else "? left"
            done = (f"{_amount(self.n, self.unit)}/{_amount(self.total, self.unit)}" if self.unit == "B"
                    else f"{int(self.n):,}/{int(self.total):,} {self.unit}")
            shown = f"{done} ({100 * self.n / self.total:.0f}%), "
            return f"{self.desc}: {shown}{_rate(rate, self.unit)}, {eta}"
        return f"{self.desc}: {shown}, {_rate(rate, self.unit)}, {duration(elapsed)} so far"

    def close(self) -> None:
        now = time.monotonic()
        if self.logged or now - self.start >= self.interval > 0:
            rate = self.n / max(now - self.start, 1e-9)
            log.info("%s: %s in %s (%s)", self.desc, _amount(self.n, self.unit), duration(now - self.start),
                     _rate(rate, self.unit))


class _Off:
    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def progress(total: float | None, desc: str, unit: str = "it", enabled: bool = True) -> Iterator[Any]:
    """A bar to `update(n)` as work gets done; `total` None when unknown. ``unit="B"`` shows bytes;
    `enabled` False shows nothing (another process of a distributed run reports)."""
    mode = _mode() if enabled else "off"
    if mode == "bar":
        from tqdm.auto import tqdm

        bar: Any = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", unit_divisor=1024,
                        leave=False, dynamic_ncols=True, file=sys.stderr)
    elif mode == "log":
        bar = LogBar(total, desc, unit, _interval())
    else:
        bar = _Off()
    try:
        yield bar
    finally:
        bar.close()


def track(items: Iterable[T], total: float | None, desc: str, unit: str = "it",
          size: Any = None, enabled: bool = True) -> Iterator[T]:
    """`items`, advancing a bar by one per item (or by `size(item)`)."""
    with progress(total, desc, unit, enabled) as bar:
        for item in items:
            yield item
            bar.update(size(item) if size else 1)
