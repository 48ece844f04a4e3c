"""The one reader (and writer) of a consumer group's committed offsets and lag.

Every reader of how far a group got (the routers rewinding after an aborted round, the demo and benchmark
waiting for a drain, ``clickcash verify``, the app's monitor, the load test's lag sampler, ``clickcash
loadtest --with-app`` starting a fresh group at the topic's end) goes through :func:`call_with_retry` and
:class:`GroupOffsets`, so all of them survive a fresh or restarting broker the same way: transient
coordinator errors are retried with backoff within a bounded time (the pure policy in
:mod:`clickcash.offset_retry`), then reported as one :class:`ServiceError` line naming Kafka and what to
check.

It lives in the kernel (it imports nothing of the project but the error root) so the router, the cluster
tools and the load test all use it; :mod:`clickcash.cluster.offsets` builds its clients from the settings.

It reads through a consumer in the group that never subscribes (so it never joins the group or disturbs its
members), not ``AdminClient.list_consumer_group_offsets``: librdkafka 2.x segfaults in that admin call when
the broker answers NOT_COORDINATOR (confluentinc/librdkafka#5040), which is exactly the fresh-broker case.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Self, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from clickcash.errors import ServiceError
from clickcash.offset_retry import RetryBudget, failure_message, next_delay

T = TypeVar("T")

RDKAFKA_LOG = logging.getLogger("librdkafka")
"""librdkafka's own log lines (a coordinator loading, a purged background queue) of the tools' clients,
through Python logging: a command whose console a person reads sends them to its log file, not raw stderr"""

DEFAULT_BUDGET = RetryBudget()


def _error_name(exc: BaseException) -> tuple[str, bool, str]:
    """(librdkafka error name, retriable, text) of a client error."""
    if isinstance(exc, TimeoutError):  # an admin future's result() waited out its timeout
        return "_TIMED_OUT", True, str(exc) or "no answer in time"
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is None:
        return type(exc).__name__, False, str(exc)
    return err.name(), bool(err.retriable()), err.str()


def call_with_retry(
    call: Callable[[float], T],
    *,
    operation: str,
    group_id: str,
    bootstrap: str,
    budget: RetryBudget = DEFAULT_BUDGET,
    call_timeout_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call(timeout_s)``, retried on transient Kafka errors within ``budget``; ``ServiceError`` after.

    Each attempt gets at most ``call_timeout_s`` and never much more than what is left of the budget, so
    the whole stays bounded by about ``budget.budget_s`` plus one short attempt.
    """
    started = clock()
    attempt = 0
    while True:
        remaining = budget.budget_s - (clock() - started)
        try:
            return call(max(0.5, min(call_timeout_s, remaining)))
        except (KafkaException, TimeoutError) as exc:
            name, retriable, text = _error_name(exc)
            elapsed = clock() - started
            delay = next_delay(name, retriable, attempt, elapsed, budget)
            if delay is None:
                raise ServiceError(
                    "kafka", failure_message(operation, group_id, bootstrap, name, text, elapsed)
                ) from exc
            sleep(delay)
            attempt += 1


def partition_lags(committed: Mapping[int, int | None], ends: Mapping[int, int]) -> dict[int, int]:
    """Records past the group's committed offset per partition of ``ends``; a partition the group never
    committed lags by its whole end. Pure."""
    out: dict[int, int] = {}
    for p, end in ends.items():
        c = committed.get(p)
        out[p] = end if c is None else max(0, end - c)
    return out


def total_lag(committed: Mapping[int, int | None], ends: Mapping[int, int]) -> int | None:
    """Records past the committed offsets over all partitions; None while some non-empty partition has no
    commit yet (the group has not started on it: its lag is not known to be the whole partition). Pure."""
    if any(committed.get(p) is None and end > 0 for p, end in ends.items()):
        return None
    return sum(partition_lags(committed, ends).values())


class GroupOffsets:
    """A consumer group's committed offsets, end offsets and lag on one topic (the app's input by default)."""

    def __init__(
        self,
        consumer: Consumer,
        admin: AdminClient,
        *,
        group_id: str,
        topic: str,
        bootstrap: str,
        budget: RetryBudget = DEFAULT_BUDGET,
        call_timeout_s: float = 10.0,
    ) -> None:
        """``consumer``: a client in the group that never subscribes (closed by :meth:`close`);
        ``admin``: for the topic's partitions and end offsets; ``bootstrap`` names the cluster in errors.
        :class:`clickcash.cluster.offsets.GroupOffsets` builds both from the settings."""
        self.group_id = group_id
        self.topic = topic
        self._bootstrap = bootstrap
        self._budget = budget
        self._call_timeout_s = call_timeout_s
        self._c = consumer
        self._admin = admin
        self._partitions: list[int] | None = None

    def _retry(self, operation: str, call: Callable[[float], T]) -> T:
        return call_with_retry(
            call,
            operation=operation,
            group_id=self.group_id,
            bootstrap=self._bootstrap,
            budget=self._budget,
            call_timeout_s=self._call_timeout_s,
        )

    def partitions(self) -> list[int]:
        """The topic's partitions (looked up once); ``ServiceError`` if the topic does not exist."""
        if self._partitions is None:
            meta = self._retry(
                f"read the partitions of {self.topic}",
                lambda t: self._admin.list_topics(self.topic, timeout=t),
            )
            topic = meta.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise ServiceError(
                    "kafka",
                    f"topic {self.topic!r} does not exist at {self._bootstrap}: create it "
                    "(`clickcash run --create-topics`, or the command's --create-topics)",
                )
            self._partitions = sorted(topic.partitions)
        return self._partitions

    def committed(self, partitions: list[int] | None = None) -> dict[int, int | None]:
        """Committed offset per partition (all of the topic's by default); None where the group has committed
        nothing. One request to the group coordinator."""
        tps = [
            TopicPartition(self.topic, p) for p in (self.partitions() if partitions is None else partitions)
        ]
        got = self._retry("read the committed offsets", lambda t: self._c.committed(tps, timeout=t))
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in got}

    def ends(self) -> dict[int, int]:
        """The topic's end (high watermark) offset per partition: one batched request to the leaders."""
        tps = [TopicPartition(self.topic, p) for p in self.partitions()]

        def call(timeout_s: float) -> dict[int, int]:
            futures = self._admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in tps}, request_timeout=timeout_s
            )
            return {tp.partition: int(f.result(timeout=timeout_s + 1).offset) for tp, f in futures.items()}

        return self._retry(f"read the end offsets of {self.topic}", call)

    def lag(self) -> int | None:
        """Records past the committed offsets; None while some non-empty partition has no commit yet."""
        committed = self.committed()
        return total_lag(committed, self.ends())

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit these offsets for the group (only for a group with no live members, e.g. a fresh one)."""
        tps = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        self._retry("commit offsets", lambda _t: self._c.commit(offsets=tps, asynchronous=False))

    def start_at_end(self) -> bool:
        """Commit the topic's end offsets if the group has committed nothing yet (True if it did), so a fresh
        group skips what earlier runs left in the topic."""
        if any(o is not None for o in self.committed().values()):
            return False
        self.commit(self.ends())
        return True

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            self._c.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
