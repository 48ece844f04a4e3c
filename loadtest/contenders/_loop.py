"""The consume and produce steps the single-process contenders share (passthrough, hand-rolled)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer

from clickcash.loadtest.contenders._common import EndTracker


def run_records(
    msgs: list[Message], tracker: EndTracker, positions: dict[int, int]
) -> Iterator[tuple[int, int, Message]]:
    """(partition, offset, message) of the consumed records that belong to the run's input.

    Advances ``positions`` (next offset per partition) over every delivered record, passes over records
    past the run's input (timer commands an app appended) and raises on a consume error."""
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                raise RuntimeError(f"consume error: {err}")
            continue
        p, o = cast(int, m.partition()), cast(int, m.offset())
        positions[p] = o + 1
        in_scope = tracker.in_scope(p, o)
        tracker.seen(p, o)
        if in_scope:
            yield p, o, m


def produce(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]] | None,
    on_delivery: Callable[[Any, Any], None] | None = None,
) -> None:
    """Produce, serving delivery reports while the local queue is full."""
    kwargs: dict[str, Any] = {}
    if headers:
        kwargs["headers"] = headers
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, value, key, **kwargs)
            return
        except BufferError:
            producer.poll(0.05)
