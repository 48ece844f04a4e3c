"""The passthrough contender: decode each event's JSON and produce one output, no validation, no Redis.

The practical ceiling of a single-process Kafka -> Kafka loop in Python on this machine: one idempotent
producer (not transactional), offsets committed asynchronously as it goes and synchronously at the end
(at-least-once). Each output carries ``ce_id = <partition>:<offset>`` of its input, for the completeness
check.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from clickcash.loadtest.contenders._common import (
    ContenderConfig,
    ContenderResult,
    CpuWindow,
    EndTracker,
    contender_main,
    kafka_client_config,
    now,
    rss_mb,
    self_cpu_s,
)
from clickcash.loadtest.contenders._loop import produce, run_records

CONSUME_BATCH = 2000


def consumer_config(cfg: ContenderConfig, **extra: Any) -> dict[str, Any]:
    return {
        **kafka_client_config(cfg.bootstrap_servers),
        "group.id": cfg.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 20,
        "queued.max.messages.kbytes": 16384,
        **extra,
    }


def run(cfg: ContenderConfig) -> ContenderResult:
    consumer = Consumer(consumer_config(cfg))
    producer = Producer(
        {
            **kafka_client_config(cfg.bootstrap_servers),
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
        }
    )
    out_topic = cfg.topic("out")
    tracker = EndTracker(cfg.end_offsets)
    window = CpuWindow(cfg.options.get("service_pids", {}))
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    consumer.subscribe([cfg.input_topic])
    first: float | None = None
    events = 0
    peak_rss = 0.0
    positions: dict[int, int] = {}
    try:
        while not tracker.done:
            msgs = consumer.consume(CONSUME_BATCH, 0.1)
            if not msgs:
                continue
            if first is None:
                first = now()
                window.start()
            for p, o, m in run_records(msgs, tracker, positions):
                try:
                    decoded: Any = orjson.loads(m.value() or b"")
                    value = orjson.dumps(decoded)
                except orjson.JSONDecodeError:
                    value = m.value() or b""
                produce(producer, out_topic, m.key(), value, [("ce_id", f"{p}:{o}".encode())], on_delivery)
                events += 1
            producer.poll(0)
            consumer.commit(
                offsets=[TopicPartition(cfg.input_topic, p, o) for p, o in positions.items()],
                asynchronous=True,
            )
            peak_rss = max(peak_rss, rss_mb())
        if producer.flush(120) != 0 or failures:
            raise RuntimeError(f"outputs not delivered: {failures[:3]}")
        consumer.commit(
            offsets=[TopicPartition(cfg.input_topic, p, o) for p, o in positions.items()], asynchronous=False
        )
        last = now()
        cpu = window.stop()
    finally:
        consumer.close()
    return ContenderResult(
        cfg.name,
        events,
        first or last,
        last,
        self_cpu_s(),
        peak_rss,
        {"guarantee": "at-least-once", "cpu_s": cpu},
    )


if __name__ == "__main__":
    sys.exit(contender_main(run, sys.argv[1:]))
