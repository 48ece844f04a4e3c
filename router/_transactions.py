"""The router's transactional producer: begin, produce, send the consumed offsets, commit, abort; every
transactional call bounded (``clickcash.router._bounded``) and retried while librdkafka calls its error
retriable.

This is the mechanism only. *When* to commit is ``clickcash.router._cadence``'s decision, what to do after a
failed
round ``clickcash.router._failures``'s, which offsets to send ``clickcash.router._decisions``' and the
router's offset tracker's.

Outputs and offsets commit atomically: ``send_offsets_to_transaction`` carries the consumer's group
metadata, which also fences a zombie router after a rebalance. An abort retries until the broker side is
done (an abort after delivery timeouts bumps the producer epoch, which can take a while); a fatal error
ends the run. A wedged producer can make no call: its open transaction is left to the next run's producer,
whose initialisation fences it and aborts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from clickcash.errors import ServiceError
from clickcash.router._bounded import BoundedCalls

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]

ABORT_DEADLINE_S = 300.0
"""how long an abort keeps being retried before the run ends with a ``ServiceError``"""
CALL_ATTEMPTS = 10
"""tries of a transactional call that librdkafka answers with a retriable error"""


class TransactionalProducer(Protocol):
    """The part of ``confluent_kafka.Producer`` the router uses (``clickcash.testing`` has a fake)."""

    def init_transactions(self, timeout: float = ...) -> None: ...

    def begin_transaction(self) -> None: ...

    def produce(self, topic: str, value: bytes | None = ..., key: bytes | None = ..., **kw: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float = ...
    ) -> None: ...

    def commit_transaction(self, timeout: float = ...) -> None: ...

    def abort_transaction(self, timeout: float = ...) -> None: ...


class Transactions:
    """One producer's transactions, opened lazily by the first output of a round."""

    def __init__(self, producer: Any, *, name: str, call_timeout_s: float, grace_s: float) -> None:
        self._producer = cast(TransactionalProducer, producer)
        self._call_timeout_s = call_timeout_s
        self._calls = BoundedCalls("kafka", name, grace_s)
        """every transactional call of the producer, bounded (see ``clickcash.router._bounded``)"""
        self.open = False
        self.started = 0.0
        """monotonic time the open transaction began"""

    @property
    def wedged(self) -> str | None:
        """The call that never returned, once one did not: the producer is then unusable."""
        return self._calls.wedged

    def init(self) -> None:
        self.call(self._producer.init_transactions, timeout_s=self._call_timeout_s)

    def begin(self) -> None:
        """Open a transaction unless one is open."""
        if not self.open:
            self.call(self._producer.begin_transaction)
            self.open = True
            self.started = time.monotonic()

    def produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> None:
        """Queue one record in the open transaction, serving delivery reports while the queue is full."""
        while True:
            try:
                if headers:
                    self._producer.produce(topic, value, key, headers=headers)
                else:
                    self._producer.produce(topic, value, key)
                return
            except BufferError:
                self._producer.poll(0.05)

    def produce_all(
        self,
        topics: Sequence[str],
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        headers: Sequence[Headers | None],
    ) -> None:
        """Queue a shard result's records in order (columns of equal length): :meth:`produce` without a
        Python call per record (the router produces ~1 to 1.5 records per input event)."""
        produce = self._producer.produce
        for topic, key, value, h in zip(topics, keys, values, headers, strict=True):
            try:
                if h:
                    produce(topic, value, key, headers=h)
                else:
                    produce(topic, value, key)
            except BufferError:
                self.produce(topic, key, value, h)

    def poll(self) -> None:
        self._producer.poll(0)

    def commit(self, offsets: Sequence[TopicPartition], group_metadata: Any) -> None:
        """Send ``offsets`` (if any) with the group's metadata and commit the open transaction."""
        if offsets:
            self.call(
                self._producer.send_offsets_to_transaction,
                list(offsets),
                group_metadata,
                timeout_s=self._call_timeout_s,
            )
        self.call(self._producer.commit_transaction, timeout_s=self._call_timeout_s)
        self.open = False

    def abort(self, label: str) -> bool:
        """Abort the open transaction; True if the broker was asked (False: the producer is wedged and
        the transaction is only forgotten). ``label`` names the owner in log lines."""
        asked = self.wedged is None
        if asked:
            self._abort_on_broker(label)
        self.open = False
        return asked

    def _abort_on_broker(self, label: str) -> None:
        deadline = time.monotonic() + ABORT_DEADLINE_S
        while True:
            try:
                self._calls.call(self._producer.abort_transaction, timeout_s=self._call_timeout_s)
                return
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.fatal():
                    raise ServiceError("kafka", f"fatal on abort: {err}") from exc
                if time.monotonic() > deadline:
                    raise ServiceError("kafka", f"abort did not complete: {err}") from exc
                log.warning("%s: abort not done yet (%s); retrying", label, exc)
                time.sleep(1.0)

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
        """Call a transactional API, retrying what librdkafka marks retriable; one that never returns
        raises ``ClientWedgedError``, which ends the run (the supervisor starts a new one)."""
        for attempt in range(CALL_ATTEMPTS):
            try:
                return self._calls.call(fn, *args, timeout_s=timeout_s)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.retriable() and attempt < CALL_ATTEMPTS - 1:
                    time.sleep(0.1 * (attempt + 1))
                    continue
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Flush what is queued (unless wedged) and let the call thread end."""
        if self.wedged is None:
            self._producer.flush(10)
        self._calls.close()
