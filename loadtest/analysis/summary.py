"""Turning a matched run into numbers: per-second timeline, per-phase latency, sustained rates, lag drain.

Pure (no Kafka, no plotting): ``clickcash.loadtest.locust_run.monitor`` calls :func:`build_summary` when the
run has drained and
``clickcash.loadtest.analysis.report`` draws and renders what it returns. Times are epoch seconds in, seconds
since the
shape's start (``t0``) out.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clickcash.loadtest.analysis.matcher import LatencySample, Matcher
from clickcash.loadtest.traffic.shapes import Phase, RateSchedule

AFTER_PHASE = "drain"
"""the phase after the schedule ended: no more load, the pipeline works off its lag"""
SUSTAINED_WINDOW_S = 10


@dataclass(frozen=True, slots=True)
class LagSample:
    at: float
    """epoch seconds"""
    lag: int | None
    """input records past the group's committed offsets (None: not known yet)"""
    committed: int | None = None
    """sum of the group's committed offsets over the input partitions"""


@dataclass(frozen=True, slots=True)
class TimelineRow:
    t: int
    """bucket [t, t + 1) in seconds since the shape's start"""
    phase: str
    target_rate: float | None
    input_rate: int
    output_rate: int
    processed_rate: float | None
    """input records/s the group committed (from the committed offsets)"""
    lag: int | None
    p50_ms: float | None
    p99_ms: float | None
    """latency of the outputs of inputs sent in this second"""


@dataclass(frozen=True, slots=True)
class DrainStats:
    peak_lag: int
    peak_at_s: float
    threshold: int
    drained_at_s: float | None
    seconds_to_drain: float | None
    """from the peak lag to the first sample at or below the threshold"""
    drained_after_load_peak_s: float | None = None
    """from the end of the highest-rate phase to the first sample at or below the threshold after it"""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def latency_stats(values_ms: Sequence[float]) -> dict[str, float]:
    if not values_ms:
        return {"count": 0}
    v = sorted(values_ms)
    return {
        "count": len(v),
        "p50": round(percentile(v, 50), 1),
        "p95": round(percentile(v, 95), 1),
        "p99": round(percentile(v, 99), 1),
        "max": round(v[-1], 1),
    }


def phase_at(phases: Sequence[Phase], t: float) -> str:
    """The phase at ``t`` seconds since the start: before the first phase counts as the first, after the last
    is :data:`AFTER_PHASE`."""
    if not phases:
        return AFTER_PHASE
    if t < phases[0].start_s:
        return phases[0].name
    for p in phases:
        if p.contains(t):
            return p.name
    return AFTER_PHASE


def latency_by_phase(
    samples: Sequence[LatencySample], t0: float, phases: Sequence[Phase]
) -> dict[str, dict[str, float]]:
    """Latency statistics of the outputs grouped by the phase in which their input was sent (inputs sent
    in the moment after the schedule ended, before Locust stopped its users, count in the last phase)."""
    grouped: dict[str, list[float]] = {p.name: [] for p in phases}
    last = phases[-1].name if phases else AFTER_PHASE
    for s in samples:
        name = phase_at(phases, s.sent_at - t0)
        grouped.setdefault(last if name == AFTER_PHASE else name, []).append(s.latency_ms)
    return {name: latency_stats(v) for name, v in grouped.items()}


def sustained_peak(series: Sequence[float], window: int = SUSTAINED_WINDOW_S) -> float:
    """The highest average of ``window`` consecutive per-second values (the whole series if shorter)."""
    if not series:
        return 0.0
    window = max(1, min(window, len(series)))
    acc = sum(series[:window])
    best = acc
    for i in range(window, len(series)):
        acc += series[i] - series[i - window]
        best = max(best, acc)
    return best / window


def drain_threshold(baseline_lags: Sequence[int], floor: int = 100) -> int:
    """Lag that counts as drained: twice the median lag of the first phase (the pipeline's normal working
    set: a transaction's worth of records), at least ``floor``."""
    if not baseline_lags:
        return floor
    return max(floor, int(2 * statistics.median(baseline_lags)))


def drain_stats(
    lags: Sequence[tuple[float, int]], threshold: int, load_peak_end_s: float | None = None
) -> DrainStats | None:
    """Peak lag and how long after the peak the lag first fell to ``threshold`` or below; with
    ``load_peak_end_s`` (when the highest-rate phase ended) also how long after that end it got there.

    ``lags`` are (seconds since start, lag) in time order. None without samples.
    """
    if not lags:
        return None
    peak_i = max(range(len(lags)), key=lambda i: (lags[i][1], -i))
    peak_t, peak = lags[peak_i]
    drained = next((t for t, lag in lags[peak_i:] if lag <= threshold), None)
    after_load: float | None = None
    if load_peak_end_s is not None:
        settled = next((t for t, lag in lags if t >= load_peak_end_s and lag <= threshold), None)
        after_load = None if settled is None else round(settled - load_peak_end_s, 1)
    return DrainStats(
        peak_lag=peak,
        peak_at_s=round(peak_t, 1),
        threshold=threshold,
        drained_at_s=None if drained is None else round(drained, 1),
        seconds_to_drain=None if drained is None else round(drained - peak_t, 1),
        drained_after_load_peak_s=after_load,
    )


def peak_phase_end(schedule: RateSchedule) -> float:
    """When the last segment running at the schedule's peak rate ends (the spike's hold, the top step)."""
    start, end = 0.0, schedule.duration_s
    for seg in schedule.segments:
        if seg.end_rate >= schedule.peak_rate:
            end = start + seg.duration_s
        start += seg.duration_s
    return end


def build_timeline(
    matcher: Matcher,
    lag_samples: Sequence[LagSample],
    t0: float,
    schedule: RateSchedule,
    end_at: float | None = None,
) -> list[TimelineRow]:
    phases = schedule.phases()
    ins = Counter(math.floor(max(0.0, t - t0)) for t in matcher.input_sent_at)
    outs = Counter(math.floor(max(0.0, t - t0)) for t in matcher.output_seen_at)
    lat: dict[int, list[float]] = {}
    for s in matcher.samples:
        lat.setdefault(math.floor(max(0.0, s.sent_at - t0)), []).append(s.latency_ms)
    lag_at: dict[int, int | None] = {}
    processed: dict[int, float] = {}
    prev: LagSample | None = None
    for ls in lag_samples:
        sec = math.floor(ls.at - t0)
        lag_at[sec] = ls.lag
        if (
            prev is not None
            and prev.committed is not None
            and ls.committed is not None
            and ls.at > prev.at
            and ls.committed >= prev.committed
        ):
            processed[sec] = (ls.committed - prev.committed) / (ls.at - prev.at)
        if ls.committed is not None:
            prev = ls
    last = max([0, *ins, *outs, *lag_at])
    if end_at is not None:
        last = max(last, math.floor(end_at - t0))
    rows = []
    for sec in range(0, last + 1):
        values = sorted(lat.get(sec, []))
        target = schedule.rate_at(sec + 0.5)
        rows.append(
            TimelineRow(
                t=sec,
                phase=phase_at(phases, sec + 0.5),
                target_rate=None if target is None else round(target, 1),
                input_rate=ins.get(sec, 0),
                output_rate=outs.get(sec, 0),
                processed_rate=None if sec not in processed else round(processed[sec], 1),
                lag=lag_at.get(sec),
                p50_ms=round(percentile(values, 50), 1) if values else None,
                p99_ms=round(percentile(values, 99), 1) if values else None,
            )
        )
    return rows


def build_summary(
    matcher: Matcher,
    lag_samples: Sequence[LagSample],
    t0: float,
    schedule: RateSchedule,
    *,
    run_id: str,
    end_at: float | None = None,
    load_ended_at: float | None = None,
) -> tuple[dict[str, Any], list[TimelineRow]]:
    """The report's numbers and its per-second timeline."""
    phases = schedule.phases()
    timeline = build_timeline(matcher, lag_samples, t0, schedule, end_at)
    first = phases[0]
    known_lags = [(ls.at - t0, ls.lag) for ls in lag_samples if ls.lag is not None]
    baseline = [lag for t, lag in known_lags if first.start_s <= t < first.end_s]
    drain = drain_stats(known_lags, drain_threshold(baseline), peak_phase_end(schedule))
    processed = [r.processed_rate for r in timeline if r.processed_rate is not None]
    lost = matcher.lost_orders()
    summary: dict[str, Any] = {
        "run_id": run_id,
        "t0": t0,
        "shape": schedule.to_dict(),
        "phases": [asdict(p) for p in phases],
        "load_s": round((load_ended_at - t0), 1) if load_ended_at is not None else schedule.duration_s,
        "observed_s": len(timeline),
        "target_events": round(schedule.expected_events()),
        "inputs": {
            "total": matcher.input_count,
            "by_kind": dict(sorted(matcher.inputs_by_kind.items())),
            "app_generated": dict(sorted(matcher.app_inputs_by_type.items())),
        },
        "outputs": {
            "total": matcher.output_count,
            "by_type": dict(sorted(matcher.outputs_by_type.items())),
            "dead_letters_by_code": dict(sorted(matcher.dead_letters_by_code.items())),
        },
        "checks": {
            "orders": matcher.order_count,
            "lost_orders": len(lost),
            "lost_order_ids": lost[:20],
            "duplicate_outputs": sum(matcher.duplicate_outputs.values()),
            "duplicate_outputs_by_type": dict(matcher.duplicate_outputs),
            "orders_with_several_decisions": matcher.orders_with_several_decisions(),
            "malformed_without_dead_letter": matcher.malformed_without_dead_letter(),
            "unmatched_outputs": matcher.unmatched_outputs(),
        },
        "rates": {
            "peak_target": round(schedule.peak_rate, 1),
            f"peak_sustained_input_{SUSTAINED_WINDOW_S}s": round(
                sustained_peak([r.input_rate for r in timeline]), 1
            ),
            f"peak_sustained_output_{SUSTAINED_WINDOW_S}s": round(
                sustained_peak([r.output_rate for r in timeline]), 1
            ),
            f"peak_sustained_processed_{SUSTAINED_WINDOW_S}s": round(sustained_peak(processed), 1),
        },
        "latency_ms": {
            "all": latency_stats([s.latency_ms for s in matcher.samples]),
            "by_phase": latency_by_phase(matcher.samples, t0, phases),
            "app_generated": latency_stats([s.latency_ms for s in matcher.app_samples]),
        },
        "lag": None if drain is None else asdict(drain),
    }
    return summary, timeline
