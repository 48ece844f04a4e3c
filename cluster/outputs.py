"""Reading what clickcash wrote: committed output records (how far the group lags is
``clickcash.cluster.offsets``).

Used by the demo, the benchmark and the integration tests; it reads with ``read_committed`` as downstream
services should, so it sees exactly what they would.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from clickcash.config.settings import Settings

COMMITTED_FETCH_WAIT_MS = 500
"""``fetch.wait.max.ms`` of a ``read_committed`` reader of the output topics. The broker answers such a
fetch as soon as a commit marker makes records readable, so the wait does not delay a reader; it only
sets how often an idle reader asks again. Measured on the embedded broker (2026-12-05, 2 cores, a reader
of 32 partitions): commit -> record seen p50 7.7 ms with a 10 ms wait and 3.7 ms with 500, while the
10 ms wait's idle fetches cost the broker ~0.17 of a core, 500's ~0.03 (``docs/benchmark.md``)."""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    id: str
    type: str
    causationid: str | None
    event: dict[str, Any] | None
    """the decoded CloudEvent (structured mode); None for dead letters"""
    headers: dict[str, bytes]
    value: bytes
    seen_at: float
    """wall-clock seconds when this reader received it"""


def _decode(msg: Any, seen_at: float) -> OutputRecord:
    headers = {k: v for k, v in (msg.headers() or [])}
    if "ce_id" in headers:
        cause = headers.get("ce_causationid")
        return OutputRecord(
            msg.topic(),
            msg.partition(),
            msg.offset(),
            msg.key(),
            headers["ce_id"].decode(),
            headers.get("ce_type", b"").decode(),
            cause.decode() if cause else None,
            None,
            headers,
            msg.value(),
            seen_at,
        )
    ev = orjson.loads(msg.value())
    return OutputRecord(
        msg.topic(),
        msg.partition(),
        msg.offset(),
        msg.key(),
        ev["id"],
        ev["type"],
        ev.get("causationid"),
        ev,
        headers,
        msg.value(),
        seen_at,
    )


class OutputReader:
    """Consumes the output topics, read_committed, with a throw-away group: from the beginning
    (subscribed), or with ``from_end`` from the partitions' current ends.

    ``from_end`` is for timing what comes next (send -> committed output): the reader is assigned before
    the first send, so it reads each output as it commits. A subscribing reader is still joining its group
    and reading the whole history when the first outputs commit, and notes them hundreds of milliseconds
    late."""

    def __init__(
        self, settings: Settings, topics: list[str] | None = None, *, from_end: bool = False
    ) -> None:
        k = settings.kafka
        self.topics = topics or [k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic]
        self._c = Consumer(
            {
                **k.client_config(),
                "group.id": f"clickcash-reader-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": COMMITTED_FETCH_WAIT_MS,
                "logger": logging.getLogger("librdkafka"),
            }
        )
        if from_end:
            self._c.assign(self._ends())
        else:
            self._c.subscribe(self.topics)
        self.records: list[OutputRecord] = []

    def _ends(self, attempts: int = 20) -> list[TopicPartition]:
        """Each partition at its current end. A topic created a moment ago may have no partitions in the
        metadata or no leader yet: asked again, a quarter of a second apart."""
        for attempt in range(attempts):
            try:
                tps = []
                for topic in self.topics:
                    partitions = self._c.list_topics(topic, timeout=10).topics[topic].partitions
                    if not partitions:
                        raise KafkaException(
                            KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"{topic}: no partitions")
                        )
                    for p in sorted(partitions):
                        high = self._c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                        tps.append(TopicPartition(topic, p, high))
                return tps
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def poll(self, timeout_s: float = 0.2, max_records: int = 5000) -> list[OutputRecord]:
        """Wait up to ``timeout_s`` for the first record, then take what else is queued (a batch consume
        waits its whole timeout unless the batch fills, which would note records late)."""
        msgs = self._c.consume(1, timeout_s)
        if msgs and max_records > 1:
            msgs += self._c.consume(max_records - 1, 0)
        now = time.time()
        out = [_decode(m, now) for m in msgs if m.error() is None]
        self.records.extend(out)
        return out

    def read_until(
        self,
        done: Callable[[list[OutputRecord]], bool],
        timeout_s: float,
        idle_s: float | None = None,
    ) -> list[OutputRecord]:
        """Read until ``done(all records)`` holds, nothing new came for ``idle_s``, or the timeout."""
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline and not done(self.records):
            if self.poll():
                last_new = time.monotonic()
            elif idle_s is not None and time.monotonic() - last_new > idle_s:
                break
        return self.records

    def close(self) -> None:
        self._c.close()
