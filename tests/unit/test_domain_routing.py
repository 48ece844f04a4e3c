"""PSP routing of issue 3: windowed success rates, scoring, overrides, exploration and circuit breakers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from clickcash.actors.engines.psp_routing import (
    EMPTY_STATS,
    RouteRequest,
    SegmentStats,
    breaker_open,
    draw_from_id,
    eligible,
    record_outcome,
    route_payment,
    stats_key,
    success_rate,
)
from clickcash.config.domain import BreakerPolicy, DomainConfig, Psp, RoutingOverride, RoutingPolicy

POLICY = RoutingPolicy()  # 60 s buckets, 8 kept, prior 0.90 x 20, explore 5 %, breaker 5 in 120 s
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
B = POLICY.bucket_ms


def _psp(name: str, fee_pct: float = 2.0, fixed: int = 30, priority: int = 10, **kw: object) -> Psp:
    return Psp.model_validate(
        {
            "name": name,
            "countries": ["US", "DE"],
            "currencies": ["USD", "EUR"],
            "networks": ["visa", "mastercard"],
            "priority": priority,
            "fee_pct": fee_pct,
            "fee_fixed_cents": fixed,
            **kw,
        }
    )


PSPS = [_psp("a", 1.5, 25), _psp("b", 2.0, 30), _psp("c", 2.9, 30), _psp("d", 2.5, 10)]
REQUEST = RouteRequest("US", "USD", "visa", 10_000)


def _stats(*outcomes: tuple[int, bool, bool], policy: RoutingPolicy = POLICY) -> SegmentStats:
    s = EMPTY_STATS
    for at_ms, approved, technical in outcomes:
        s = record_outcome(s, at_ms, approved, technical, policy)
    return s


def _failing(n: int, at_ms: int = NOW_MS) -> SegmentStats:
    return _stats(*[(at_ms - i * 1000, False, True) for i in range(n)])


# --- stats ----------------------------------------------------------------------------------------------

outcome_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=30 * B), st.booleans(), st.booleans()).map(
        lambda t: (t[0], t[1] and not t[2], t[2])
    ),
    max_size=80,
)


@given(outcomes=outcome_lists)
def test_window_keeps_at_most_max_buckets_and_drops_old_ones(outcomes: list[tuple[int, bool, bool]]) -> None:
    outcomes = sorted(outcomes)
    s = _stats(*outcomes)
    assert len(s.buckets) <= POLICY.max_buckets
    assert [b[0] for b in s.buckets] == sorted({b[0] for b in s.buckets})
    if outcomes:
        last_start = outcomes[-1][0] - outcomes[-1][0] % B
        cutoff = last_start - (POLICY.max_buckets - 1) * B
        assert all(b[0] >= cutoff for b in s.buckets)
        # exactly the outcomes whose bucket is still in the window are counted
        kept = [o for o in outcomes if o[0] - o[0] % B >= cutoff]
        assert s.attempts == len(kept)
        assert s.approvals == sum(o[1] for o in kept)
        assert s.technical_failures == sum(o[2] for o in kept)


def test_success_rate_drops_buckets_that_age_out() -> None:
    s = _stats(*[(NOW_MS, False, False)] * 40)
    assert success_rate(s, POLICY, now_ms=NOW_MS) == pytest.approx((0 + 0.9 * 20) / (40 + 20))
    later = NOW_MS + POLICY.max_buckets * B
    assert success_rate(s, POLICY, now_ms=later) == pytest.approx(0.9)
    # a new outcome far later also drops them from storage
    assert record_outcome(s, later, True, False, POLICY).attempts == 1


def test_prior_keeps_a_new_psp_competitive_and_evidence_wins_over_time() -> None:
    assert success_rate(EMPTY_STATS, POLICY) == pytest.approx(0.90)
    assert success_rate(EMPTY_STATS, POLICY, prior=0.8) == pytest.approx(0.8)
    s = _stats(*[(NOW_MS, i % 2 == 0, False) for i in range(1000)])
    assert success_rate(s, POLICY.model_copy(update={"max_buckets": 8})) == pytest.approx(0.5, abs=0.01)


def test_outcome_cannot_be_approved_and_technical() -> None:
    with pytest.raises(ValueError, match="not both"):
        record_outcome(EMPTY_STATS, NOW_MS, True, True, POLICY)


@given(outcomes=outcome_lists)
def test_stats_encode_decode_round_trip(outcomes: list[tuple[int, bool, bool]]) -> None:
    s = _stats(*sorted(outcomes))
    raw = s.encode()
    assert SegmentStats.decode(raw) == s
    assert len(raw) <= 4 * 20 * POLICY.max_buckets + 2


@pytest.mark.parametrize(
    "raw", [b"", b"{}", b"[1,2,3]", b"[1,2,3,-1]", b"[1,1,1,1]", b"[2,1,0,0,1,1,0,0]", b"[1,1,true,0]"]
)
def test_corrupt_stats_are_an_error_not_silence(raw: bytes) -> None:
    with pytest.raises(ValueError):
        SegmentStats.decode(raw)


def test_breaker_trips_on_failures_and_closes_after_cooldown() -> None:
    assert not breaker_open(_failing(4), NOW_MS, POLICY)
    assert breaker_open(_failing(5), NOW_MS, POLICY)
    bucket_end = NOW_MS - NOW_MS % B + B
    assert breaker_open(_failing(5), bucket_end + POLICY.breaker.cooldown_ms - 1, POLICY)
    assert not breaker_open(_failing(5), bucket_end + POLICY.breaker.cooldown_ms, POLICY)


def test_breaker_trips_on_failure_rate() -> None:
    policy = RoutingPolicy(breaker=BreakerPolicy(min_failures=100, failure_rate=0.5, min_attempts=10))
    mixed = _stats(*[(NOW_MS, i % 2 == 0, i % 2 == 1) for i in range(10)], policy=policy)
    assert breaker_open(mixed, NOW_MS, policy)
    assert not breaker_open(_stats(*[(NOW_MS, False, True)] * 4, policy=policy), NOW_MS, policy)


def test_breaker_window_must_fit_in_the_retained_history() -> None:
    with pytest.raises(ValidationError, match="retained history"):
        RoutingPolicy(bucket_ms=60_000, max_buckets=2, breaker=BreakerPolicy(window_ms=120_000))


# --- routing --------------------------------------------------------------------------------------------

psp_names = ["a", "b", "c", "d"]
stat_kinds = st.sampled_from(["none", "good", "bad", "broken"])


def _stats_of(kind: str) -> SegmentStats | None:
    if kind == "good":
        return _stats(*[(NOW_MS, True, False)] * 30)
    if kind == "bad":
        return _stats(*[(NOW_MS, i % 3 == 0, False) for i in range(30)])
    if kind == "broken":
        return _failing(6)
    return None


@st.composite
def routing_cases(draw: st.DrawFn) -> tuple[RouteRequest, list[Psp], dict[str, SegmentStats], float]:
    psps = [
        p.model_copy(update={"countries": draw(st.sampled_from([["US"], ["DE"], ["US", "DE"]]))})
        for p in PSPS
        if draw(st.booleans())
    ]
    stats = {}
    for p in psps:
        s = _stats_of(draw(stat_kinds))
        if s is not None:
            stats[p.name] = s
    request = RouteRequest(
        draw(st.sampled_from(["US", "DE"])),
        "USD",
        "visa",
        draw(st.integers(min_value=0, max_value=1_000_000)),
        frozenset(draw(st.lists(st.sampled_from(psp_names), unique=True, max_size=2))),
    )
    return request, psps, stats, draw(st.floats(min_value=0, max_value=1, exclude_max=True))


@given(case=routing_cases())
def test_decision_is_eligible_and_none_only_when_nothing_is(
    case: tuple[RouteRequest, list[Psp], dict[str, SegmentStats], float],
) -> None:
    request, psps, stats, draw = case
    names = {p.name for p in psps if eligible(p, request)}
    decision = route_payment(request, psps, policy=POLICY, stats=stats, now=NOW, explore_draw=draw)
    if not names:
        assert decision is None
        return
    assert decision is not None
    assert decision.psp in names
    assert {decision.psp, *decision.fallbacks} == names
    assert len(decision.fallbacks) == len(names) - 1
    codes = [r.code for r in decision.reasons]
    assert codes[:2] == ["eligible", "scored"]
    broken = {n for n in names if breaker_open(stats.get(n, EMPTY_STATS), NOW_MS, POLICY)}
    assert codes.count("breaker_open") == len(broken)
    if names - broken:
        assert decision.psp not in broken
        assert "all_breakers_open" not in codes
        # broken PSPs are the last resort
        assert set(decision.fallbacks[len(decision.fallbacks) - len(broken) :]) == broken - {decision.psp}
    else:
        assert "all_breakers_open" in codes
    healthy_fresh = names - broken - request.avoid
    if healthy_fresh:
        assert decision.psp not in request.avoid
    # deterministic
    again = route_payment(request, psps, policy=POLICY, stats=stats, now=NOW, explore_draw=draw)
    assert again == decision


def test_score_prefers_the_psp_that_approves_despite_a_slightly_higher_fee() -> None:
    stats = {
        "a": _stats(*[(NOW_MS, i % 4 != 0, False) for i in range(200)]),  # 75 % approval, 1.75 % fee
        "b": _stats(*[(NOW_MS, True, False)] * 200),  # ~100 % approval, 2.3 % fee
    }
    decision = route_payment(REQUEST, PSPS[:2], policy=POLICY, stats=stats, now=NOW)
    assert decision is not None
    assert decision.psp == "b"
    assert decision.fallbacks == ["a"]


def test_without_stats_the_per_psp_prior_and_cost_decide() -> None:
    psps = [_psp("cheap", 1.5, 25, expected_approval_pct=85), _psp("good", 2.0, 30, expected_approval_pct=92)]
    decision = route_payment(REQUEST, psps, policy=POLICY, now=NOW)
    assert decision is not None
    assert decision.psp == "good"  # 92 - 2.3 > 85 - 1.75


def test_all_breakers_open_still_returns_the_least_bad_psp() -> None:
    stats = {"a": _failing(9), "b": _failing(6), "c": _failing(7), "d": _failing(8)}
    decision = route_payment(REQUEST, PSPS, policy=POLICY, stats=stats, now=NOW)
    assert decision is not None
    assert decision.psp == "b"
    assert decision.fallbacks == ["c", "d", "a"]
    assert "all_breakers_open" in [r.code for r in decision.reasons]


def test_a_broken_psp_falls_back_down_the_ranked_list() -> None:
    baseline = route_payment(REQUEST, PSPS, policy=POLICY, now=NOW)
    assert baseline is not None
    top = baseline.psp
    decision = route_payment(REQUEST, PSPS, policy=POLICY, stats={top: _failing(5)}, now=NOW)
    assert decision is not None
    assert decision.psp == baseline.fallbacks[0]
    assert decision.fallbacks[-1] == top
    assert any(r.code == "breaker_open" and top in (r.detail or "") for r in decision.reasons)


def test_stats_need_a_clock() -> None:
    with pytest.raises(ValueError, match="needs now"):
        route_payment(REQUEST, PSPS, policy=POLICY, stats={"a": _failing(1)})


def test_exploration_share_converges_to_the_configured_share() -> None:
    n = 20_000
    explored: Counter[str] = Counter()
    for i in range(n):
        d = route_payment(REQUEST, PSPS, policy=POLICY, now=NOW, explore_draw=draw_from_id(f"evt-{i}"))
        assert d is not None
        if "explored" in [r.code for r in d.reasons]:
            explored[d.psp] += 1
    share = sum(explored.values()) / n
    assert share == pytest.approx(POLICY.explore_share, abs=0.006)
    # exploration is uniform over the healthy PSPs
    for name in psp_names:
        assert explored[name] / n == pytest.approx(POLICY.explore_share / 4, abs=0.005)


def test_exploration_never_picks_a_broken_or_avoided_psp() -> None:
    request = RouteRequest("US", "USD", "visa", 10_000, frozenset({"b"}))
    for i in range(500):
        d = route_payment(
            request, PSPS, policy=POLICY, stats={"a": _failing(5)}, now=NOW, explore_draw=i / 10_000
        )
        assert d is not None
        assert d.psp in {"c", "d"}


def test_default_draw_never_explores_and_legacy_call_keeps_cost_ranking(domain: DomainConfig) -> None:
    d = route_payment(REQUEST, PSPS)
    assert d is not None
    assert [r.code for r in d.reasons][:2] == ["eligible", "lowest_expected_fee"]
    assert "explored" not in [r.code for r in d.reasons]


SPLIT = RoutingOverride(name="s", merchant_segment="ent", split_pct={"a": 70, "c": 20})


def test_volume_split_respects_percentages() -> None:
    n = 10_000
    request = RouteRequest("US", "USD", "visa", 10_000, merchant_segment="ent")
    counts: Counter[str] = Counter()
    remainder = 0
    for i in range(n):
        d = route_payment(request, PSPS, policy=POLICY, now=NOW, explore_draw=i / n, overrides=[SPLIT])
        assert d is not None
        codes = [r.code for r in d.reasons]
        if "override_split" in codes:
            counts[d.psp] += 1
        else:
            assert "override_split_remainder" in codes
            remainder += 1
    assert counts == {"a": 7_000, "c": 2_000}
    assert remainder == 1_000


def test_split_is_skipped_when_its_psp_is_broken_and_other_segments_ignore_it() -> None:
    request = RouteRequest("US", "USD", "visa", 10_000, merchant_segment="ent")
    d = route_payment(
        request, PSPS, policy=POLICY, stats={"a": _failing(5)}, now=NOW, explore_draw=0.1, overrides=[SPLIT]
    )
    assert d is not None
    assert d.psp != "a"
    assert "override_skipped" in [r.code for r in d.reasons]
    other = route_payment(REQUEST, PSPS, policy=POLICY, now=NOW, explore_draw=0.1, overrides=[SPLIT])
    assert other is not None
    assert not any(r.code.startswith("override") for r in other.reasons)


def test_pinned_psp_per_campaign_and_its_limits() -> None:
    pin = RoutingOverride(name="p", campaign_id="bf", pin="c")
    request = RouteRequest("US", "USD", "visa", 10_000, campaign_id="bf")
    d = route_payment(request, PSPS, policy=POLICY, now=NOW, overrides=[pin])
    assert d is not None
    assert d.psp == "c"
    assert "override_pinned" in [r.code for r in d.reasons]
    declined = RouteRequest("US", "USD", "visa", 10_000, frozenset({"c"}), campaign_id="bf")
    d = route_payment(declined, PSPS, policy=POLICY, now=NOW, overrides=[pin])
    assert d is not None
    assert d.psp != "c"
    assert "override_skipped" in [r.code for r in d.reasons]
    # a pin never routes to an ineligible PSP
    only_ab = [p for p in PSPS if p.name in ("a", "b")]
    d = route_payment(request, only_ab, policy=POLICY, now=NOW, overrides=[pin])
    assert d is not None
    assert d.psp in ("a", "b")


def test_shipped_routing_policy(domain: DomainConfig) -> None:
    d = route_payment(RouteRequest("US", "USD", "visa", 10_000), domain.psps, policy=domain.routing, now=NOW)
    assert d is not None
    # adyen 90 - 1.75 - 0.2 beats stripe 91 - 3.2 - 0.1 and braintree 88 - 3.08 - 0.3
    assert (d.psp, d.fallbacks) == ("adyen", ["stripe", "braintree"])
    ent = RouteRequest("US", "USD", "visa", 10_000, merchant_segment="enterprise")
    chosen = set()
    for x in (0.1, 0.8):  # adyen 70 %, then stripe 30 % (split in name order)
        split = route_payment(ent, domain.psps, policy=domain.routing, now=NOW, explore_draw=x)
        assert split is not None
        chosen.add(split.psp)
    assert chosen == {"adyen", "stripe"}


def test_stats_key_names_psp_and_segment() -> None:
    assert stats_key("adyen", RouteRequest("US", "USD", "visa", 1)) == "adyen|visa|USD|US"
    assert (
        stats_key("adyen", RouteRequest("US", "USD", "visa", 1, issuer_country="GB")) == "adyen|visa|USD|GB"
    )


def test_draw_from_id_is_uniform_and_stable() -> None:
    draws = [draw_from_id(f"e{i}") for i in range(10_000)]
    assert draws == [draw_from_id(f"e{i}") for i in range(10_000)]
    assert all(0 <= x < 1 for x in draws)
    assert sum(draws) / len(draws) == pytest.approx(0.5, abs=0.02)
    assert draw_from_id("e1", "attempt-2") != draw_from_id("e1")


def test_window_error_bound_is_at_most_one_bucket() -> None:
    # an outcome counted at t is still counted (max_buckets-1) buckets later, gone after max_buckets
    t = NOW_MS - NOW_MS % B  # start of a bucket
    s = _stats((t, False, False))
    assert success_rate(s, POLICY, now_ms=t + (POLICY.max_buckets - 1) * B + B - 1) < 0.9
    assert success_rate(s, POLICY, now_ms=t + POLICY.max_buckets * B) == pytest.approx(0.9)
    assert timedelta(milliseconds=(POLICY.max_buckets - 1) * B) == timedelta(minutes=7)


# --- the per-stats memo ----------------------------------------------------------------------------------


@given(outcomes=outcome_lists, ask_at=st.lists(st.integers(min_value=0, max_value=40 * B), max_size=6))
def test_a_remembered_rate_is_what_the_stats_say_at_every_instant(
    outcomes: list[tuple[int, bool, bool]], ask_at: list[int]
) -> None:
    """The same stats object asked at instants in and out of its window, in any order: every decision's
    rates and breakers are those computed afresh (the memo keys on the window, not the first answer)."""
    policy = RoutingPolicy(ranking="score", explore_share=0.0)
    stats = {"a": _stats(*sorted(outcomes)), "b": EMPTY_STATS}
    for at_ms in ask_at:
        now = datetime.fromtimestamp(at_ms / 1000, UTC)
        decision = route_payment(REQUEST, PSPS[:2], policy=policy, stats=stats, now=now)
        assert decision is not None
        rate = success_rate(stats["a"], policy, now_ms=at_ms)
        scored = next(r for r in decision.reasons if r.code == "scored")
        assert f"(approval {rate:.3f}," in (scored.detail or "").split("a=", 1)[1].split(";")[0]
        assert any(r.code == "breaker_open" for r in decision.reasons) == breaker_open(
            stats["a"], at_ms, policy
        )
