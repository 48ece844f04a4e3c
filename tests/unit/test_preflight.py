"""The preflight GO / NO-GO decision: one verdict per SLO from the figures of the spike."""

from __future__ import annotations

from clickcash.loadtest.preflight import PreflightFigures, SloThresholds, decide, go, render

HEALTHY = PreflightFigures(events=2_000, p99_latency_ms=180.0, dead_letters=2, drain_s=1.5)


def test_healthy_figures_are_go() -> None:
    verdicts = decide(HEALTHY, SloThresholds())
    assert go(verdicts)
    assert [v.slo for v in verdicts] == [
        "end-to-end latency",
        "dead-letter rate",
        "data freshness",
        "parked customers",
    ]
    assert render(verdicts, 200).splitlines()[-1] == "GO"


def test_each_slo_breach_is_no_go_and_names_the_figure() -> None:
    slow = PreflightFigures(events=2_000, p99_latency_ms=1_500.0, dead_letters=2, drain_s=1.5)
    verdicts = decide(slow, SloThresholds())
    assert not go(verdicts)
    assert [v.ok for v in verdicts] == [False, True, True, True]
    assert "p99 1,500.0 ms" in render(verdicts, 200)
    dead = PreflightFigures(events=1_000, p99_latency_ms=100.0, dead_letters=6, drain_s=1.0)
    assert [v.ok for v in decide(dead, SloThresholds())] == [True, False, True, True]
    stale = PreflightFigures(events=1_000, p99_latency_ms=100.0, dead_letters=0, drain_s=61.0)
    assert [v.ok for v in decide(stale, SloThresholds())] == [True, True, False, True]


def test_limits_are_inclusive_and_a_tight_threshold_turns_go_into_no_go() -> None:
    exact = PreflightFigures(events=1_000, p99_latency_ms=1_000.0, dead_letters=5, drain_s=60.0)
    assert go(decide(exact, SloThresholds()))
    assert not go(decide(HEALTHY, SloThresholds(p99_latency_ms=0.001)))


def test_a_spike_without_outputs_or_events_is_no_go() -> None:
    assert not go(
        decide(
            PreflightFigures(events=100, p99_latency_ms=None, dead_letters=0, drain_s=0.0), SloThresholds()
        )
    )
    assert not go(
        decide(PreflightFigures(events=0, p99_latency_ms=1.0, dead_letters=0, drain_s=0.0), SloThresholds())
    )


def test_a_customer_parked_by_the_spike_is_no_go_unless_the_limit_allows_it() -> None:
    parked = PreflightFigures(
        events=2_000, p99_latency_ms=180.0, dead_letters=2, drain_s=1.5, parked_customers=1
    )
    verdicts = decide(parked, SloThresholds())
    assert [v.ok for v in verdicts] == [True, True, True, False]
    assert "1 parked by the spike" in render(verdicts, 200)
    assert go(decide(parked, SloThresholds(parked_customers=1)))
