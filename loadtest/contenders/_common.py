"""What the orchestrator hands a contender process, what the process hands back, and shared helpers.

A contender runs as ``python -m clickcash.loadtest.contenders.<name> <config.json>`` and writes its result
JSON to
``ContenderConfig.result_path``. The Quix contender runs from its own virtualenv (Quix Streams pins an older
confluent-kafka than clickcash), so nothing here imports Ray or confluent-kafka.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, TopicPartition


@dataclass(frozen=True)
class ContenderConfig:
    name: str
    bootstrap_servers: str
    redis_url: str
    input_topic: str
    end_offsets: dict[int, int]
    """partition -> offset one past the last pre-produced record: a contender's work ends there"""
    topic_prefix: str
    """output topics: ``<prefix>.orders``, ``.payments``, ``.dunning``, ``.dlq`` (passthrough: ``.out``)"""
    group_id: str
    redis_prefix: str
    result_path: str
    options: dict[str, Any] = field(default_factory=dict)
    """contender-specific options (clickcash: shards, routers, num_cpus, paced phases; profile: out file)"""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> ContenderConfig:
        raw = json.loads(path.read_text())
        raw["end_offsets"] = {int(p): int(o) for p, o in raw["end_offsets"].items()}
        return cls(**raw)

    @property
    def events(self) -> int:
        return sum(self.end_offsets.values())

    def topic(self, role: str) -> str:
        return f"{self.topic_prefix}.{role}"


OUTPUT_ROLES = ("orders", "payments", "dunning", "dlq")


@dataclass
class ContenderResult:
    name: str
    events: int
    first_consume_at: float
    """wall-clock seconds when the first input record was consumed"""
    last_output_at: float
    """wall-clock seconds when the last output was committed (visible to read_committed readers)"""
    process_cpu_s: float = 0.0
    """CPU seconds of the contender's own processes (children included) over the whole process life"""
    peak_rss_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return max(self.last_output_at - self.first_consume_at, 1e-9)

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["elapsed_s"] = round(self.elapsed_s, 3)
        out["events_per_s"] = round(self.events_per_s, 1)
        return out

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2))

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ContenderResult:
        keys = (
            "name",
            "events",
            "first_consume_at",
            "last_output_at",
            "process_cpu_s",
            "peak_rss_mb",
            "extra",
        )
        return cls(**{k: raw[k] for k in keys if k in raw})


class EndTracker:
    """Knows when every partition has been read up to its pre-produced end.

    The input topic may grow past the end (clickcash's routers write dunning timer commands into it):
    records at or past a partition's end are not part of the benchmark's work and are skipped.
    """

    def __init__(self, end_offsets: dict[int, int]) -> None:
        self._end = dict(end_offsets)
        self._open = {p for p, end in end_offsets.items() if end > 0}

    def in_scope(self, partition: int, offset: int) -> bool:
        return offset < self._end.get(partition, 0)

    def seen(self, partition: int, offset: int) -> None:
        if offset + 1 >= self._end.get(partition, 0):
            self._open.discard(partition)

    @property
    def done(self) -> bool:
        return not self._open


def self_cpu_s() -> float:
    """CPU seconds of this process and its (live) children."""
    me = psutil.Process(os.getpid())
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            ct = child.cpu_times()
            total += ct.user + ct.system
        except psutil.Error:
            continue
    return total


def rss_mb(pid: int | None = None) -> float:
    try:
        return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20
    except psutil.Error:
        return 0.0


def now() -> float:
    return time.time()


def process_cpu_s(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


class CpuWindow:
    """CPU seconds that this contender's processes and the shared services (Kafka, Redis) spend between
    :meth:`start` (first consumed record) and :meth:`stop` (last output committed)."""

    def __init__(self, service_pids: dict[str, int]) -> None:
        self._pids = dict(service_pids)
        self._start: dict[str, float] = {}

    def _snapshot(self) -> dict[str, float]:
        out = {"contender": self_cpu_s()}
        for name, pid in self._pids.items():
            cpu = process_cpu_s(pid)
            if cpu is not None:
                out[f"{name} (service)"] = cpu
        return out

    def start(self) -> None:
        if not self._start:
            self._start = self._snapshot()

    def stop(self) -> dict[str, float]:
        end = self._snapshot()
        return {k: round(v - self._start.get(k, 0.0), 3) for k, v in end.items() if k in self._start}


def contender_main(run: Callable[[ContenderConfig], ContenderResult], argv: list[str]) -> int:
    """A contender process: read its config (the one argument), run, write the result where it says."""
    cfg = ContenderConfig.read(Path(argv[0]))
    run(cfg).write(Path(cfg.result_path))
    return 0


def kafka_client_config(bootstrap_servers: str) -> dict[str, Any]:
    """A contender's Kafka connection and security properties: the brokers it was handed, everything else
    (TLS, SASL) from clickcash's settings in the environment, so no secret is written into the contender's
    config file or command line."""
    from clickcash.config.settings import load_settings

    return load_settings(kafka={"bootstrap_servers": bootstrap_servers}).kafka.client_config()


def redis_client_url(url: str) -> str:
    """A contender's Redis URL: ``url`` (no credentials) plus the ACL user and TLS files of the settings."""
    from clickcash.config.settings import load_settings

    return load_settings(redis={"url": url}).redis.client_url()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> high watermark of ``topic``."""
    c = Consumer({**kafka_client_config(bootstrap), "group.id": f"compare-meta-{uuid.uuid4().hex[:8]}"})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in sorted(parts)}
    finally:
        c.close()
