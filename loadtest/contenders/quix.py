"""The Quix Streams contender: clickcash's per-event work in a Quix Streams application, exactly-once on.

A ``StreamingDataFrame`` over the raw input bytes expands each message into clickcash's outputs (the same
:class:`clickcash.loadtest.contenders._work.PerEventProcessor` as the hand-rolled loop: one event at a time,
its own
Redis round trips) and routes each output to its topic with its key and headers; Quix's transactional
producer commits them with the consumed offsets (``processing_guarantee="exactly-once"``). Quix's other
settings are its defaults (a 5 s commit interval among them).

Runs from the separate virtualenv of ``make bench`` (``.cache/venv-quix``): Quix Streams pins
confluent-kafka < 2.13 while clickcash needs >= 2.16.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from quixstreams import Application, message_context
from quixstreams.models.serializers import SerializationContext, Serializer

from clickcash.loadtest.contenders._common import (
    ContenderConfig,
    ContenderResult,
    CpuWindow,
    EndTracker,
    kafka_client_config,
    now,
    rss_mb,
    self_cpu_s,
)
from clickcash.loadtest.contenders._work import PerEventProcessor

Headers = list[tuple[str, bytes]]


class _Output:
    __slots__ = ("headers", "key", "topic", "value")

    def __init__(self, topic: str, key: bytes | None, value: bytes, headers: Headers | None) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers


class _OutputValue(Serializer):
    """Outputs are already encoded CloudEvents: the value goes out as is."""

    def __call__(self, value: Any, ctx: SerializationContext) -> bytes:
        return bytes(value.value)


def run(cfg: ContenderConfig) -> ContenderResult:
    work = PerEventProcessor(cfg)
    tracker = EndTracker(cfg.end_offsets)
    window = CpuWindow(cfg.options.get("service_pids", {}))
    state_dir = tempfile.mkdtemp(prefix="clickcash-quix-")
    app = Application(
        broker_address=cfg.bootstrap_servers,
        # TLS and SASL of the settings in the environment (broker_address only carries the brokers)
        consumer_extra_config=kafka_client_config(cfg.bootstrap_servers),
        producer_extra_config=kafka_client_config(cfg.bootstrap_servers),
        consumer_group=cfg.group_id,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        use_changelog_topics=False,
        state_dir=state_dir,
        loglevel="WARNING",
    )
    input_topic = app.topic(cfg.input_topic, key_deserializer="bytes", value_deserializer="bytes")
    outputs = {
        cfg.topic(role): app.topic(cfg.topic(role), key_serializer="bytes", value_serializer=_OutputValue())
        for role in ("orders", "payments", "dunning", "dlq")
    }
    first: list[float] = []
    events = [0]
    peak_rss = [rss_mb()]

    def process(value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> list[_Output]:
        ctx = message_context()
        p, o = ctx.partition, ctx.offset
        if not first:
            first.append(now())
            window.start()
        if not tracker.in_scope(p, o):
            tracker.seen(p, o)
            if tracker.done:
                app.stop()
            return []
        tracker.seen(p, o)
        result = work.process(cfg.input_topic, p, o, key, value, timestamp)
        events[0] += 1
        if events[0] % 5000 == 0:
            peak_rss[0] = max(peak_rss[0], rss_mb())
        if tracker.done:
            app.stop()  # the loop ends after this message; Quix commits its checkpoint on the way out
        return [
            _Output(t, k, v, h)
            for t, k, v, h in zip(result.topics, result.keys, result.values, result.headers, strict=True)
        ]

    sdf = app.dataframe(input_topic)
    sdf = sdf.apply(process, expand=True, metadata=True)
    sdf = sdf.set_headers(lambda value, _key, _ts, _headers: value.headers or [])
    sdf.to_topic(lambda value, _key, _ts, _headers: outputs[value.topic], key=lambda value: value.key)
    app.run()
    last = now()
    cpu = window.stop()
    return ContenderResult(
        cfg.name,
        events[0],
        first[0] if first else last,
        last,
        self_cpu_s(),
        max(peak_rss[0], rss_mb()),
        {
            "guarantee": f'exactly-once (processing_guarantee="{app.config.processing_guarantee}")',
            "quix_exactly_once": bool(app.config.exactly_once),
            "quix_commit_interval_s": app.config.commit_interval,
            "redis_round_trips": work.redis_round_trips,
            "cpu_s": cpu,
            "counts": work.shard.totals,
        },
    )


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    cfg = ContenderConfig.read(Path(argv[0]))
    run(cfg).write(Path(cfg.result_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
