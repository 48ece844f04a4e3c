"""The load test's measuring process: reads the run's inputs and outputs, samples lag, writes the summary.

Run as its own process (``python -m clickcash.loadtest.locust_run.monitor REPORT_DIR``) by ``clickcash
loadtest``, so its
timestamps are not disturbed by the load generators. It

- starts at the current end of the input and output topics (earlier runs are not read) and keeps the
  records whose key starts with the run id: inputs (send time = the CloudEvent ``time``, or the Kafka
  create time for records that carry none) and outputs (read_committed, seen time = when consumed);
- matches them (:class:`clickcash.loadtest.analysis.matcher.Matcher`), and samples the app group's lag and
committed offsets
  once a second from a separate thread;
- writes ``status.json`` every second; once ``stop`` appears in the report folder it reads until the run
  has drained (group lag 0, every order decided, nothing new for ``idle_s``) or ``drain_timeout_s`` passed,
  then writes ``summary.json`` and ``timeline.csv`` and exits.
"""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import sys
import threading
import time
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from clickcash.cluster.offsets import GroupOffsets
from clickcash.cluster.outputs import COMMITTED_FETCH_WAIT_MS
from clickcash.config.settings import Settings
from clickcash.envelope import DEAD_LETTER_TYPE
from clickcash.errors import ServiceError
from clickcash.group_offsets import total_lag
from clickcash.loadtest.analysis.matcher import MALFORMED_KIND, RESENT_KIND, Matcher
from clickcash.loadtest.analysis.summary import LagSample, TimelineRow, build_summary, latency_stats
from clickcash.loadtest.locust_run._spec import (
    KIND_HEADER,
    RUN_INFO_FILE,
    STATUS_FILE,
    STOP_FILE,
    SUMMARY_FILE,
    TIMELINE_FILE,
    RunSpec,
    read_json,
    write_json_atomic,
)
from clickcash.loadtest.traffic.shapes import RateSchedule
from clickcash.offset_retry import RetryBudget

log = logging.getLogger("clickcash.loadtest.locust_run.monitor")


class LagSampler:
    """The app group's lag on the input topic and its committed offsets, sampled every ``interval_s``
    through :class:`clickcash.cluster.offsets.GroupOffsets`; a sample that cannot be read within a short retry
    budget
    (a coordinator moving) is recorded as unknown and the next one tries again."""

    def __init__(self, settings: Settings, group_id: str, interval_s: float = 1.0) -> None:
        self._offsets = GroupOffsets(
            settings, group_id=group_id, budget=RetryBudget(budget_s=interval_s * 2), call_timeout_s=5.0
        )
        self._interval = interval_s
        self.samples: list[LagSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self.partitions = len(self._offsets.partitions())

    def sample(self) -> LagSample:
        at = time.time()
        try:
            committed = self._offsets.committed()
            highs = self._offsets.ends()
        except ServiceError as exc:
            log.debug("lag sample failed: %s", exc)
            return LagSample(at, None, None)
        lag = total_lag(committed, highs)
        total = sum(committed.get(p) or 0 for p in highs) if lag is not None else None
        return LagSample(at, lag, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.samples.append(self.sample())
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._offsets.close()

    @property
    def last(self) -> LagSample | None:
        return self.samples[-1] if self.samples else None


def _parse_input(value: bytes | None, fallback: float) -> tuple[str | None, str | None, float]:
    """(event id, type, send time) of an input; the send time is its CloudEvent ``time``."""
    try:
        ev = orjson.loads(value or b"")
        return str(ev["id"]), ev.get("type"), datetime.fromisoformat(ev["time"]).timestamp()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None, None, fallback


class Monitor:
    def __init__(self, spec: RunSpec, folder: Path) -> None:
        self.spec = spec
        self.folder = folder
        self.settings = spec.settings()
        k = self.settings.kafka
        self.input_topic = k.input_topic
        self.output_topics = [k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic]
        self.matcher = Matcher()
        self.lag = LagSampler(self.settings, k.group_id)
        self._prefix = spec.key_prefix
        self._c = Consumer(
            {
                **k.client_config(),
                "group.id": f"clickcash-loadtest-monitor-{spec.run_id}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": COMMITTED_FETCH_WAIT_MS,
                "queued.max.messages.kbytes": 65536,
            }
        )
        self.start_offsets: dict[str, dict[int, int]] = {}
        self.started_at = time.time()
        self._last_new = time.monotonic()
        self._stop_signal = threading.Event()

    def assign_at_end(self) -> None:
        """Start every topic at its current end: only this run's records are read."""
        tps = []
        for topic in [self.input_topic, *self.output_topics]:
            meta = self._c.list_topics(topic, timeout=10).topics[topic]
            offsets = {}
            for p in sorted(meta.partitions):
                _, high = self._c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                offsets[p] = high
                tps.append(TopicPartition(topic, p, high if high >= 0 else OFFSET_END))
            self.start_offsets[topic] = offsets
        self._c.assign(tps)

    def poll(self, timeout_s: float = 0.005) -> int:
        # consume() returns at the timeout unless the batch is full, stamping everything with the time it
        # returns: a short timeout keeps that error below 5 ms (a 100 ms one beats against the commits)
        msgs = self._c.consume(5000, timeout_s)
        now = time.time()
        n = 0
        for m in msgs:
            if m.error() is not None:
                continue
            key = m.key()
            if key is None or not key.startswith(self._prefix):
                continue
            n += 1
            if m.topic() == self.input_topic:
                self._input(m, now)
            else:
                self._output(m, now)
        if n:
            self._last_new = time.monotonic()
        return n

    def _input(self, m: Any, now: float) -> None:
        headers = dict(m.headers() or [])
        kind = (headers.get(KIND_HEADER) or b"").decode() or None
        _, ts_ms = m.timestamp()
        create_time = ts_ms / 1000 if ts_ms and ts_ms > 0 else now
        if kind is None:
            # not from the load generator: the app's own commands for the run's customers (dunning timers)
            eid, etype, sent = _parse_input(m.value(), create_time)
            self.matcher.add_input(eid, etype or "unknown", sent, m.partition(), m.offset(), generated=False)
            return
        if kind in (MALFORMED_KIND, RESENT_KIND):
            eid = _parse_input(m.value(), create_time)[0] if kind == RESENT_KIND else None
            self.matcher.add_input(eid, kind, create_time, m.partition(), m.offset())
            return
        eid, _, sent = _parse_input(m.value(), create_time)
        self.matcher.add_input(eid, kind, sent, m.partition(), m.offset())

    def _output(self, m: Any, now: float) -> None:
        headers = dict(m.headers() or [])
        if "ce_id" in headers:
            cause = headers.get("ce_causationid")
            position = None
            if headers.get("clickcash_source_topic", b"").decode() == self.input_topic:
                position = (
                    int(headers["clickcash_source_partition"]),
                    int(headers["clickcash_source_offset"]),
                )
            try:
                code = str(orjson.loads(headers["clickcash_reason"])["code"])
            except (KeyError, TypeError, orjson.JSONDecodeError):
                code = "unknown"
            self.matcher.add_output(
                headers["ce_id"].decode(),
                headers.get("ce_type", DEAD_LETTER_TYPE.encode()).decode(),
                cause.decode() if cause else None,
                now,
                source_position=position,
                dead_letter_code=code,
            )
            return
        ev = orjson.loads(m.value())
        self.matcher.add_output(ev["id"], ev["type"], ev.get("causationid"), now)

    # --- status and the end -----------------------------------------------------------------------

    def status(self, phase: str) -> dict[str, Any]:
        now = time.time()
        window = 5.0
        ins = _count_since(self.matcher.input_sent_at, now - window - 1, now - 1)
        outs = _count_since(self.matcher.output_seen_at, now - window - 1, now - 1)
        recent = []
        for s in reversed(self.matcher.samples):
            if s.seen_at < now - window:
                break
            recent.append(s.latency_ms)
        last = self.lag.last
        return {
            "at": now,
            "state": phase,
            "inputs": self.matcher.input_count,
            "outputs": self.matcher.output_count,
            "input_rate": round(ins / window, 1),
            "output_rate": round(outs / window, 1),
            "lag": None if last is None else last.lag,
            "latency_ms_5s": latency_stats(recent),
            "undecided_orders": self.matcher.undecided_orders(),
            "duplicate_outputs": sum(self.matcher.duplicate_outputs.values()),
        }

    def drained(self) -> bool:
        """The group has committed everything (its lag is at most one transaction marker per partition,
        which committed offsets never pass, and its offsets stopped moving), every order is decided, and
        nothing new arrived for ``idle_s``."""
        if not self.matcher.complete() or time.monotonic() - self._last_new < self.spec.idle_s:
            return False
        recent = [s for s in self.lag.samples if s.at >= time.time() - self.spec.idle_s]
        return (
            len(recent) >= 2
            and all(s.lag is not None and s.lag <= self.lag.partitions for s in recent)
            and len({s.committed for s in recent}) == 1
        )

    def run(self) -> dict[str, Any]:
        self.assign_at_end()
        self.lag.start()
        status_path = self.folder / STATUS_FILE
        stop_path = self.folder / STOP_FILE
        write_json_atomic(status_path, {**self.status("ready"), "start_offsets": self.start_offsets})
        next_status = time.monotonic() + 1.0
        stopping_since: float | None = None
        while True:
            self.poll()
            if stopping_since is None and (stop_path.exists() or self._stop_signal.is_set()):
                stopping_since = time.monotonic()
                log.info("load ended: draining")
            if time.monotonic() >= next_status:
                next_status += 1.0
                write_json_atomic(status_path, self.status("draining" if stopping_since else "running"))
            if stopping_since is not None:
                if self.drained():
                    break
                if time.monotonic() - stopping_since > self.spec.drain_timeout_s:
                    log.warning("not drained after %.0f s: summarising anyway", self.spec.drain_timeout_s)
                    break
        self.lag.samples.append(self.lag.sample())
        self.lag.stop()
        self._c.close()
        summary = self.summarise()
        write_json_atomic(status_path, {**self.status("done"), "summary": SUMMARY_FILE})
        return summary

    def summarise(self) -> dict[str, Any]:
        info = read_json(self.folder / RUN_INFO_FILE) or {}
        first_input = min(self.matcher.input_sent_at, default=self.started_at)
        t0 = float(info.get("t0") or first_input)
        schedule = RateSchedule.from_dict(self.spec.schedule)
        summary, timeline = build_summary(
            self.matcher,
            self.lag.samples,
            t0,
            schedule,
            run_id=self.spec.run_id,
            end_at=time.time(),
            load_ended_at=info.get("ended_at"),
        )
        summary["start_offsets"] = self.start_offsets
        summary["topics"] = {"input": self.input_topic, "outputs": self.output_topics}
        summary["group_id"] = self.settings.kafka.group_id
        summary["mix"] = self.spec.extra.get("options", {}).get("mix")
        summary["drained"] = self.drained()
        write_json_atomic(self.folder / SUMMARY_FILE, summary)
        write_timeline(self.folder / TIMELINE_FILE, timeline)
        return summary

    def request_stop(self) -> None:
        self._stop_signal.set()


def _count_since(times: list[float], start: float, end: float) -> int:
    """How many of the (roughly time-ordered) ``times`` fall in [start, end), scanning from the end."""
    n = 0
    for i in range(len(times) - 1, max(-1, len(times) - 200_000), -1):
        t = times[i]
        if t < start - 5:
            break
        if start <= t < end:
            n += 1
    return n


def write_timeline(path: Path, rows: list[TimelineRow]) -> None:
    names = [f.name for f in fields(TimelineRow)]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})


def read_timeline(path: Path) -> list[TimelineRow]:
    def num(v: str, cast: type) -> Any:
        return None if v == "" else cast(v)

    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            rows.append(
                TimelineRow(
                    t=int(r["t"]),
                    phase=r["phase"],
                    target_rate=num(r["target_rate"], float),
                    input_rate=int(r["input_rate"]),
                    output_rate=int(r["output_rate"]),
                    processed_rate=num(r["processed_rate"], float),
                    lag=num(r["lag"], int),
                    p50_ms=num(r["p50_ms"], float),
                    p99_ms=num(r["p99_ms"], float),
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clickcash.loadtest.locust_run.monitor", description=__doc__)
    p.add_argument("folder", help="the run's report folder (holds run.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = Path(args.folder)
    monitor = Monitor(RunSpec.load(folder / "run.json"), folder)
    signal.signal(signal.SIGTERM, lambda *_: monitor.request_stop())
    signal.signal(signal.SIGINT, lambda *_: monitor.request_stop())
    monitor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
