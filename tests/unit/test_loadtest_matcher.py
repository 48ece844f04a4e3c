"""The latency matcher, the summary statistics, the report rendering and the simulated PSPs (all pure)."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from clickcash.loadtest.analysis.matcher import Matcher
from clickcash.loadtest.analysis.report import inject_into_locust_html, plot, render_summary
from clickcash.loadtest.analysis.summary import (
    LagSample,
    build_summary,
    build_timeline,
    drain_stats,
    drain_threshold,
    latency_by_phase,
    latency_stats,
    peak_phase_end,
    percentile,
    phase_at,
    sustained_peak,
)
from clickcash.loadtest.analysis.verify import compare
from clickcash.loadtest.locust_run.monitor import read_timeline, write_timeline
from clickcash.loadtest.traffic.psp_sim import (
    Outage,
    PspSimConfig,
    PspSimulator,
    build_config,
    parse_outages,
    parse_rates,
)
from clickcash.loadtest.traffic.shapes import spike, steady, step

T0 = 1_800_000_000.0


def test_output_after_its_input_gives_a_latency_sample() -> None:
    m = Matcher()
    m.add_input("e1", "order.placed", T0 + 1.0, 0, 10)
    m.add_output("o1", "order.accepted", "e1", T0 + 1.25)
    m.add_output("o2", "payment.route_decided", "e1", T0 + 1.5)
    assert [s.latency_ms for s in m.samples] == [pytest.approx(250), pytest.approx(500)]
    assert m.undecided_orders() == 0 and m.complete()


def test_output_before_its_input_waits_then_matches() -> None:
    m = Matcher()
    m.add_output("o1", "order.rejected", "e1", T0 + 2.0)
    assert m.unmatched_outputs() == 1 and not m.samples
    m.add_input("e1", "order.placed", T0 + 1.0)
    assert m.unmatched_outputs() == 0
    assert m.samples[0].latency_ms == pytest.approx(1000)
    assert m.lost_orders() == []


def test_lost_orders_and_several_decisions() -> None:
    m = Matcher()
    m.add_input("e1", "order.placed", T0)
    m.add_input("e2", "order.placed", T0)
    m.add_input("e3", "payment.authorized", T0)  # may legitimately produce nothing
    m.add_output("o1", "order.accepted", "e1", T0 + 1)
    assert m.lost_orders() == ["e2"] and m.undecided_orders() == 1 and not m.complete()
    m.add_output("o1b", "order.rejected", "e1", T0 + 1)
    assert m.orders_with_several_decisions() == 1


def test_duplicate_output_ids_are_counted_not_matched_twice() -> None:
    m = Matcher()
    m.add_input("e1", "order.placed", T0)
    m.add_output("o1", "order.accepted", "e1", T0 + 1)
    m.add_output("o1", "order.accepted", "e1", T0 + 2)
    assert m.duplicate_outputs == {"order.accepted": 1}
    assert len(m.samples) == 1 and m.decisions["e1"] == 1 and m.output_count == 1


def test_resent_duplicate_keeps_the_first_send_time() -> None:
    m = Matcher()
    m.add_input("e1", "order.placed", T0)
    m.add_input("e1", "duplicate", T0 + 5)
    m.add_output("o1", "order.accepted", "e1", T0 + 1)
    assert m.samples[0].latency_ms == pytest.approx(1000)
    assert m.inputs_by_kind == {"order.placed": 1, "duplicate": 1} and m.input_count == 2


def test_inputs_the_app_generated_are_matched_but_counted_apart() -> None:
    m = Matcher()
    m.add_output("o1", "dunning.step_due", "timer:p1:0", T0 + 2)
    m.add_input("timer:p1:0", "dunning.timer_fired", T0 + 1, generated=False)
    assert m.unmatched_outputs() == 0 and not m.samples, "not part of the load's latency"
    assert m.app_samples[0].latency_ms == pytest.approx(1000)
    assert m.input_count == 0 and m.app_inputs_by_type == {"dunning.timer_fired": 1}
    assert m.complete()


def test_malformed_inputs_match_dead_letters_by_position_in_either_order() -> None:
    m = Matcher()
    m.add_input(None, "malformed", T0, 3, 41)
    m.add_output("d1", "clickcash.dead_letter", None, T0 + 0.3, source_position=(3, 41), dead_letter_code="x")
    m.add_output("d2", "clickcash.dead_letter", None, T0 + 0.4, source_position=(1, 7), dead_letter_code="y")
    assert m.malformed_without_dead_letter() == 0 and m.unmatched_outputs() == 1
    m.add_input(None, "malformed", T0 + 0.1, 1, 7)
    m.add_input(None, "malformed", T0 + 0.2, 1, 8)
    assert m.unmatched_outputs() == 0 and m.malformed_without_dead_letter() == 1
    assert sorted(round(s.latency_ms) for s in m.samples) == [300, 300]
    assert m.dead_letters_by_code == {"x": 1, "y": 1}


def test_percentile_and_latency_stats() -> None:
    values = sorted(random.Random(1).uniform(0, 1000) for _ in range(1001))
    q = statistics.quantiles(values, n=100, method="inclusive")
    assert percentile(values, 50) == pytest.approx(q[49])
    assert percentile(values, 99) == pytest.approx(q[98])
    assert percentile([5.0], 99) == 5.0
    assert latency_stats([]) == {"count": 0}
    s = latency_stats([10, 20, 30, 40, 1000])
    assert s["count"] == 5 and s["p50"] == 30 and s["max"] == 1000
    with pytest.raises(ValueError):
        percentile([], 50)


def test_sustained_peak_is_the_best_window_average() -> None:
    assert sustained_peak([1, 1, 10, 10, 10, 1], window=3) == 10
    assert sustained_peak([1, 1, 10, 10, 1, 1], window=3) == 7
    assert sustained_peak([4, 6], window=10) == 5
    assert sustained_peak([]) == 0


def test_drain_stats() -> None:
    lags = [(0.0, 50), (1.0, 60), (2.0, 900), (3.0, 2_000), (4.0, 1_500), (5.0, 300), (6.0, 90), (7.0, 40)]
    d = drain_stats(lags, threshold=100)
    assert d is not None
    assert (d.peak_lag, d.peak_at_s, d.drained_at_s, d.seconds_to_drain) == (2_000, 3.0, 6.0, 3.0)
    never = drain_stats([(0.0, 10), (1.0, 500), (2.0, 400)], threshold=100)
    assert never is not None and never.drained_at_s is None and never.seconds_to_drain is None
    assert drain_stats([], 100) is None
    # the load's peak phase ended at 4 s: the lag was back under the threshold 2 s later
    after = drain_stats(lags, threshold=100, load_peak_end_s=4.0)
    assert after is not None and after.drained_after_load_peak_s == 2.0
    assert drain_threshold([]) == 100
    assert drain_threshold([60, 80, 100, 90]) == 170
    assert drain_threshold([5, 10]) == 100


def test_peak_phase_end() -> None:
    assert peak_phase_end(spike(100, 5, baseline_s=10, ramp_s=5, hold_s=10, decay_s=5, recovery_s=10)) == 25
    assert peak_phase_end(steady(100, 30)) == 30
    assert peak_phase_end(step(100, 100, 10, 3)) == 30


def test_phases_of_send_times() -> None:
    s = spike(100, 5, baseline_s=10, ramp_s=5, hold_s=10, decay_s=5, recovery_s=10)
    phases = s.phases()
    assert phase_at(phases, -1) == "baseline"
    assert phase_at(phases, 12) == "ramp"
    assert phase_at(phases, 40) == "drain"
    m = Matcher()
    for i, (sent, seen) in enumerate([(1, 1.2), (20, 20.5), (20, 21), (40.5, 41)]):
        m.add_input(f"e{i}", "payment.declined", T0 + sent)
        m.add_output(f"o{i}", "dunning.scheduled", f"e{i}", T0 + seen)
    by_phase = latency_by_phase(m.samples, T0, phases)
    assert by_phase["baseline"]["count"] == 1 and by_phase["peak"]["count"] == 2
    assert by_phase["recovery"]["count"] == 1  # sent just after the end: counted in the last phase
    assert by_phase["decay"] == {"count": 0}


def _small_run() -> tuple[Matcher, list[LagSample]]:
    m = Matcher()
    n = 0
    for sec in range(6):
        for k in range(10 if sec < 3 else 30):
            n += 1
            sent = T0 + sec + k / 40
            m.add_input(f"e{n}", "order.placed", sent)
            m.add_output(f"o{n}", "order.accepted", f"e{n}", sent + (0.1 if sec < 3 else 0.4))
    m.add_input("lost", "order.placed", T0 + 5.5)
    lags = [
        LagSample(T0 + t + 0.5, lag, committed)
        for t, lag, committed in [
            (0, 5, 100),
            (1, 6, 110),
            (2, 4, 120),
            (3, 300, 130),
            (4, 200, 200),
            (5, 50, 260),
            (6, 0, 291),
        ]
    ]
    return m, lags


def test_timeline_buckets_per_second() -> None:
    m, lags = _small_run()
    rows = build_timeline(m, lags, T0, steady(10, 3))
    assert [r.input_rate for r in rows[:6]] == [10, 10, 10, 30, 30, 31]
    assert rows[0].p50_ms == pytest.approx(100) and rows[4].p99_ms == pytest.approx(400)
    assert [r.lag for r in rows[:4]] == [5, 6, 4, 300]
    assert rows[1].processed_rate == pytest.approx(10) and rows[4].processed_rate == pytest.approx(70)
    assert rows[0].phase == "steady" and rows[3].phase == "drain" and rows[3].target_rate is None


def test_summary_numbers() -> None:
    m, lags = _small_run()
    summary, _rows = build_summary(m, lags, T0, steady(10, 3), run_id="lt1")
    assert summary["inputs"]["total"] == 121 and summary["outputs"]["total"] == 120
    assert summary["checks"]["lost_orders"] == 1 and summary["checks"]["lost_order_ids"] == ["lost"]
    assert summary["checks"]["duplicate_outputs"] == 0
    assert summary["lag"]["peak_lag"] == 300 and summary["lag"]["threshold"] == 100
    assert summary["lag"]["seconds_to_drain"] == 2.0
    assert summary["latency_ms"]["by_phase"]["steady"]["count"] == 120
    assert summary["target_events"] == 30
    text = render_summary(summary)
    assert "lost orders (no decision) | 1 of 121" in text and "| steady | 120 |" in text


def test_timeline_csv_round_trip(tmp_path: Path) -> None:
    m, lags = _small_run()
    rows = build_timeline(m, lags, T0, steady(10, 3))
    write_timeline(tmp_path / "t.csv", rows)
    assert read_timeline(tmp_path / "t.csv") == rows


def test_plot_and_html_injection(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    m, lags = _small_run()
    summary, rows = build_summary(
        m, lags, T0, spike(10, 3, baseline_s=1, ramp_s=1, hold_s=1, decay_s=1, recovery_s=1), run_id="x"
    )
    png = plot(rows, summary, tmp_path / "plot.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = tmp_path / "report.html"
    page.write_text("<html><body><div id=root></div></body></html>")
    assert inject_into_locust_html(page, render_summary(summary), png)
    html = page.read_text()
    assert html.index("clickcash-loadtest") < html.rindex("</body>") and "data:image/png;base64," in html
    assert not inject_into_locust_html(tmp_path / "missing.html", "", None)


def test_verification_lists_differences() -> None:
    m, lags = _small_run()
    summary, _ = build_summary(m, lags, T0, steady(10, 3), run_id="x")
    counts = {
        "inputs": {"total": 121, "by_kind": {"order.placed": 121}},
        "outputs": {"total": 120, "by_type": {"order.accepted": 120}},
        "lost_orders": 1,
        "duplicate_outputs": 0,
    }
    assert compare(summary, counts) == []
    counts["outputs"] = {"total": 119, "by_type": {"order.accepted": 119}}
    assert compare(summary, counts) == [
        "outputs: report 120 vs topics 119",
        "outputs order.accepted: report 120 vs topics 119",
    ]


ROUTE = {
    "order_id": "o1",
    "customer_id": "c1",
    "attempt": 1,
    "psp": "adyen",
    "amount_cents": 500,
    "currency": "EUR",
}


def test_psp_simulator_approval_rate_and_latency() -> None:
    sim = PspSimulator(build_config({"psp_approval": "adyen=0.7", "psp_latency_ms": "adyen=200"}), seed=1)
    answers = [sim.answer(ROUTE, 0.0) for _ in range(5_000)]
    approved = sum(1 for a in answers if a[0].type == "payment.authorized")
    assert 0.67 < approved / 5_000 < 0.73
    assert 0.17 < statistics.median(a[0].delay_s for a in answers) < 0.23
    declined = [a for a in answers if a[0].type == "payment.declined"]
    assert all(a[0].data["decline_code"] for a in declined)
    updates = [a[1] for a in declined if len(a) > 1]
    assert updates and all(u.type == "payment_method.updated" and u.delay_s > 0 for u in updates)


def test_psp_simulator_outage_and_attempt_cap() -> None:
    cfg = PspSimConfig(outages=(Outage("adyen", 10, 5),), method_update_rate=1.0, max_attempts=2)
    sim = PspSimulator(cfg)
    during = sim.answer(ROUTE, 12.0)
    assert [(a.type, a.data["decline_code"], a.delay_s) for a in during] == [
        ("payment.declined", "gateway_error", 2.0)
    ]
    assert all(sim.answer({**ROUTE, "psp": "stripe"}, 12.0)[0].data["psp"] == "stripe" for _ in range(3))
    last_attempt = [sim.answer({**ROUTE, "attempt": 2}, 0.0) for _ in range(200)]
    assert all(len(a) == 1 for a in last_attempt)


def test_psp_option_parsing() -> None:
    assert parse_rates("adyen=0.9, stripe=0.8", "x") == {"adyen": 0.9, "stripe": 0.8}
    assert parse_outages("adyen@30+20,stripe@5+1") == (Outage("adyen", 30, 20), Outage("stripe", 5, 1))
    assert build_config({"psp_latency_ms": "150"}).default_latency_ms == 150
    with pytest.raises(ValueError):
        parse_rates("adyen", "x")
    with pytest.raises(ValueError):
        parse_outages("adyen@30")
