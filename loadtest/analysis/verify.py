"""An independent recount of a finished run, straight from the topics, to check the streaming report.

It reads the input topic and the output topics again, from the offsets the monitor started at up to their
current end (read_committed), keeps the run's records (key prefix), and counts them with none of the
monitor's matching state: inputs by kind, outputs by type, output ids seen twice, and generated orders
without an ``order.accepted``/``order.rejected``. :func:`compare` lists where the report differs.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from clickcash.config.settings import Settings
from clickcash.loadtest.locust_run._spec import KIND_HEADER

_DECISIONS = {"order.accepted", "order.rejected"}


def _records(settings: Settings, topic: str, start_at: dict[Any, int], idle_s: float = 3.0) -> Iterator[Any]:
    """Every committed record of ``topic`` from ``start_at`` (partition -> offset) to the end as of now."""
    start = {int(p): int(o) for p, o in start_at.items()}
    c = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"clickcash-loadtest-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        ends = {}
        for p, first in start.items():
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            if high > first:
                ends[p] = high
        c.assign([TopicPartition(topic, p, start[p]) for p in ends])
        last_new = time.monotonic()
        while ends and time.monotonic() - last_new < idle_s:
            msgs = c.consume(5000, 0.5)
            if msgs:
                last_new = time.monotonic()
            for m in msgs:
                if m.error() is not None:
                    continue
                yield m
                partition, offset = m.partition() or 0, m.offset() or 0
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
            # transaction markers at the end of a partition are never delivered: the position tells
            for tp in c.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends.get(tp.partition, 1 << 62):
                    ends.pop(tp.partition, None)
    finally:
        c.close()


def recount(settings: Settings, run_id: str, start_offsets: dict[str, dict[Any, int]]) -> dict[str, Any]:
    prefix = f"{run_id}-".encode()
    k = settings.kafka
    inputs: Counter[str] = Counter()
    app: Counter[str] = Counter()
    orders: set[str] = set()
    for m in _records(settings, k.input_topic, start_offsets.get(k.input_topic, {})):
        key = m.key()
        if key is None or not key.startswith(prefix):
            continue
        kind = dict(m.headers() or []).get(KIND_HEADER)
        if kind is None:
            try:
                app[str(orjson.loads(m.value())["type"])] += 1
            except (orjson.JSONDecodeError, KeyError, TypeError):
                app["unknown"] += 1
            continue
        inputs[kind.decode()] += 1
        if kind == b"order.placed":
            orders.add(orjson.loads(m.value())["id"])
    outputs: Counter[str] = Counter()
    ids: Counter[str] = Counter()
    decided: set[str] = set()
    for topic in (k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic):
        for m in _records(settings, topic, start_offsets.get(topic, {})):
            key = m.key()
            if key is None or not key.startswith(prefix):
                continue
            headers = dict(m.headers() or [])
            if "ce_id" in headers:
                oid, otype, cause = headers["ce_id"].decode(), headers["ce_type"].decode(), None
            else:
                ev = orjson.loads(m.value())
                oid, otype, cause = ev["id"], ev["type"], ev.get("causationid")
            ids[oid] += 1
            if ids[oid] == 1:
                outputs[otype] += 1
            if otype in _DECISIONS and cause is not None:
                decided.add(cause)
    return {
        "inputs": {
            "total": sum(inputs.values()),
            "by_kind": dict(sorted(inputs.items())),
            "app_generated": dict(sorted(app.items())),
        },
        "outputs": {"total": sum(outputs.values()), "by_type": dict(sorted(outputs.items()))},
        "lost_orders": len(orders - decided),
        "duplicate_outputs": sum(n - 1 for n in ids.values() if n > 1),
    }


def compare(summary: dict[str, Any], counts: dict[str, Any]) -> list[str]:
    """Where the report's numbers differ from the recount (empty: they match)."""
    pairs = [
        ("inputs", summary["inputs"]["total"], counts["inputs"]["total"]),
        ("outputs", summary["outputs"]["total"], counts["outputs"]["total"]),
        ("lost orders", summary["checks"]["lost_orders"], counts["lost_orders"]),
        ("duplicate outputs", summary["checks"]["duplicate_outputs"], counts["duplicate_outputs"]),
    ]
    app_report, app_topics = (
        summary["inputs"].get("app_generated", {}),
        counts["inputs"].get("app_generated", {}),
    )
    for etype in sorted(set(app_report) | set(app_topics)):
        pairs.append((f"app-generated inputs {etype}", app_report.get(etype, 0), app_topics.get(etype, 0)))
    for kind in sorted(set(summary["inputs"]["by_kind"]) | set(counts["inputs"]["by_kind"])):
        pairs.append(
            (
                f"inputs {kind}",
                summary["inputs"]["by_kind"].get(kind, 0),
                counts["inputs"]["by_kind"].get(kind, 0),
            )
        )
    for otype in sorted(set(summary["outputs"]["by_type"]) | set(counts["outputs"]["by_type"])):
        pairs.append(
            (
                f"outputs {otype}",
                summary["outputs"]["by_type"].get(otype, 0),
                counts["outputs"]["by_type"].get(otype, 0),
            )
        )
    return [f"{name}: report {a:,} vs topics {b:,}" for name, a, b in pairs if a != b]


def verify(settings: Settings, summary: dict[str, Any]) -> dict[str, Any]:
    counts = recount(settings, summary["run_id"], summary["start_offsets"])
    differences = compare(summary, counts)
    return {"matches": not differences, "differences": differences, "counts": counts}
