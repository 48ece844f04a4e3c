"""Simulated PSPs for a closed-loop load test (``clickcash loadtest --closed-loop``).

Reads ``payment.route_decided`` from the payments topic and answers each, after the PSP's latency, with a
``payment.authorized`` or ``payment.declined`` input event (per-PSP approval rate and decline classes from
:data:`clickcash.loadtest.traffic.campaign.DEFAULT_PSPS` unless overridden). During an outage window a PSP
answers every
authorization with a technical decline (``gateway_error``) after a timeout. Some declined customers update
their payment method a little later (``payment_method.updated``), which makes clickcash route a new
attempt that the simulator answers again: the dunning loop runs for real, up to ``max_attempts``.

The decision logic (:class:`PspSimulator`) is pure; :func:`main` is the process around it.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickcash.loadtest.traffic.campaign import (
    CARD_NETWORKS,
    DEFAULT_PSPS,
    HARD_CODE_WEIGHTS,
    SOFT_CODE_WEIGHTS,
    TECHNICAL_CODE_WEIGHTS,
    PspProfile,
    weighted_choice,
)

log = logging.getLogger("clickcash.loadtest.traffic.psp_sim")


@dataclass(frozen=True)
class Outage:
    psp: str
    start_s: float
    duration_s: float

    def active(self, psp: str, t: float) -> bool:
        return psp == self.psp and self.start_s <= t < self.start_s + self.duration_s


@dataclass(frozen=True)
class PspSimConfig:
    profiles: tuple[PspProfile, ...] = DEFAULT_PSPS
    latency_ms: dict[str, float] = field(default_factory=dict)
    """median answer latency per PSP (lognormal); missing PSPs use ``default_latency_ms``"""
    default_latency_ms: float = 300.0
    latency_sigma: float = 0.5
    outages: tuple[Outage, ...] = ()
    outage_timeout_ms: float = 2_000.0
    method_update_rate: float = 0.35
    method_update_delay_s: float = 2.0
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class Answer:
    delay_s: float
    type: str
    data: dict[str, Any]


def parse_rates(text: str, what: str) -> dict[str, float]:
    """``"adyen=0.9,stripe=0.85"`` -> {"adyen": 0.9, "stripe": 0.85}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{what}: expected psp=value, got {part!r}")
        out[name.strip()] = float(value)
    return out


def parse_outages(text: str) -> tuple[Outage, ...]:
    """``"adyen@30+20,stripe@80+5"``: adyen is down from 30 s for 20 s, stripe from 80 s for 5 s."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            psp, rest = part.split("@", 1)
            start, duration = rest.split("+", 1)
            out.append(Outage(psp.strip(), float(start), float(duration)))
        except ValueError as exc:
            raise ValueError(f"outage: expected psp@start_s+duration_s, got {part!r}") from exc
    return tuple(out)


def build_config(options: dict[str, Any]) -> PspSimConfig:
    approvals = parse_rates(str(options.get("psp_approval") or ""), "psp approval")
    profiles = tuple(
        PspProfile(p.name, p.share, approvals.get(p.name, p.approval_rate), p.hard_share, p.technical_share)
        for p in DEFAULT_PSPS
    )
    latency = str(options.get("psp_latency_ms") or "")
    per_psp = parse_rates(latency, "psp latency") if "=" in latency else {}
    default = float(latency) if latency and "=" not in latency else PspSimConfig.default_latency_ms
    return PspSimConfig(
        profiles=profiles,
        latency_ms=per_psp,
        default_latency_ms=default,
        outages=parse_outages(str(options.get("psp_outage") or "")),
        method_update_rate=float(options.get("method_update_rate", PspSimConfig.method_update_rate)),
    )


class PspSimulator:
    """Answers routed authorizations; pure apart from its random generator."""

    def __init__(self, config: PspSimConfig, seed: int = 11) -> None:
        self.config = config
        self.rng = random.Random(seed)
        self._profiles = {p.name: p for p in config.profiles}

    def _latency_s(self, psp: str) -> float:
        median = self.config.latency_ms.get(psp, self.config.default_latency_ms)
        return median * math.exp(self.rng.gauss(0, self.config.latency_sigma)) / 1000

    def answer(self, route: dict[str, Any], t: float) -> list[Answer]:
        """The PSP's answer to one ``payment.route_decided`` (``data``), ``t`` seconds into the run, and
        the customer's payment-method update that may follow a decline."""
        rng, cfg = self.rng, self.config
        psp = str(route["psp"])
        profile = self._profiles.get(psp, PspProfile(psp, 0.0, 0.9))
        base = {
            "order_id": route["order_id"],
            "customer_id": route["customer_id"],
            "attempt": int(route["attempt"]),
            "psp": psp,
            "amount_cents": route["amount_cents"],
            "currency": route["currency"],
        }
        if any(o.active(psp, t) for o in cfg.outages):
            delay = cfg.outage_timeout_ms / 1000
            return [Answer(delay, "payment.declined", {**base, "decline_code": "gateway_error"})]
        delay = self._latency_s(psp)
        if rng.random() < profile.approval_rate:
            return [Answer(delay, "payment.authorized", base)]
        r = rng.random()
        if r < profile.hard_share:
            code = weighted_choice(rng, HARD_CODE_WEIGHTS)
        elif r < profile.hard_share + profile.technical_share:
            code = weighted_choice(rng, TECHNICAL_CODE_WEIGHTS)
        else:
            code = weighted_choice(rng, SOFT_CODE_WEIGHTS)
        out = [Answer(delay, "payment.declined", {**base, "decline_code": code})]
        if base["attempt"] < cfg.max_attempts and rng.random() < cfg.method_update_rate:
            pm = {
                "type": "card",
                "network": rng.choice(CARD_NETWORKS),
                "token": f"tok_{rng.getrandbits(48):012x}",
            }
            out.append(
                Answer(
                    delay + cfg.method_update_delay_s * (0.5 + rng.random()),
                    "payment_method.updated",
                    {"customer_id": route["customer_id"], "payment_method": pm},
                )
            )
        return out


def _envelope(event_id: str, etype: str, customer: str, data: dict[str, Any], campaign: str | None) -> bytes:
    from clickcash.envelope import structured_event

    return structured_event(
        id=event_id,
        source="loadtest/psp-sim",
        type=etype,
        time=datetime.now(UTC).isoformat(),
        partitionkey=customer,
        extensions={"correlationid": f"{event_id}-corr", "campaignid": campaign, "synthetic": True},
        data=data,
    )


def main(argv: list[str] | None = None) -> int:
    import orjson
    from confluent_kafka import Consumer, Producer, TopicPartition

    from clickcash.events import SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE
    from clickcash.loadtest.locust_run._spec import KIND_HEADER, RUN_INFO_FILE, RunSpec, read_json

    p = argparse.ArgumentParser(prog="python -m clickcash.loadtest.traffic.psp_sim", description=__doc__)
    p.add_argument("folder", help="the run's report folder (holds run.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = Path(args.folder)
    spec = RunSpec.load(folder / "run.json")
    options = dict(spec.extra.get("options", {}))
    sim = PspSimulator(build_config(options), seed=int(options.get("seed", 7)) + 101)
    settings = spec.settings()
    k = settings.kafka
    consumer = Consumer(
        {
            **k.client_config(),
            "group.id": f"clickcash-loadtest-psp-{spec.run_id}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 20,
        }
    )
    meta = consumer.list_topics(k.payments_topic, timeout=10).topics[k.payments_topic]
    tps = []
    for part in sorted(meta.partitions):
        _, high = consumer.get_watermark_offsets(TopicPartition(k.payments_topic, part), timeout=10)
        tps.append(TopicPartition(k.payments_topic, part, high))
    consumer.assign(tps)
    producer = Producer({**k.client_config(), "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    prefix = spec.key_prefix
    due: list[tuple[float, int, str, str, dict[str, Any], str | None]] = []
    seq = 0
    started = time.time()
    t0: float | None = None
    last_route = time.monotonic()
    stop_deadline: float | None = None
    answered: dict[str, int] = {}
    while True:
        now = time.time()
        if t0 is None:
            info = read_json(folder / RUN_INFO_FILE)
            if info and info.get("t0"):
                t0 = float(info["t0"])
        for m in consumer.consume(1000, 0.02):
            if m.error() is not None or not (m.key() or b"").startswith(prefix):
                continue
            ev = orjson.loads(m.value() or b"{}")
            if ev.get("type") != "payment.route_decided":
                continue
            last_route = time.monotonic()
            for a in sim.answer(ev["data"], now - (t0 or started)):
                seq += 1
                heapq.heappush(
                    due,
                    (now + a.delay_s, seq, a.type, ev["data"]["customer_id"], a.data, ev.get("campaignid")),
                )
        now = time.time()
        while due and due[0][0] <= now:
            _, n, etype, customer, data, campaign = heapq.heappop(due)
            eid = f"{spec.run_id}-psp{os.getpid():x}-e{n:09d}"
            producer.produce(
                k.input_topic,
                _envelope(eid, etype, customer, data, campaign),
                customer.encode(),
                headers=[(KIND_HEADER, etype.encode()), (SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE)],
            )
            answered[etype] = answered.get(etype, 0) + 1
        producer.poll(0)
        if stop.is_set():
            stop_deadline = stop_deadline or time.monotonic() + 45
            # answer what is in flight, including attempts routed after our own method updates
            if (not due and time.monotonic() - last_route > 3) or time.monotonic() > stop_deadline:
                break
    left = producer.flush(30)
    consumer.close()
    log.info("answered %s; %d answers dropped, %d undelivered", answered, len(due), left)
    return 0


if __name__ == "__main__":
    sys.exit(main())
