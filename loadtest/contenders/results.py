"""The arithmetic of ``clickcash compare``: completeness verdicts, ratios, targets, profile stages, tables.

Pure (no Kafka, Redis or Ray): the orchestrator feeds it counts and figures, the unit tests feed it made-up
ones.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from clickcash.envelope import DEAD_LETTER_TYPE

DECISION_TYPES = frozenset({"order.accepted", "order.rejected"})
TIMER_SOURCE_PREFIX = "timer:"
"""causation ids of the app's own dunning timer commands: not part of the pre-produced input"""


@dataclass
class InputManifest:
    """What was pre-produced: the yardstick every contender's outputs are held against."""

    events: int
    end_offsets: dict[int, int]
    by_kind: dict[str, int]
    order_event_ids: set[str]
    """ids of the distinct (valid, first-sent) order.placed events"""
    malformed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "end_offsets": self.end_offsets,
            "by_kind": self.by_kind,
            "distinct_orders": len(self.order_event_ids),
            "malformed": self.malformed,
        }


@dataclass
class OutputTally:
    """Counts of one contender's committed outputs, built one record at a time."""

    records: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    """order event id -> number of order decisions caused by it"""
    ids: set[str] = field(default_factory=set)
    duplicate_ids: int = 0
    timer_outputs: int = 0
    _digest: int = 0

    def add(self, output_id: str, type_: str, causation_id: str | None) -> None:
        if causation_id is not None and causation_id.startswith(TIMER_SOURCE_PREFIX):
            self.timer_outputs += 1  # written because of the app's own timer commands, not the input
            return
        self.records += 1
        self.by_type[type_] += 1
        if output_id in self.ids:
            self.duplicate_ids += 1
        else:
            self.ids.add(output_id)
            self._digest ^= int.from_bytes(hashlib.blake2b(output_id.encode(), digest_size=8).digest())
        if type_ in DECISION_TYPES and causation_id is not None:
            self.decisions[causation_id] += 1

    @property
    def id_digest(self) -> str:
        """Order-independent digest of the distinct output ids: equal digests = the same set of outputs."""
        return f"{self._digest:016x}"


@dataclass
class Completeness:
    ok: bool
    problems: list[str]
    figures: dict[str, Any]


def check_full(manifest: InputManifest, tally: OutputTally) -> Completeness:
    """A contender doing clickcash's work: every order decided exactly once, every malformed record
    dead-lettered, no output id twice."""
    decided = set(tally.decisions)
    missing = len(manifest.order_event_ids - decided)
    stray = len(decided - manifest.order_event_ids)
    repeated = sum(1 for n in tally.decisions.values() if n > 1)
    dead = tally.by_type.get(DEAD_LETTER_TYPE, 0)
    problems = []
    if missing:
        problems.append(f"{missing} orders without a decision")
    if repeated:
        problems.append(f"{repeated} orders decided more than once")
    if stray:
        problems.append(f"{stray} decisions for orders not in the input")
    if dead != manifest.malformed:
        problems.append(f"{dead} dead letters for {manifest.malformed} malformed records")
    if tally.duplicate_ids:
        problems.append(f"{tally.duplicate_ids} duplicate output ids")
    return Completeness(
        not problems,
        problems,
        {
            "outputs": tally.records,
            "outputs_by_type": dict(sorted(tally.by_type.items())),
            "orders": len(manifest.order_event_ids),
            "orders_decided": len(decided & manifest.order_event_ids),
            "dead_letters": dead,
            "duplicate_output_ids": tally.duplicate_ids,
            "timer_outputs_ignored": tally.timer_outputs,
            "output_id_digest": tally.id_digest,
        },
    )


def check_passthrough(manifest: InputManifest, tally: OutputTally) -> Completeness:
    """The passthrough writes one output per input record (id = partition:offset)."""
    problems = []
    if len(tally.ids) != manifest.events:
        problems.append(f"{len(tally.ids)} distinct outputs for {manifest.events} input records")
    if tally.duplicate_ids:
        problems.append(f"{tally.duplicate_ids} duplicate output ids (at-least-once re-sends)")
    return Completeness(
        not problems,
        problems,
        {"outputs": tally.records, "distinct": len(tally.ids), "duplicate_output_ids": tally.duplicate_ids},
    )


def same_outputs(completeness: Mapping[str, Completeness]) -> bool | None:
    """True when every full contender wrote exactly the same set of output ids (None: fewer than two)."""
    digests = {
        c.figures["output_id_digest"] for c in completeness.values() if "output_id_digest" in c.figures
    }
    n = sum(1 for c in completeness.values() if "output_id_digest" in c.figures)
    return None if n < 2 else len(digests) == 1


# --- ratios and targets ------------------------------------------------------------------------------

RATIO_TARGETS = (("passthrough", 0.5), ("handrolled", 3.0), ("quix", 1.5))
P99_TARGET_MS = 100.0
LIGHT_P50_TARGET_MS = 30.0
LIGHT_RATE_PER_S = 200.0
"""the light fixed rate every contender's latency is also measured at"""
MEMORY_GROWTH_TARGET_PCT = 5.0


def ratios(rates: Mapping[str, float], subject: str = "clickcash") -> dict[str, float]:
    """``subject``'s events/s over each other contender's."""
    mine = rates.get(subject)
    if not mine:
        return {}
    return {
        f"{subject}/{other}": round(mine / rate, 3)
        for other, rate in rates.items()
        if other != subject and rate
    }


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    value: str
    met: bool | None
    """None: not measured in this run"""


def memory_growth_pct(samples: Sequence[tuple[float, float]], warmup_share: float = 0.2) -> float | None:
    """RSS growth over a run, in %: median of the last half against the first half, after the warm-up share
    of samples (allocator and JIT-less caches settle first). None with too few samples."""
    values = [rss for _, rss in samples]
    values = values[int(len(values) * warmup_share) :]
    if len(values) < 4:
        return None
    half = len(values) // 2
    first, last = statistics.median(values[:half]), statistics.median(values[half:])
    return 0.0 if first <= 0 else round((last - first) / first * 100, 2)


def latency_summary(
    sent_at: Mapping[str, float], seen: Iterable[tuple[str | None, str, float]]
) -> dict[str, Any]:
    """Send -> seen latencies (ms) of the outputs that answer a sent event: p50, p99, max.

    ``sent_at``: input event id -> wall-clock send time; ``seen``: (causation id, output type, wall-clock
    time the output became visible) for every output read."""
    latencies = sorted((at - sent_at[c]) * 1000 for c, _, at in seen if c is not None and c in sent_at)
    if not latencies:
        return {"outputs_seen": 0, "latency_ms": {}}
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "outputs_seen": len(latencies),
        "latency_ms": {"p50": round(q[49], 1), "p99": round(q[98], 1), "max": round(latencies[-1], 1)},
    }


def identify(headers: dict[str, bytes], value: bytes | None) -> tuple[str | None, str, str]:
    """(the input event id an output answers, the output's type, the output's own id), reading the value's
    envelope at most once: a binary-mode record (a dead letter) says all three in ``ce_causationid``,
    ``ce_type`` and ``ce_id`` headers; a structured one in ``causationid`` (else, for the passthrough, which
    writes its input back, its ``id``), ``type`` and ``id``. A value that is not a JSON object answers
    nothing: (None, "", "")."""
    cause_header, id_header = headers.get("ce_causationid"), headers.get("ce_id")
    ev: dict[str, Any] | None = None
    if cause_header is None or id_header is None:
        try:
            parsed = orjson.loads(value or b"{}")
        except orjson.JSONDecodeError:
            parsed = None
        ev = parsed if isinstance(parsed, dict) else None
    if cause_header is not None:
        cause, type_ = cause_header.decode(), headers.get("ce_type", b"").decode()
    elif ev is None:
        cause, type_ = None, ""
    else:
        found = ev.get("causationid") or ev.get("id")
        cause, type_ = (None if found is None else str(found)), str(ev.get("type", ""))
    if id_header is not None:
        return cause, type_, id_header.decode()
    return cause, type_, "" if ev is None else str(ev.get("id", ""))


def cause_of(headers: dict[str, bytes], value: bytes | None) -> tuple[str | None, str]:
    """(the input event id an output answers, the output's type): see :func:`identify`."""
    cause, type_, _ = identify(headers, value)
    return cause, type_


def output_id_of(headers: dict[str, bytes], value: bytes | None) -> str:
    """An output's own id: the ``ce_id`` header of a binary-mode record (a dead letter), else the
    structured envelope's ``id``; empty when it has neither (see :func:`identify`)."""
    return identify(headers, value)[2]


def latency_cell(phase: Mapping[str, Any] | None) -> str:
    """``p50 / p99 ms`` of a paced phase, with the offered rate; ``-`` when not measured."""
    if not phase or not phase.get("latency_ms"):
        return "-"
    q = phase["latency_ms"]
    return f"{q['p50']:,.0f} / {q['p99']:,.0f} @ {phase['rate_per_s']:,.0f}/s"


def _latency_target(name: str, goal_ms: float, value_ms: float | None) -> Target:
    return Target(
        name,
        f"<= {goal_ms:g} ms",
        "not run" if value_ms is None else f"{value_ms:,.0f} ms",
        None if value_ms is None else value_ms <= goal_ms,
    )


def targets(
    rates: Mapping[str, float],
    p99_ms: float | None,
    memory_growth: float | None,
    light: Mapping[str, Any] | None = None,
) -> list[Target]:
    """Goals of issue #16 against this run; ``light``: clickcash's paced phase at the light rate."""
    out = []
    r = ratios(rates)
    for other, goal in RATIO_TARGETS:
        ratio = r.get(f"clickcash/{other}")
        out.append(
            Target(
                f"clickcash / {other}",
                f">= {goal:g}x",
                "not run" if ratio is None else f"{ratio:.2f}x",
                None if ratio is None else ratio >= goal,
            )
        )
    out.append(_latency_target("p99 latency at 50% of peak", P99_TARGET_MS, p99_ms))
    q = (light or {}).get("latency_ms") or {}
    at = f" at {LIGHT_RATE_PER_S:g} events/s"
    out.append(_latency_target("p99 latency" + at, P99_TARGET_MS, q.get("p99")))
    out.append(_latency_target("p50 latency" + at, LIGHT_P50_TARGET_MS, q.get("p50")))
    out.append(
        Target(
            "memory flat at 70% of peak",
            f"RSS growth <= {MEMORY_GROWTH_TARGET_PCT:g}%",
            "not run" if memory_growth is None else f"{memory_growth:+.1f}%",
            None if memory_growth is None else memory_growth <= MEMORY_GROWTH_TARGET_PCT,
        )
    )
    return out


def cpu_us_per_event(cpu_s: Mapping[str, float], events: int) -> dict[str, float]:
    return {k: round(v / max(events, 1) * 1e6, 1) for k, v in cpu_s.items()}


SERVICE_SUFFIX = " (service)"


def cpu_split(cpu_us: Mapping[str, float]) -> tuple[float, float, float]:
    """(the contender's own processes, the Kafka broker(s), Redis) from a per-process CPU breakdown."""
    own = sum(v for k, v in cpu_us.items() if not k.endswith(SERVICE_SUFFIX))
    kafka = sum(v for k, v in cpu_us.items() if k.endswith(SERVICE_SUFFIX) and k.startswith("kafka"))
    redis = sum(v for k, v in cpu_us.items() if k.endswith(SERVICE_SUFFIX) and k.startswith("redis"))
    return round(own, 1), round(kafka, 1), round(redis, 1)


# --- profile stages ----------------------------------------------------------------------------------


class ProfileFrame(Protocol):
    """The part of a pyinstrument frame the stage fold reads."""

    @property
    def function(self) -> str: ...

    @property
    def file_path(self) -> str | None: ...

    @property
    def time(self) -> float: ...

    @property
    def children(self) -> Sequence[ProfileFrame]: ...


# (file path suffix or None for any, function names, stage); the innermost matching frame decides
STAGE_RULES: tuple[tuple[str | None, frozenset[str], str], ...] = (
    ("actors/state/redis.py", frozenset({"load", "commit"}), "shard: Redis load + commit (round trips)"),
    ("actors/_decode.py", frozenset({"decode_record"}), "shard: decode + validate"),
    ("actors/_apply.py", frozenset({"emit"}), "shard: output encoding (CloudEvents)"),
    ("actors/state/base.py", frozenset({"encode", "decode"}), "shard: state + record (de)serialization"),
    ("actors/_apply.py", frozenset({"apply"}), "shard: domain engines + output encoding"),
    ("actors/shard.py", frozenset({"apply"}), "shard: idempotency + first responses"),
    ("router/_router.py", frozenset({"_dispatch"}), "router: records + split by shard"),
    ("router/_router.py", frozenset({"_finish", "_produce"}), "router: produce"),
    ("router/_router.py", frozenset({"_commit", "_commit_idle_positions"}), "router: transaction commit"),
    ("router/_router.py", frozenset({"_step", "run"}), "router: consume + loop"),
)
OTHER_STAGE = "other"


def _stage_of(frame: ProfileFrame) -> str | None:
    path = (frame.file_path or "").replace("\\", "/")
    for suffix, functions, stage in STAGE_RULES:
        if frame.function in functions and (suffix is None or path.endswith(suffix)):
            return stage
    return None


def stage_seconds(root: ProfileFrame) -> dict[str, float]:
    """Fold a call tree into stages: each frame's own time goes to its innermost stage-marking ancestor."""
    out: dict[str, float] = {}
    stack: list[tuple[ProfileFrame, str]] = [(root, OTHER_STAGE)]
    while stack:
        frame, inherited = stack.pop()
        stage = _stage_of(frame) or inherited
        children = list(frame.children)
        own = frame.time - sum(c.time for c in children)
        if own > 0:
            out[stage] = out.get(stage, 0.0) + own
        stack.extend((c, stage) for c in children)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# --- the table -----------------------------------------------------------------------------------------


def _fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


PYTHON_LOOP_STEPS = 2_000_000
"""additions in the calibration loop (``clickcash.cluster.local.pick_python.python_loop_s``) whose time the
report's header shows"""


def _interpreter(machine: Mapping[str, Any]) -> str:
    """The interpreter and its speed, when the report has them: Python's speed sets most of the figures."""
    if "python_loop_s" not in machine:
        return ""
    return (
        f"; CPython {machine.get('python', '?')}, {PYTHON_LOOP_STEPS:,} additions in a Python loop in "
        f"{machine['python_loop_s'] * 1000:,.0f} ms"
    )


def render_markdown(report: Mapping[str, Any]) -> str:
    run = report["run"]
    lines = [
        f"# clickcash compare, {run['started']}",
        "",
        f"{run['events']:,} events, {run['partitions']} partitions, {run['customers']:,} customers "
        f"(Zipf-skewed, the load tests' event mix); machine: {run['machine']['cores']} cores, "
        f"{run['machine']['model']}{_interpreter(run['machine'])}. {run.get('note', '')}".rstrip(),
        "",
        "| contender | events/s | clickcash / it | CPU µs/event: own | Kafka | Redis "
        "| latency p50 / p99 ms at 50% of peak | at a light rate | outputs complete | guarantee |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rates = {n: c["events_per_s"] for n, c in report["contenders"].items()}
    r = ratios(rates)
    for name, c in report["contenders"].items():
        comp = c.get("completeness") or {}
        verdict = "-" if not comp else ("yes" if comp["ok"] else "NO: " + "; ".join(comp["problems"]))
        ratio = r.get(f"clickcash/{name}")
        own, kafka, redis = cpu_split(c.get("cpu_us_per_event") or {})
        lat = c.get("latency") or {}
        lines.append(
            f"| {name} | {_fmt_rate(c['events_per_s'])} | {'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{own:,.0f} | {kafka:,.0f} | {redis:,.0f} | {latency_cell(lat.get('at_50pct'))} | "
            f"{latency_cell(lat.get('at_light'))} | {verdict} | {c['extra'].get('guarantee', '')} |"
        )
    lines.append(
        "\nLatency is send -> committed output (visible to a read_committed reader), every output of a paced "
        "run after a warm-up; CPU is per input event from the first consume to the last committed output."
    )
    idle = report.get("services_idle_cpu_share") or {}
    if idle:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in idle.items())
        lines.append(
            f"At idle the services use {shares} of a core: a contender that runs longer pays that for "
            "longer, so its Kafka and Redis µs per event are inflated by it."
        )
    lines += ["", "| target | goal | this run | met |", "| --- | --- | --- | --- |"]
    for t in report["targets"]:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['name']} | {t['goal']} | {t['value']} | {met} |")
    mem = report.get("memory_at_70pct")
    if mem and mem.get("rss_samples_mb"):
        rss = [v for _, v in mem["rss_samples_mb"]]
        growth = mem.get("rss_growth_pct")
        lines.append("")
        lines.append(
            f"Memory at 70% of peak ({mem['rate_per_s']:,.0f} events/s offered for "
            f"{mem['events'] / max(mem['rate_per_s'], 1e-9):,.0f} s, RSS sampled every second): "
            f"{rss[0]:,.0f} MiB at the start, {max(rss):,.0f} MiB at most, {rss[-1]:,.0f} MiB at the end"
            + ("" if growth is None else f"; {growth:+.1f}% between the halves after warm-up")
            + "."
        )
    if report.get("peak_rss_mb") is not None:
        lines.append(f"Peak RSS of clickcash's router and shard processes: {report['peak_rss_mb']:,.0f} MiB.")
    stages = report.get("cpu_us_per_event")
    if stages:
        cc = (report.get("contenders") or {}).get("clickcash") or {}
        batches = int((cc.get("extra") or {}).get("shard_batches") or 0)
        lines += cpu_by_process_table(
            stages,
            report.get("latency_at_50pct") or {},
            report.get("latency_at_light") or {},
            flat_out_events_per_call=cc.get("events", 0) / batches if batches else None,
        )
    ledger = report.get("ledger")
    if ledger:
        lines.append(
            f"\nThe campaign ledger (`ledger` above: its share while the routers ran) trailed them by "
            f"{ledger['trailed_s']:,.1f} s; until it had read all {ledger['records_read']:,} records "
            f"(inputs and committed outputs) it used {ledger['cpu_us_per_event']:,.1f} µs of CPU per input "
            f"event, in {ledger['transactions']:,} transactions."
        )
    prof = report.get("profile_us_per_event")
    if prof:
        total = sum(prof.values()) or 1.0
        lines += [
            "",
            "| where the time goes (pyinstrument, router + shards in one process, no Ray) | share | µs/event "
            "(profiled, inflated by the profiler) |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {k} | {v / total:.0%} | {v:,.0f} |" for k, v in prof.items()]
    scaling = report.get("scaling")
    if scaling:
        lines += ["", "| clickcash shards x routers | events/s |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt_rate(v)} |" for k, v in scaling.items()]
    if report.get("bound"):
        lines += ["", f"What bounds the rate: {report['bound']}"]
    return "\n".join(lines) + "\n"


def cpu_by_process_table(
    flat_out: Mapping[str, float],
    at_50pct: Mapping[str, Any],
    at_light: Mapping[str, Any],
    *,
    flat_out_events_per_call: float | None = None,
) -> list[str]:
    """clickcash's CPU per event by process, flat out and in the paced runs that have the figures.

    A paced run's shard calls carry fewer events than flat out, and every call, Redis round trip and
    transaction has a fixed cost: the columns side by side show how much of the latency at a paced rate
    is the pipeline's work growing per event as its batches shrink."""
    paced = [
        (f"at {run['rate_per_s']:,.0f}/s", run) for run in (at_50pct, at_light) if run.get("cpu_us_per_event")
    ]
    head = "| clickcash CPU µs per event by process | throughput run |"
    head += "".join(f" {name} |" for name, _ in paced)
    rows = ["", head, "| --- |" + " --- |" * (1 + len(paced))]
    for k, v in flat_out.items():
        cells = "".join(f" {run['cpu_us_per_event'].get(k, 0.0):,.1f} |" for _, run in paced)
        rows.append(f"| {k} | {v:,.1f} |{cells}")
    totals = "".join(f" {sum(run['cpu_us_per_event'].values()):,.1f} |" for _, run in paced)
    rows.append(f"| total | {sum(flat_out.values()):,.1f} |{totals}")
    if paced:
        calls = "".join(f" {run.get('events_per_shard_call', 0):,.0f} |" for _, run in paced)
        flat = "-" if flat_out_events_per_call is None else f"{flat_out_events_per_call:,.0f}"
        rows.append(f"| events per shard call | {flat} |{calls}")
    return rows


def peak_rss(samples: Iterable[tuple[float, float]]) -> float:
    return max((rss for _, rss in samples), default=0.0)


def bound_statement(
    cpu_us_per_event: Mapping[str, float],
    events_per_s: float,
    cores: int,
    machine_busy_share: float | None = None,
) -> str:
    """Say what limited a run from where its CPU went: the machine's cores, or waiting somewhere.

    ``machine_busy_share`` is the whole machine's CPU use over the run (other people's work included);
    without it only the run's own processes count.
    """
    total_us = sum(cpu_us_per_event.values())
    own = total_us * events_per_s / 1e6 / max(cores, 1)
    busy = own if machine_busy_share is None else max(own, machine_busy_share)
    top = sorted(cpu_us_per_event.items(), key=lambda kv: -kv[1])[:3]
    parts = ", ".join(f"{k} {v:,.0f} µs" for k, v in top)
    ceiling = 1e6 / total_us if total_us else 0.0
    projection = (
        f"At {total_us:,.0f} µs of CPU per event (largest: {parts}) one core carries at most "
        f"{ceiling:,.0f} events/s, {cores} cores {ceiling * cores:,.0f}."
    )
    if busy >= 0.85:
        others = "" if machine_busy_share is None else f" ({own:.0%} by this run's processes)"
        return (
            f"CPU: the machine's {cores} cores were {busy:.0%} busy over the run{others}. {projection} More "
            "throughput needs fewer µs per event or more cores."
        )
    return (
        f"not CPU alone: the {cores} cores were {busy:.0%} busy; the rest is waiting (round trips, "
        f"transaction commits, backpressure). {projection}"
    )
