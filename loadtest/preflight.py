"""``clickcash loadtest --preflight``: will the deployment hold a campaign's peak? GO / NO-GO per SLO.

A short synthetic spike (every event marked ``synthetic``, see docs/event-contract.md) at the campaign's
peak rate is sent to the running deployment; the figures it yields are judged against the SLO thresholds
by :func:`decide`, a pure function (no Kafka, Redis or Ray here), so the decision is unit-tested apart from
the run. The thresholds default to the SLOs of ``cluster/deploy/prometheus/slo-rules.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SloThresholds:
    """The SLO limits a preflight checks (defaults: the production SLOs, docs/observability.md)."""

    p99_latency_ms: float = 1_000.0
    """99th percentile send -> committed output latency"""
    dead_letter_ratio: float = 0.005
    """dead letters per input record"""
    freshness_s: float = 60.0
    """seconds the backlog took to drain after the spike stopped (the consumer lag in seconds it built)"""
    parked_customers: int = 0
    """customers the spike parked: a record the engines fail on is a fault the campaign would hit at scale
    (production's parked SLO, no customer parked for 15 minutes, is about how fast an operator answers;
    before a launch, any parked customer is a finding)"""


@dataclass(frozen=True, slots=True)
class PreflightFigures:
    """What the spike measured."""

    events: int
    p99_latency_ms: float | None
    """None when no output came back (then latency is NO-GO)"""
    dead_letters: int
    drain_s: float
    parked_customers: int = 0
    """customers parked during the spike that were not parked before it"""


@dataclass(frozen=True, slots=True)
class Verdict:
    slo: str
    ok: bool
    figure: str
    limit: str


def decide(figures: PreflightFigures, slo: SloThresholds) -> list[Verdict]:
    """One verdict per SLO; GO when all hold. No outputs at all, or no events, is NO-GO: a spike that
    produced nothing proves nothing."""
    ratio = figures.dead_letters / figures.events if figures.events else 1.0
    p99 = figures.p99_latency_ms
    return [
        Verdict(
            "end-to-end latency",
            p99 is not None and p99 <= slo.p99_latency_ms,
            "no outputs" if p99 is None else f"p99 {p99:,.1f} ms",
            f"p99 <= {slo.p99_latency_ms:,.1f} ms",
        ),
        Verdict(
            "dead-letter rate",
            figures.events > 0 and ratio <= slo.dead_letter_ratio,
            f"{figures.dead_letters}/{figures.events} = {ratio:.3%}",
            f"<= {slo.dead_letter_ratio:.3%}",
        ),
        Verdict(
            "data freshness",
            figures.drain_s <= slo.freshness_s,
            f"backlog drained {figures.drain_s:,.1f} s after the spike",
            f"<= {slo.freshness_s:,.1f} s",
        ),
        Verdict(
            "parked customers",
            figures.parked_customers <= slo.parked_customers,
            f"{figures.parked_customers} parked by the spike",
            f"<= {slo.parked_customers}",
        ),
    ]


def go(verdicts: list[Verdict]) -> bool:
    return all(v.ok for v in verdicts)


def render(verdicts: list[Verdict], peak_per_s: float) -> str:
    lines = [f"preflight at a campaign peak of {peak_per_s:,.0f} events/s:"]
    for v in verdicts:
        lines.append(f"  {'GO   ' if v.ok else 'NO-GO'}  {v.slo}: {v.figure} (SLO {v.limit})")
    lines.append("GO" if go(verdicts) else "NO-GO")
    return "\n".join(lines)
