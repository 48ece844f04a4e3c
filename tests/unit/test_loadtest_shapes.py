"""Load shapes: the schedule's rates and phases, the Locust tick, user pacing, and the shared options."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.loadtest.locust_run.options import (
    ALL_OPTIONS,
    SHAPE_OPTIONS,
    TRAFFIC_OPTIONS,
    add_options,
    apply_config,
    forward_args,
)
from clickcash.loadtest.locust_run.options import campaign_mix as mix_from_options
from clickcash.loadtest.locust_run.options import shape_params as params_from_options
from clickcash.loadtest.traffic.shapes import (
    Phase,
    RateSchedule,
    ShapeParams,
    default_user_rate,
    pacing_due,
    spike,
    steady,
    step,
    tick,
    users_for,
)


def _spike() -> RateSchedule:
    return spike(300, 10, baseline_s=20, ramp_s=10, hold_s=40, decay_s=10, recovery_s=30)


def test_spike_rates_over_time() -> None:
    s = _spike()
    assert s.duration_s == 110
    assert s.rate_at(0) == 300 and s.rate_at(19.9) == 300
    assert s.rate_at(25) == pytest.approx(1_650)  # half-way up the ramp
    assert s.rate_at(30) == 3_000 and s.rate_at(69.9) == 3_000
    assert s.rate_at(75) == pytest.approx(1_650)  # half-way down
    assert s.rate_at(80) == 300 and s.rate_at(109.9) == 300
    assert s.rate_at(110) is None and s.rate_at(500) is None
    assert s.peak_rate == 3_000


def test_spike_phases_are_named_and_contiguous() -> None:
    assert _spike().phases() == [
        Phase("baseline", 0, 20),
        Phase("ramp", 20, 30),
        Phase("peak", 30, 70),
        Phase("decay", 70, 80),
        Phase("recovery", 80, 110),
    ]
    assert _spike().phase_at(45) == "peak" and _spike().phase_at(110) is None


def test_spike_without_ramp_or_recovery_jumps() -> None:
    s = spike(100, 5, baseline_s=10, ramp_s=0, hold_s=10, decay_s=0, recovery_s=0)
    assert [p.name for p in s.phases()] == ["baseline", "peak"]
    assert s.rate_at(9.99) == 100 and s.rate_at(10) == 500


def test_expected_events_is_the_integral() -> None:
    # 20*300 + 10*(300+3000)/2 + 40*3000 + 10*(3000+300)/2 + 30*300
    assert _spike().expected_events() == pytest.approx(6_000 + 16_500 + 120_000 + 16_500 + 9_000)
    assert _spike().expected_events(0, 20) == pytest.approx(6_000)
    assert _spike().expected_events(20, 25) == pytest.approx(5 * (300 + 1_650) / 2)


def test_step_and_steady() -> None:
    s = step(100, 50, 10, 3)
    assert [s.rate_at(t) for t in (0, 9.9, 10, 25, 29.9)] == [100, 100, 150, 200, 200]
    assert [p.name for p in s.phases()] == ["step 1", "step 2", "step 3"]
    assert s.rate_at(30) is None
    st_ = steady(250, 60)
    assert st_.rate_at(59) == 250 and st_.phases() == [Phase("steady", 0, 60)]


def test_shape_params_build_each_kind() -> None:
    assert ShapeParams(shape="steady", rate=10, duration_s=5).schedule().duration_s == 5
    assert ShapeParams(shape="step", rate=10, step_s=5, steps=4).schedule().rate_at(16) == 40
    assert ShapeParams(shape="step", rate=10, step_rate=1, step_s=5, steps=4).schedule().rate_at(16) == 13
    assert ShapeParams().schedule().kind == "spike"
    with pytest.raises(ValueError, match="unknown shape"):
        ShapeParams(shape="wave").schedule()  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        spike(100, 0.5, baseline_s=1, ramp_s=1, hold_s=1, decay_s=1, recovery_s=1)
    with pytest.raises(ValueError):
        step(100, 10, 5, 0)


def test_schedule_round_trips_as_json() -> None:
    s = _spike()
    assert RateSchedule.from_dict(s.to_dict()) == s


def test_tick_turns_the_rate_into_users() -> None:
    s = _spike()
    user_rate = default_user_rate(s)
    assert user_rate == 15  # the baseline runs 20 users
    assert tick(s, 0, user_rate) == (20, 20.0)
    assert tick(s, 50, user_rate) == (200, 200.0)
    users, _ = tick(s, 25, user_rate) or (0, 0.0)
    assert users == 110
    assert tick(s, 110, user_rate) is None


def test_users_for_and_default_user_rate() -> None:
    assert users_for(0, 10) == 0
    assert users_for(1, 10) == 1
    assert users_for(3_000, 15) == 200
    assert default_user_rate(steady(5, 10)) == 1.0


def test_pacing_publishes_what_is_owed_and_gives_up_old_debt() -> None:
    assert pacing_due(1.0, 20, 0, 10) == (10, 10)
    assert pacing_due(1.0, 20, 15, 10) == (5, 0)
    assert pacing_due(1.0, 20, 20, 10) == (0, 0)
    assert pacing_due(0.04, 20, 0, 10) == (0, 0)
    # a user keeps its rate over time
    sent, published = 0, 0
    for i in range(1, 201):
        due, gone = pacing_due(i * 0.05, 15, sent, 7)
        sent += due + gone
        published += due
    assert published == 150


@given(
    baseline=st.floats(1, 5_000),
    peak_x=st.floats(1, 50),
    durations=st.lists(st.floats(0.5, 100), min_size=5, max_size=5),
    t=st.floats(0, 1),
)
def test_spike_is_continuous_and_bounded(
    baseline: float, peak_x: float, durations: list[float], t: float
) -> None:
    s = spike(
        baseline,
        peak_x,
        baseline_s=durations[0],
        ramp_s=durations[1],
        hold_s=durations[2],
        decay_s=durations[3],
        recovery_s=durations[4],
    )
    at = t * s.duration_s * 0.999
    rate = s.rate_at(at)
    assert rate is not None
    assert baseline * (1 - 1e-9) <= rate <= baseline * peak_x * (1 + 1e-9)
    phases = s.phases()
    assert phases[0].start_s == 0 and phases[-1].end_s == pytest.approx(s.duration_s)
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(phases))
    # no jumps at phase boundaries
    for p in phases[1:]:
        before, after = s.rate_at(p.start_s - 1e-9), s.rate_at(p.start_s)
        assert before is not None and after is not None
        assert after == pytest.approx(before, rel=1e-6, abs=1e-3)
    assert s.expected_events() == pytest.approx(
        sum((seg.start_rate + seg.end_rate) / 2 * seg.duration_s for seg in s.segments)
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_options(p, ALL_OPTIONS)
    return p


def test_options_forward_to_locust_unchanged() -> None:
    args = _parser().parse_args(["--shape", "step", "--rate", "120", "--steps", "3", "--closed-loop"])
    again = _parser().parse_args(forward_args(args, SHAPE_OPTIONS + TRAFFIC_OPTIONS))
    assert params_from_options(again) == params_from_options(args)
    assert params_from_options(args).schedule().rate_at(45) == 360
    assert mix_from_options(again) == mix_from_options(args)
    assert not mix_from_options(args).payment_outcomes


def test_config_file_sets_what_the_command_line_did_not(tmp_path: Path) -> None:
    cfg = tmp_path / "spike.toml"
    cfg.write_text('[loadtest]\nshape = "spike"\nrate = 1000\npeak-x = 20\nhold_s = 90\n')
    args = _parser().parse_args(["--rate", "300"])
    apply_config(args, cfg)
    assert (args.rate, args.peak_x, args.hold_s) == (300, 20, 90)
    cfg.write_text("rate = 1\nbogus = 2\n")
    with pytest.raises(ValueError, match="bogus"):
        apply_config(_parser().parse_args([]), cfg)
    cfg.write_text('shape = "wave"\n')
    with pytest.raises(ValueError, match="shape"):
        apply_config(_parser().parse_args([]), cfg)
