"""The hand-rolled contender: clickcash's work in one confluent-kafka loop, written the straightforward way.

Same decode and validation, same Redis idempotency (stored first responses included, so a replay after a
crash gives the same outputs), same domain engines and the same outputs as clickcash, with exactly-once on:
one Kafka transaction per consumed batch carries that batch's outputs and its offsets. What it does not do
is what clickcash adds: events are applied one at a time, each with its own Redis round trips (one MGET to
load, one Lua call to commit), in one process.
"""

from __future__ import annotations

import sys

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
from clickcash.loadtest.contenders._work import PerEventProcessor
from clickcash.loadtest.contenders.passthrough import consumer_config

CONSUME_BATCH = 500


def run(cfg: ContenderConfig) -> ContenderResult:
    work = PerEventProcessor(cfg)
    consumer = Consumer(consumer_config(cfg))
    producer = Producer(
        {
            **kafka_client_config(cfg.bootstrap_servers),
            "transactional.id": f"{cfg.group_id}-handrolled",
            "retry.backoff.ms": 5,  # as clickcash's router: no 100 ms wait per commit (router/_router.py)
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
        }
    )
    producer.init_transactions(60)
    tracker = EndTracker(cfg.end_offsets)
    window = CpuWindow(cfg.options.get("service_pids", {}))
    consumer.subscribe([cfg.input_topic])
    first: float | None = None
    events = 0
    transactions = 0
    peak_rss = 0.0
    try:
        while not tracker.done:
            msgs = consumer.consume(CONSUME_BATCH, 0.1)
            if not msgs:
                continue
            if first is None:
                first = now()
                window.start()
            producer.begin_transaction()
            positions: dict[int, int] = {}
            for p, o, m in run_records(msgs, tracker, positions):
                result = work.process(cfg.input_topic, p, o, m.key(), m.value(), m.timestamp()[1])
                for topic, key, value, headers in zip(
                    result.topics, result.keys, result.values, result.headers, strict=True
                ):
                    produce(producer, topic, key, value, headers)
                events += 1
            producer.send_offsets_to_transaction(
                [TopicPartition(cfg.input_topic, p, o) for p, o in sorted(positions.items())],
                consumer.consumer_group_metadata(),
                30,
            )
            producer.commit_transaction(60)
            transactions += 1
            work.committed(positions)
            peak_rss = max(peak_rss, rss_mb())
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
        {
            "guarantee": "exactly-once (Kafka transaction per consumed batch)",
            "transactions": transactions,
            "cpu_s": cpu,
            "redis_round_trips": work.redis_round_trips,
            "counts": work.shard.totals,
        },
    )


if __name__ == "__main__":
    sys.exit(contender_main(run, sys.argv[1:]))
