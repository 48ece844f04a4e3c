"""Latency of any contender, send -> committed output, at a paced input rate.

A reader assigned to the output partitions at their current ends (so it reads before the first paced send;
a subscribing reader would still be joining its group) notes when each committed output becomes visible
(read_committed), and matches it to its input by causation id: the ``ce_causationid`` header, else the
output's ``causationid`` field, else (the passthrough, which writes its input back) the output's own ``id``.

:func:`paced_run` is the harness for the contenders that run as their own process (passthrough, hand-rolled,
Quix Streams): the process reads a fresh input topic with no end, a warm-up goes through it first (group
join, transactions, connections), then the paced input, then the process is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer, TopicPartition

from clickcash.cluster.offsets import group_lag
from clickcash.cluster.outputs import COMMITTED_FETCH_WAIT_MS
from clickcash.config.settings import load_settings
from clickcash.errors import ClickcashError
from clickcash.loadtest.contenders._common import kafka_client_config
from clickcash.loadtest.contenders.results import identify, latency_summary
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix
from clickcash.loadtest.traffic.campaign_run import send_campaign

Seen = tuple[str | None, str, float]
"""(causation id, output type, seconds when seen)"""

RAW_OUTPUTS_MAX = 250_000
"""outputs the latency reader keeps unparsed at most (~0.2 GB); past it, it parses them during the run"""


class LatencyReader:
    """The one reader behind every latency figure of the benchmark lab (clickcash's paced runs and the
    other contenders'): :attr:`seen` per committed output, and :attr:`output_ids` (causation id, output
    id) to count an output seen twice."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._c = Consumer(
            {
                **kafka_client_config(bootstrap),
                "group.id": f"latency-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": COMMITTED_FETCH_WAIT_MS,
            }
        )
        tps = []
        for t in topics:
            for p in self._c.list_topics(t, timeout=10).topics[t].partitions:
                high = self._c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                tps.append(TopicPartition(t, p, high))
        self._c.assign(tps)
        self.seen: list[Seen] = []
        self.output_ids: list[tuple[str | None, str]] = []
        """(causation id, the output's own id: ``ce_id`` header or envelope ``id``)"""
        self._raw: list[tuple[Any, bytes | None, float]] = []
        """(headers, value, seconds when seen) not parsed yet: see :meth:`_loop`"""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="latency-reader", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            # woken by the first record: a batch consume waits its whole timeout unless the batch fills,
            # which would note every output up to 5 ms late
            msgs = self._c.consume(1, 0.005)
            if msgs:
                msgs += self._c.consume(4999, 0)
            at = time.time()
            raw = self._raw
            for m in msgs:
                if m.error() is None:
                    raw.append((m.headers(), m.value(), at))
            if len(raw) >= RAW_OUTPUTS_MAX:
                self._parse()

    def _parse(self) -> None:
        """Match the outputs read so far to their inputs. The reader shares the cores with the contender
        it measures, so it only notes what it read while a run goes on (up to ``RAW_OUTPUTS_MAX`` at a
        time) and parses afterwards: parsing every output's envelope as it arrived took ~10 µs of the
        driver's CPU per output, taken from the pipeline under test."""
        raw, self._raw = self._raw, []
        for header_list, value, at in raw:
            headers = cast(dict[str, bytes], dict(header_list or []))
            cause, type_, output_id = identify(headers, value)
            self.seen.append((cause, type_, at))
            self.output_ids.append((cause, output_id))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._c.close()
        self._parse()


def wait_lag_zero(bootstrap: str, topic: str, group: str, timeout_s: float) -> float:
    """Seconds until ``group`` has committed every record of ``topic``; raises past ``timeout_s``."""
    settings = load_settings(kafka={"bootstrap_servers": bootstrap, "input_topic": topic, "group_id": group})
    started = time.monotonic()
    while group_lag(settings) != 0:
        if time.monotonic() - started > timeout_s:
            raise ClickcashError(f"group {group} did not catch up on {topic} within {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def measure(
    bootstrap: str,
    input_topic: str,
    output_topics: list[str],
    group: str,
    *,
    events: int,
    rate_per_s: float,
    customers: int,
    seed: int = 13,
    timeout_s: float = 600,
) -> dict[str, Any]:
    """Send ``events`` at ``rate_per_s`` into ``input_topic`` and measure send -> committed output."""
    reader = LatencyReader(bootstrap, output_topics)
    reader.start()
    try:
        gen = CampaignGenerator(
            loadtest_mix(customers=customers), seed=seed, run_id=f"p{uuid.uuid4().hex[:8]}"
        )
        sent_at, _kinds, _orders, t0 = send_campaign(
            {**kafka_client_config(bootstrap), "linger.ms": 5},
            input_topic,
            gen,
            events,
            rate_per_s=rate_per_s,
        )
        produce_s = time.time() - t0
        drain_s = wait_lag_zero(bootstrap, input_topic, group, timeout_s)
        time.sleep(1.0)  # outputs committed with the last offsets reach the reader
    finally:
        reader.stop()
    return {
        "rate_per_s": round(rate_per_s, 1),
        "events": events,
        "produce_s": round(produce_s, 2),
        "drain_s": round(drain_s, 2),
        **latency_summary(sent_at, reader.seen),
    }


def paced_run(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    bootstrap: str,
    input_topic: str,
    output_topics: list[str],
    group: str,
    events: int,
    rate_per_s: float,
    customers: int,
    warmup: int = 1000,
    timeout_s: float = 600,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start a contender process on an endless input, warm it up, measure a paced run, stop it."""
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            gen = CampaignGenerator(
                loadtest_mix(customers=customers), seed=5, run_id=f"w{uuid.uuid4().hex[:8]}"
            )
            send_campaign({**kafka_client_config(bootstrap), "linger.ms": 5}, input_topic, gen, warmup)
            wait_lag_zero(bootstrap, input_topic, group, timeout_s)
            if proc.poll() is not None:
                raise ClickcashError(f"{' '.join(command[-1:])} exited during its warm-up (see {log_path})")
            log(f"    {events:,} events at {rate_per_s:,.0f}/s")
            return measure(
                bootstrap,
                input_topic,
                output_topics,
                group,
                events=events,
                rate_per_s=rate_per_s,
                customers=customers,
                timeout_s=timeout_s,
            )
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
