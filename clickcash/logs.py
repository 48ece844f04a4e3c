"""Structured (JSON) log lines with the context an operator needs to join them: shard or router id from the
process, correlation and event id from the code handling an event (:func:`log_context`).

One line per record, never one per event at INFO: the hot path logs only what goes wrong. Values are what the
code passes; nothing here reads event payloads, so card data and secrets never reach a log line through it.
Every formatted line is masked all the same (:func:`clickcash.card_data.mask_text`): an exception message
or a third-party library's line can quote input, and a card number must not reach a log by any path.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from clickcash.card_data import mask_text

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("clickcash_log_context", default=None)
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...context, ...extra}`` as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_CONTEXT.get() or {})
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return mask_text(orjson.dumps(out, default=str).decode())


class MaskingFormatter(logging.Formatter):
    """The text format, with card numbers masked like :class:`JsonFormatter`'s lines."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


class _ProcessFields(logging.Filter):
    """Adds fields fixed for the process (``shard_id`` in a shard actor's worker) to every record."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in self.fields.items():
            if not hasattr(record, k):
                setattr(record, k, v)
        return True


def configure_logging(log_format: str, level: str, **process_fields: Any) -> None:
    """Format the root logger's handlers (adding a stderr one if there is none) as JSON or text."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter: logging.Formatter = (
        JsonFormatter()
        if log_format == "json"
        else MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    for handler in root.handlers:
        handler.setFormatter(formatter)
        for f in [f for f in handler.filters if isinstance(f, _ProcessFields)]:
            handler.removeFilter(f)
        if process_fields:
            handler.addFilter(_ProcessFields(process_fields))
    root.setLevel(level)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Fields (``correlation_id``, ``event_id``, ...) added to every record logged inside the block."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class RateLimiter:
    """At most ``limit`` grants per window of ``window_s`` (fixed windows on ``clock``, seconds).

    Pure bookkeeping: the clock is an input, so tests drive time. What is refused in a window is counted,
    and reported once when that window has ended (by the next :meth:`acquire` or by :meth:`expire`).
    """

    def __init__(
        self, limit: int = 20, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._start = float("-inf")
        self._used = 0
        self._refused = 0

    def _roll(self, now: float) -> int:
        if now - self._start < self.window_s:
            return 0
        ended, self._refused = self._refused, 0
        self._start, self._used = now, 0
        return ended

    def acquire(self) -> tuple[bool, int]:
        """(granted, refusals of a window that ended since the last call, to report now)"""
        ended = self._roll(self._clock())
        if self._used < self.limit:
            self._used += 1
            return True, ended
        self._refused += 1
        return False, ended

    def expire(self) -> int:
        """Refusals of a window that has ended (0 while it runs); call it from a periodic path."""
        return self._roll(self._clock())


class RateLimitedLog:
    """WARNING lines of one kind (``what``), at most ``limiter.limit`` per window, then one line saying
    how many were suppressed, so a flood of bad input cannot flood the logs."""

    def __init__(self, logger: logging.Logger, what: str, limiter: RateLimiter | None = None) -> None:
        self.logger = logger
        self.what = what
        self.limiter = limiter or RateLimiter()

    def warning(
        self,
        msg: str,
        *args: Any,
        more_fields: Callable[[], Mapping[str, Any]] | None = None,
        **fields: Any,
    ) -> None:
        """``more_fields`` is called only for a line that is written: a flood of bad input then costs a
        counter per record, not the formatting of lines nobody will see. A logger that drops warnings
        (a tool that sets its level higher) gets no fields built either: how many lines a window grants
        depends on the wall clock, and work that does would make the same input cost more on a slower
        run (``bench --stages --instructions`` counts it)."""
        granted, suppressed = self.limiter.acquire()
        self._report(suppressed)
        if granted and self.logger.isEnabledFor(logging.WARNING):
            self.logger.warning(msg, *args, extra={**fields, **more_fields()} if more_fields else fields)

    def flush(self) -> None:
        """Report what a window that has ended suppressed (the shard actor calls it on each stats poll)."""
        self._report(self.limiter.expire())

    def _report(self, suppressed: int) -> None:
        if suppressed:
            self.logger.warning(
                "%d %s log lines suppressed (more than %d in %g s)",
                suppressed,
                self.what,
                self.limiter.limit,
                self.limiter.window_s,
                extra={"suppressed": suppressed, "suppressed_kind": self.what},
            )
