"""Blocking client calls with a deadline the caller enforces, for calls that can ignore their own timeout.

librdkafka's ``send_offsets_to_transaction`` can wait forever when the group coordinator's broker dies and
drops out of the metadata (confluentinc/librdkafka#5456: the coordinator request's timeout is never
checked; #5511: a decommissioned broker stays cached as coordinator). Seen here: a router blocked in it for
the whole five minutes of a broker-kill test, silently, until ``max.poll.interval.ms`` threw it out of the
group. A call in C cannot be interrupted from Python, so each call runs on a worker thread and the caller
waits for at most the call's timeout plus a grace period. Past that the client is declared wedged: the
call raises :class:`ClientWedgedError`, every later call raises it at once, and the owner replaces the
client (the router's run ends and its supervisor starts a new one, whose producer fences the old one).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from clickcash.errors import ClientWedgedError


class BoundedCalls:
    def __init__(self, service: str, name: str, grace_s: float = 30.0) -> None:
        self._service = service
        self.grace_s = grace_s
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self.wedged: str | None = None
        """the call that never returned, once one did not"""

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
        """``fn(*args, timeout_s)`` (``fn(*args)`` without a timeout), waiting at most ``timeout_s`` plus
        the grace period; the call's own exceptions propagate unchanged."""
        what = getattr(fn, "__name__", repr(fn))
        if self.wedged is not None:
            raise ClientWedgedError(self._service, f"{what} refused: {self.wedged} never returned")
        call_args = (*args, timeout_s) if timeout_s is not None else args
        future = self._worker.submit(fn, *call_args)
        limit_s = (timeout_s or 0.0) + self.grace_s
        try:
            return future.result(timeout=limit_s)
        except concurrent.futures.TimeoutError:
            self.wedged = what
            self._worker.shutdown(wait=False)
            raise ClientWedgedError(
                self._service, f"{what} did not return within {limit_s:g} s; the client is replaced"
            ) from None

    def close(self) -> None:
        """Let the worker thread end (at once, unless it is blocked in a wedged call)."""
        self._worker.shutdown(wait=False)
