"""Locust: campaign traffic into clickcash's input topic, following a steady, step or spike shape.

Run it through ``clickcash loadtest`` (which also measures end-to-end latency and lag and writes the report),
or directly with Locust, e.g. ``locust -f loadtest/locust_run/locustfile.py --headless --shape spike --rate
300``
(``--web`` UI: leave out ``--headless``; scale out with ``--processes N`` or ``--master``/``--worker``).

- Every Locust user is one slice of the campaign publishing ``--user-rate`` events/s, paced by its own clock;
  the shape (:class:`CampaignShape`) sets the number of users from the schedule's target rate every second.
- One idempotent producer per process (:class:`Publisher`), shared by the process's users. ``produce`` never
  waits for delivery: a greenlet serves the delivery reports every 5 ms and reports each as a Locust
  request event (type ``produce``, name = event kind, response time = produce -> broker ack).
- Each input's CloudEvent ``time`` is set right before produce (the event is generated then), so it is the
  send time the monitor measures latency from; a ``loadtest-kind`` header names what the generator made.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
from confluent_kafka import KafkaException, Producer
from locust import LoadTestShape, User, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from clickcash.config.settings import load_settings
from clickcash.events import SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE
from clickcash.loadtest.locust_run._spec import KIND_HEADER, LOCUST_TOTALS_FILE, write_json_atomic
from clickcash.loadtest.locust_run.options import (
    ALL_OPTIONS,
    add_options,
    campaign_mix,
    new_run_id,
    shape_params,
)
from clickcash.loadtest.traffic.campaign import CampaignGenerator
from clickcash.loadtest.traffic.shapes import RateSchedule, default_user_rate, pacing_due
from clickcash.loadtest.traffic.shapes import tick as shape_tick

log = logging.getLogger("loadtest")
_DEFAULT_RUN_ID = new_run_id()


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    add_options(parser, ALL_OPTIONS, locust=True)


def _run_id(opts: Any) -> str:
    return str(getattr(opts, "run_id", "") or _DEFAULT_RUN_ID)


def _schedule(opts: Any) -> RateSchedule:
    return shape_params(opts).schedule()


def _user_rate(opts: Any, schedule: RateSchedule) -> float:
    return float(getattr(opts, "user_rate", 0) or 0) or default_user_rate(schedule)


class Publisher:
    """The process's one producer and campaign generator."""

    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options
        assert opts is not None
        kafka: dict[str, Any] = {}
        if opts.kafka_bootstrap:
            kafka["bootstrap_servers"] = opts.kafka_bootstrap
        settings = load_settings(kafka=kafka) if kafka else load_settings()
        self.topic = opts.input_topic or settings.kafka.input_topic
        self.env = environment
        self.producer = Producer(
            {
                **settings.kafka.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 512 * 1024,
                "client.id": f"clickcash-loadtest-{os.getpid()}",
            }
        )
        run_id = _run_id(opts)
        # event ids must be unique across processes and machines; customers are shared by all of them
        proc = hashlib.blake2b(f"{socket.gethostname()}:{os.getpid()}".encode(), digest_size=3).hexdigest()
        seed = int(opts.seed) * 1_000_003 + int(proc, 16)
        self.generator = CampaignGenerator(
            campaign_mix(opts), seed=seed, run_id=f"{run_id}-{proc}", customer_prefix=run_id
        )
        self.pending = 0
        self.queue_full = 0
        self._closing = False
        self._server = gevent.spawn(self._serve)

    def publish(self, n: int) -> None:
        fire = self.env.events.request.fire
        for _ in range(n):
            ev = self.generator.next_event(datetime.now(UTC))
            started = time.perf_counter()
            kind, size = ev.kind, len(ev.value)

            def on_delivery(
                err: Any, _msg: Any, kind: str = kind, size: int = size, t: float = started
            ) -> None:
                self.pending -= 1
                fire(
                    request_type="produce",
                    name=kind,
                    response_time=(time.perf_counter() - t) * 1000,
                    response_length=size,
                    exception=None if err is None else KafkaException(err),
                    context={},
                )

            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        ev.value,
                        ev.key,
                        headers=[(KIND_HEADER, kind.encode()), (SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE)],
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    # librdkafka's queue is full: the broker is the bottleneck, not this process
                    self.queue_full += 1
                    self.producer.poll(0)
                    gevent.sleep(0.005)
            self.pending += 1

    def _serve(self) -> None:
        while not self._closing:
            self.producer.poll(0)
            gevent.sleep(0.005)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Deliver what is queued, serving delivery reports without blocking the event loop."""
        deadline = time.monotonic() + timeout_s
        while len(self.producer) > 0 and time.monotonic() < deadline:
            self.producer.poll(0)
            gevent.sleep(0.01)
        self.producer.poll(0)
        return len(self.producer)

    def close(self) -> None:
        left = self.flush()
        self._closing = True
        if left:
            log.warning("%d events not delivered at exit", left)
        if self.queue_full:
            log.warning("the producer queue was full %d times", self.queue_full)


_publisher: Publisher | None = None


def publisher(environment: Environment) -> Publisher:
    global _publisher
    if _publisher is None:
        _publisher = Publisher(environment)
    return _publisher


@events.test_stop.add_listener
def _flush_on_stop(environment: Environment, **_kw: Any) -> None:
    if _publisher is not None:
        _publisher.flush()


@events.quitting.add_listener
def _close_on_quit(environment: Environment, **_kw: Any) -> None:
    if _publisher is not None:
        _publisher.close()
    # Locust rewrites its _stats.csv once a second, so at exit it can miss the last deliveries: the final
    # totals go next to --run-info (the master's, or a single process's)
    runner, opts = environment.runner, environment.parsed_options
    path = getattr(opts, "run_info", "") if opts is not None else ""
    if path and runner is not None and not isinstance(runner, WorkerRunner):
        total = runner.stats.total
        write_json_atomic(
            Path(path).with_name(LOCUST_TOTALS_FILE),
            {"requests": total.num_requests, "failures": total.num_failures},
        )


class CampaignTraffic(User):
    """One slice of the campaign: ``--user-rate`` events/s of orders, payment outcomes, card updates,
    re-sent duplicates and malformed records, for customers drawn hot and cold."""

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self._rate = _user_rate(opts, _schedule(opts))
        self._max_burst = max(1, int(self._rate / 2))
        self._publisher = publisher(self.environment)
        # users spawned together must not publish in lockstep: each starts at a random phase of its period
        self._start = time.monotonic() - random.random() / self._rate
        self._sent = 0

    def wait_time(self) -> float:
        next_at = self._start + (self._sent + 1) / self._rate
        return min(0.1, max(0.02, next_at - time.monotonic()))

    @task
    def publish(self) -> None:
        due, given_up = pacing_due(time.monotonic() - self._start, self._rate, self._sent, self._max_burst)
        self._sent += due + given_up
        if due:
            self._publisher.publish(due)


class CampaignShape(LoadTestShape):
    """Users = target rate / user rate, from the schedule of ``--shape``; writes ``--run-info`` (t0/end)."""

    def __init__(self) -> None:
        super().__init__()
        self._schedule: RateSchedule | None = None
        self._t0: float | None = None

    def _info(self, **data: Any) -> None:
        assert self.runner is not None
        path = getattr(self.runner.environment.parsed_options, "run_info", "")
        if path and self._t0 is not None:
            write_json_atomic(Path(path), {"t0": self._t0, **data})

    def reset_time(self) -> None:
        super().reset_time()
        self._t0 = None

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        opts = self.runner.environment.parsed_options
        if self._schedule is None:
            self._schedule = _schedule(opts)
        run_time = self.get_run_time()
        if self._t0 is None:
            self._t0 = time.time() - run_time
            self._info(run_id=_run_id(opts), schedule=self._schedule.to_dict())
        result = shape_tick(self._schedule, run_time, _user_rate(opts, self._schedule))
        if result is None:
            self._info(run_id=_run_id(opts), schedule=self._schedule.to_dict(), ended_at=time.time())
        return result
