"""Push a campaign through a running clickcash and measure what came out.

The main job of the README's first command, and the engine of ``clickcash bench``: produce generated
events (optionally paced), wait until the consumer group has committed everything, read the committed
outputs, match them to inputs by ``causationid`` and report counts, throughput and latency.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from confluent_kafka import Producer

from clickcash.cluster.offsets import RDKAFKA_LOG, GroupOffsets
from clickcash.cluster.outputs import OutputReader
from clickcash.config.settings import Settings
from clickcash.errors import ClickcashError, ServiceError
from clickcash.events import SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE
from clickcash.loadtest.traffic.campaign import (
    CampaignGenerator,
    CampaignMix,
    EventSource,
    PreparedEvents,
    decisions_line,
)

SYNTHETIC_HEADERS: list[tuple[str, str | bytes | None]] = [(SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE)]
"""the generated campaign is synthetic traffic: marked on the record as in its envelope"""


@dataclass
class CampaignReport:
    events: int
    inputs_by_kind: dict[str, int]
    outputs_by_type: dict[str, int]
    dead_letters_by_reason: dict[str, int]
    elapsed_s: float
    produce_s: float
    events_per_s: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    duplicate_output_ids: int = 0
    orders_without_decision: int = 0

    def render(self, mix: str | None = None, *, paced: bool = False) -> str:
        """The whole report; ``paced``: the input was paced, so the latency is not a backlog's."""
        backlog = "" if paced else " (with the backlog flat-out input builds)"
        lines = [
            decisions_line(mix, self.outputs_by_type),
            f"events sent:        {self.events}  "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.inputs_by_kind.items())),
            "outputs by type:    " + ", ".join(f"{k}={v}" for k, v in sorted(self.outputs_by_type.items())),
            "dead letters:       "
            + (", ".join(f"{k}={v}" for k, v in sorted(self.dead_letters_by_reason.items())) or "none"),
            f"throughput:         {self.events_per_s:,.0f} events/s end to end "
            f"({self.events} events in {self.elapsed_s:.2f} s; producing took {self.produce_s:.2f} s)",
            f"latency send->committed output{backlog}: "
            + ", ".join(f"{k} {v:,.1f} ms" for k, v in self.latency_ms.items()),
            f"checks:             duplicate output ids={self.duplicate_output_ids}, "
            f"orders without a decision={self.orders_without_decision}",
        ]
        return "\n".join(lines)

    def render_latency(self) -> str:
        """Latency and checks only: for a paced run, whose throughput is the pace."""
        return "\n".join(
            [
                "latency send->committed output: "
                + ", ".join(f"{k} {v:,.1f} ms" for k, v in self.latency_ms.items()),
                f"checks:             duplicate output ids={self.duplicate_output_ids}, "
                f"orders without a decision={self.orders_without_decision}",
            ]
        )


class SentCampaign(NamedTuple):
    """What :func:`send_campaign` sent."""

    sent_at: dict[str, float]
    """wall-clock seconds when each event was sent, by event id (the first event and duplicates left out)"""
    kinds: Counter[str]
    orders: list[str]
    """event ids of the orders placed"""
    started_at: float
    """wall-clock seconds when sending began: after a paced run's events were prepared, before the producer
    connected. A caller's produce time and throughput are measured from here."""


def produce_events(
    settings: Settings,
    generator: EventSource,
    events: int,
    *,
    rate_per_s: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> SentCampaign:
    """Produce ``events`` generated events to the settings' input topic (see :func:`send_campaign`)."""
    return send_campaign(
        {**settings.kafka.client_config(), "linger.ms": 5},
        settings.kafka.input_topic,
        generator,
        events,
        rate_per_s=rate_per_s,
        progress=progress,
    )


def send_campaign(
    producer_config: dict[str, Any],
    topic: str,
    generator: EventSource,
    events: int,
    *,
    rate_per_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 5000,
    flush_timeout_s: float = 60,
) -> SentCampaign:
    """Produce ``events`` generated events (idempotent, acks=all) to ``topic``, paced at ``rate_per_s``
    or flat out. Raises ``ServiceError`` if any record was not delivered.

    A paced run generates its events before its clock starts (:class:`PreparedEvents`): generating one is
    tens of µs of Python, which would run on the cores the measured pipeline shares.

    The first event is delivered before the clock starts and is not timed: a new producer first connects
    and, being idempotent, obtains its producer id from the broker, which took up to a second here
    (retried while the coordinator loads). Events queued meanwhile reached the broker up to a second after
    they were stamped, so a paced run's first second measured the client's start, not the pipeline."""
    if rate_per_s:
        generator = PreparedEvents(generator, events)
    started_at = time.time()
    producer = Producer({**producer_config, "enable.idempotence": True, "acks": "all", "logger": RDKAFKA_LOG})
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    sent_at: dict[str, float] = {}
    kinds: Counter[str] = Counter()
    orders: list[str] = []
    start = time.monotonic()
    for i in range(events):
        if rate_per_s:
            ahead = start + i / rate_per_s - time.monotonic()
            # a sleep per event (one wake-up every 175 µs at 5,714/s) cost this process ~70 µs of CPU per
            # event, taken from the pipeline it measures on the same cores; sends due within 1 ms go out
            # together (~40 µs), each stamped when it is sent
            if ahead > 0.001:
                time.sleep(ahead)
        ev = generator.next_event()
        kinds[ev.kind] += 1
        if ev.event_id is not None and ev.kind != "duplicate":
            if i > 0:
                sent_at[ev.event_id] = time.time()
            if ev.kind == "order.placed":
                orders.append(ev.event_id)
        while True:
            try:
                producer.produce(topic, ev.value, ev.key, headers=SYNTHETIC_HEADERS, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if i == 0:
            if producer.flush(flush_timeout_s) != 0:
                raise ServiceError("kafka", f"first input record not delivered: {failures[:3]}")
            start = time.monotonic() - (1 / rate_per_s if rate_per_s else 0.0)
        if progress and (i + 1) % progress_every == 0:
            progress(i + 1)
    if producer.flush(flush_timeout_s) != 0 or failures:
        raise ServiceError("kafka", f"input not fully delivered: {failures[:3]}")
    return SentCampaign(sent_at, kinds, orders, started_at)


def wait_drained(
    settings: Settings, timeout_s: float, progress: Callable[[int | None], None] | None = None
) -> None:
    """Wait until the consumer group has committed every input offset."""
    deadline = time.monotonic() + timeout_s
    with GroupOffsets(settings) as offsets:
        lag = offsets.lag()
        while time.monotonic() < deadline:
            lag = offsets.lag()
            if progress:
                progress(lag)
            if lag == 0:
                return
            time.sleep(0.5)
    raise ClickcashError(f"input not drained after {timeout_s:.0f} s (lag {lag})")


def run_campaign(
    settings: Settings,
    events: int,
    *,
    mix: CampaignMix | None = None,
    seed: int = 7,
    rate_per_s: float | None = None,
    timeout_s: float = 600,
    log: Callable[[str], None] = print,
) -> CampaignReport:
    run_id = f"r{uuid.uuid4().hex[:8]}"
    gen = CampaignGenerator(mix or CampaignMix(), seed=seed, run_id=run_id)
    reader = OutputReader(settings, from_end=True)
    stop_reading = threading.Event()

    def read_continuously() -> None:
        while not stop_reading.is_set():
            reader.poll(0.005)

    # a dedicated thread reads outputs as they commit, so seen_at is when they became visible
    thread = threading.Thread(target=read_continuously, name="output-reader", daemon=True)
    thread.start()
    try:
        sent_at, kinds, orders, t0 = produce_events(
            settings,
            gen,
            events,
            rate_per_s=rate_per_s,
            progress=lambda n: log(f"  produced {n:,}/{events:,} events"),
        )
        produce_s = time.time() - t0
        last_lag: int | None = -1
        deadline = time.monotonic() + timeout_s
        with GroupOffsets(settings) as offsets:
            while True:
                lag = offsets.lag()
                if lag != last_lag:
                    log(f"  waiting for commits: lag {lag if lag is not None else '?'}")
                    last_lag = lag
                if lag == 0:
                    break
                if time.monotonic() > deadline:
                    raise ClickcashError(f"input not drained after {timeout_s:.0f} s (lag {lag})")
                time.sleep(0.25)
        idle_since, seen = time.monotonic(), len(reader.records)
        while time.monotonic() - idle_since < 2.0:
            time.sleep(0.1)
            if len(reader.records) != seen:
                idle_since, seen = time.monotonic(), len(reader.records)
    finally:
        stop_reading.set()
        thread.join(10)
        reader.close()
    mine = run_id.encode()
    records = [r for r in reader.records if r.key is not None and r.key.startswith(mine)]
    outputs = Counter(r.type for r in records)
    dead: Counter[str] = Counter()
    for r in records:
        if r.type == "clickcash.dead_letter":
            dead[orjson.loads(r.headers["clickcash_reason"])["code"]] += 1
    ids = Counter(r.id for r in records)
    decided = {r.causationid for r in records if r.type in ("order.accepted", "order.rejected")}
    latencies = sorted(
        (r.seen_at - sent_at[r.causationid]) * 1000 for r in records if r.causationid in sent_at
    )
    last_seen = max((r.seen_at for r in records), default=time.time())
    elapsed = max(last_seen - t0, 1e-9)
    lat: dict[str, float] = {}
    if latencies:
        q = statistics.quantiles(latencies, n=100, method="inclusive")
        lat = {"p50": q[49], "p99": q[98], "max": latencies[-1]}
    return CampaignReport(
        events=events,
        inputs_by_kind=dict(kinds),
        outputs_by_type=dict(outputs),
        dead_letters_by_reason=dict(dead),
        elapsed_s=elapsed,
        produce_s=produce_s,
        events_per_s=events / elapsed,
        latency_ms=lat,
        duplicate_output_ids=sum(c - 1 for c in ids.values() if c > 1),
        orders_without_decision=sum(1 for o in orders if o not in decided),
    )
