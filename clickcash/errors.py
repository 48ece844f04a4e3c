"""One root exception for everything clickcash raises on purpose.

Service errors (Kafka, Redis, Ray) are translated at the boundary into these types with the original kept
as ``__cause__``, so callers catch ``ClickcashError`` without importing three client libraries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ClickcashError(Exception):
    """Root of every error clickcash raises on purpose."""


class ConfigError(ClickcashError):
    """A setting or config file is wrong; the message names the setting."""


class ServiceError(ClickcashError):
    """A backing service (Kafka, Redis, Ray) failed; ``__cause__`` holds the client's own error."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message

    def __reduce__(self) -> tuple[type[ServiceError], tuple[str, str]]:
        """Rebuilt from both arguments: Ray pickles an actor's error to its caller, and the default
        (``cls(*args)``, one formatted string) fails, leaving the caller an unreadable error instead."""
        return (type(self), (self.service, self.message))


class ClientWedgedError(ServiceError):
    """A client call did not return within its own timeout plus a grace period, and never will in time:
    the client is unusable and must be replaced (the call's thread is left behind, blocked in C)."""


class StateConflictError(ClickcashError):
    """Another writer changed a customer's state between our read and our write.

    Raised only after the bounded optimistic retries are used up: it means two shards are applying the same
    customer at once, which the router's assignment is meant to prevent.
    """


class StaleShardCallError(ClickcashError):
    """A shard call refused untouched by the shard's call gate (``clickcash.actors.calls``): its router run
    was fenced off (a dead router, or one that fenced again), was never fenced at this instance (the shard
    restarted), skipped a call, or follows a call of its run that raised.

    Ray sends calls made while it restarts an actor to the new instance, ahead of anything the caller sends
    once it learns of the death, and a dead router's inline calls still run after it. Applying them would
    run a customer's later events before the replay of the earlier ones; refusing them makes the router
    fence, rewind and replay in order instead.
    """


def remote_error_reason(exc: BaseException) -> str:
    """One log line for an error raised in a Ray actor: the actor's own error when Ray carries one
    (``RayTaskError.cause``), else the error's first line (Ray's headline names only the task)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def map_exceptions(service: str, *types: type[BaseException]) -> Iterator[None]:
    """Translate a client library's errors into ``ServiceError``, keeping the original as the cause."""
    try:
        yield
    except ClickcashError:
        raise
    except types as exc:
        raise ServiceError(service, f"{type(exc).__name__}: {exc}") from exc
