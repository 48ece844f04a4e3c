"""Load shapes as data: target input rate (events/s) over time, and the named phases of a run.

Pure (no Locust): the Locust ``LoadTestShape`` in ``loadtest/locust_run/locustfile.py`` turns a schedule's
rate into a
user count each second, and the report uses the same schedule to mark the phases on the plot and to split
the latency statistics. A schedule is a sequence of linear segments; consecutive segments with the same
phase name form one phase.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

ShapeKind = Literal["steady", "step", "spike"]
SHAPES: tuple[ShapeKind, ...] = ("steady", "step", "spike")


@dataclass(frozen=True, slots=True)
class Segment:
    phase: str
    duration_s: float
    start_rate: float
    end_rate: float


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    start_s: float
    end_s: float

    def contains(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class RateSchedule:
    """Piecewise-linear target rate. ``rate_at(t)`` is None once the schedule is over."""

    kind: str
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a schedule needs at least one segment")
        for s in self.segments:
            if s.duration_s <= 0 or s.start_rate < 0 or s.end_rate < 0:
                raise ValueError(f"invalid segment {s}: durations must be > 0 and rates >= 0")

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.segments)

    @property
    def peak_rate(self) -> float:
        return max(max(s.start_rate, s.end_rate) for s in self.segments)

    def _locate(self, t: float) -> tuple[Segment, float] | None:
        if t < 0:
            t = 0.0
        start = 0.0
        for s in self.segments:
            if t < start + s.duration_s:
                return s, t - start
            start += s.duration_s
        return None

    def rate_at(self, t: float) -> float | None:
        found = self._locate(t)
        if found is None:
            return None
        seg, into = found
        return seg.start_rate + (seg.end_rate - seg.start_rate) * into / seg.duration_s

    def phase_at(self, t: float) -> str | None:
        found = self._locate(t)
        return None if found is None else found[0].phase

    def phases(self) -> list[Phase]:
        out: list[Phase] = []
        start = 0.0
        for s in self.segments:
            end = start + s.duration_s
            if out and out[-1].name == s.phase:
                out[-1] = Phase(s.phase, out[-1].start_s, end)
            else:
                out.append(Phase(s.phase, start, end))
            start = end
        return out

    def expected_events(self, t0: float = 0.0, t1: float | None = None) -> float:
        """The integral of the rate between t0 and t1 (default: the end)."""
        t1 = self.duration_s if t1 is None else min(t1, self.duration_s)
        total, start = 0.0, 0.0
        for s in self.segments:
            end = start + s.duration_s
            a, b = max(t0, start), min(t1, end)
            if b > a:
                ra = s.start_rate + (s.end_rate - s.start_rate) * (a - start) / s.duration_s
                rb = s.start_rate + (s.end_rate - s.start_rate) * (b - start) / s.duration_s
                total += (ra + rb) / 2 * (b - a)
            start = end
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "segments": [asdict(s) for s in self.segments]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RateSchedule:
        return cls(str(raw["kind"]), tuple(Segment(**s) for s in raw["segments"]))


def steady(rate: float, duration_s: float) -> RateSchedule:
    return RateSchedule("steady", (Segment("steady", duration_s, rate, rate),))


def step(rate: float, step_rate: float, step_s: float, steps: int) -> RateSchedule:
    """``steps`` plateaus of ``step_s`` seconds: rate, rate + step_rate, rate + 2 * step_rate, ..."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return RateSchedule(
        "step",
        tuple(
            Segment(f"step {i + 1}", step_s, rate + i * step_rate, rate + i * step_rate) for i in range(steps)
        ),
    )


def spike(
    baseline: float,
    peak_x: float,
    *,
    baseline_s: float,
    ramp_s: float,
    hold_s: float,
    decay_s: float,
    recovery_s: float,
) -> RateSchedule:
    """Campaign spike: baseline -> ``peak_x`` x baseline within ``ramp_s`` -> hold -> decay -> baseline."""
    if peak_x < 1:
        raise ValueError("peak_x must be >= 1")
    peak = baseline * peak_x
    segs = [
        Segment("baseline", baseline_s, baseline, baseline),
        Segment("ramp", ramp_s, baseline, peak),
        Segment("peak", hold_s, peak, peak),
        Segment("decay", decay_s, peak, baseline),
        Segment("recovery", recovery_s, baseline, baseline),
    ]
    return RateSchedule("spike", tuple(s for s in segs if s.duration_s > 0))


@dataclass(frozen=True)
class ShapeParams:
    """Everything that defines a shape; the CLI, the locustfile and config files all fill this."""

    shape: ShapeKind = "spike"
    rate: float = 300.0
    """events/s: the baseline (spike), the rate (steady) or the first step (step)"""
    peak_x: float = 10.0
    baseline_s: float = 20.0
    ramp_s: float = 10.0
    hold_s: float = 40.0
    decay_s: float = 10.0
    recovery_s: float = 30.0
    duration_s: float = 60.0
    """steady only"""
    step_rate: float | None = None
    """step only: increment per step (default: ``rate``)"""
    step_s: float = 20.0
    steps: int = 5

    def schedule(self) -> RateSchedule:
        if self.shape == "steady":
            return steady(self.rate, self.duration_s)
        if self.shape == "step":
            return step(
                self.rate, self.rate if self.step_rate is None else self.step_rate, self.step_s, self.steps
            )
        if self.shape == "spike":
            return spike(
                self.rate,
                self.peak_x,
                baseline_s=self.baseline_s,
                ramp_s=self.ramp_s,
                hold_s=self.hold_s,
                decay_s=self.decay_s,
                recovery_s=self.recovery_s,
            )
        raise ValueError(f"unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")


def default_user_rate(schedule: RateSchedule, users_at_baseline: int = 20) -> float:
    """Events/s per Locust user: small enough that the first phase runs ``users_at_baseline`` users (rate
    granularity of ~5 %), never below 1."""
    first = schedule.segments[0].start_rate or schedule.peak_rate
    return max(1.0, first / users_at_baseline)


def users_for(rate: float, user_rate: float) -> int:
    """Locust users needed for ``rate`` events/s when each publishes ``user_rate`` events/s."""
    if rate <= 0:
        return 0
    return max(1, round(rate / user_rate))


def tick(schedule: RateSchedule, run_time_s: float, user_rate: float) -> tuple[int, float] | None:
    """What the Locust shape returns at ``run_time_s``: (users, spawn rate), or None when done.

    The spawn rate is the whole step, so the user count follows the schedule within Locust's 1 s tick.
    """
    rate = schedule.rate_at(run_time_s)
    if rate is None:
        return None
    users = users_for(rate, user_rate)
    return users, float(max(1, users))


def pacing_due(elapsed_s: float, rate: float, sent: int, max_burst: int) -> tuple[int, int]:
    """(events to publish now, events to give up) for a user publishing ``rate`` events/s for ``elapsed_s``
    that has accounted for ``sent`` so far.

    A user that fell more than ``max_burst`` events behind (its process was busy) publishes ``max_burst``
    and gives up the rest of the debt, so an overloaded generator shows as a lower achieved rate (the report
    compares it with the target) rather than as catch-up bursts the schedule never asked for.
    """
    owed = math.floor(elapsed_s * rate) - sent
    if owed <= 0:
        return 0, 0
    if owed > max_burst:
        return max_burst, owed - max_burst
    return owed, 0
