"""``route_payment``'s choice and fallbacks follow the documented ranking, whatever the stats and avoids.

The reference reads the rule from ``route_payment``'s docstring with the public pieces (``success_rate``,
``breaker_failures``, ``expected_fee_cents``): rank by (minus score, fee, priority, name), or by (fee,
priority, name) under the cost ranking; healthy PSPs that did not decline first, then healthy ones that
did, then broken ones by failure ratio, avoided last, then rank. Random tables, random outcomes (technical
failures trip breakers), both rankings, no exploration (``explore_draw`` 1.0).
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from clickcash.actors.engines.psp_routing import (
    EMPTY_STATS,
    RouteRequest,
    SegmentStats,
    breaker_failures,
    eligible,
    expected_fee_cents,
    record_outcome,
    route_payment,
    success_rate,
)
from clickcash.config.domain import Psp, RoutingPolicy

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
NAMES = ["a", "b", "c", "d", "e"]


def _reference(
    request: RouteRequest, psps: list[Psp], policy: RoutingPolicy, stats: dict[str, SegmentStats]
) -> list[str]:
    candidates = [p for p in psps if eligible(p, request)]
    w = policy.weights

    def key(p: Psp) -> tuple[float, int, int, str]:
        s = stats.get(p.name, EMPTY_STATS)
        prior = None if p.expected_approval_pct is None else p.expected_approval_pct / 100
        rate = success_rate(s, policy, now_ms=NOW_MS, prior=prior)
        fee = expected_fee_cents(p, request.amount_cents)
        score = (
            w.success_per_pct * rate * 100
            - w.cost_per_pct * fee * 100 / max(request.amount_cents, 1)
            - w.priority_per_unit * p.priority
        )
        return (0.0 if policy.ranking == "cost" else -score, fee, p.priority, p.name)

    broken = {
        p.name: f
        for p in candidates
        if (f := breaker_failures(stats.get(p.name, EMPTY_STATS), NOW_MS, policy)) is not None
    }
    healthy = sorted((p for p in candidates if p.name not in broken), key=key)
    worst = sorted(
        (p for p in candidates if p.name in broken),
        key=lambda p: (broken[p.name][0] / max(broken[p.name][1], 1), p.name in request.avoid, key(p)),
    )
    order = [p for p in healthy if p.name not in request.avoid]
    order += [p for p in healthy if p.name in request.avoid] + worst
    return [p.name for p in order]


@st.composite
def cases(draw: st.DrawFn) -> tuple[RouteRequest, list[Psp], RoutingPolicy, dict[str, SegmentStats]]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    psps = [
        Psp.model_validate(
            {
                "name": name,
                "countries": ["US"],
                "currencies": ["USD"],
                "networks": draw(st.sampled_from([["visa"], ["visa", "amex"], ["amex"]])),
                "priority": draw(st.integers(min_value=0, max_value=30)),
                "fee_pct": draw(st.sampled_from([1.5, 2.0, 2.9])),
                "fee_fixed_cents": draw(st.sampled_from([10, 25, 30])),
                "expected_approval_pct": draw(st.sampled_from([None, 86.0, 91.0])),
            }
        )
        for name in names
    ]
    policy = RoutingPolicy(ranking=draw(st.sampled_from(["score", "cost"])), explore_share=0.0)
    stats: dict[str, SegmentStats] = {}
    for name in names:
        s = EMPTY_STATS
        for ago_ms, outcome in draw(
            st.lists(
                st.tuples(st.integers(min_value=0, max_value=400_000), st.sampled_from(["ok", "no", "tech"])),
                max_size=30,
            )
        ):
            s = record_outcome(s, NOW_MS - ago_ms, outcome == "ok", outcome == "tech", policy)
        stats[name] = s
    avoid = frozenset(draw(st.lists(st.sampled_from([*names, "gone"]), max_size=2, unique=True)))
    amount = draw(st.integers(min_value=0, max_value=100_000))
    return RouteRequest("US", "USD", "visa", amount, avoid), psps, policy, stats


@settings(max_examples=300)
@given(case=cases())
def test_choice_and_fallbacks_follow_the_documented_ranking(
    case: tuple[RouteRequest, list[Psp], RoutingPolicy, dict[str, SegmentStats]],
) -> None:
    request, psps, policy, stats = case
    decision = route_payment(request, psps, policy=policy, stats=stats, now=NOW)
    expected = _reference(request, psps, policy, stats)
    if not expected:
        assert decision is None
        return
    assert decision is not None
    assert [decision.psp, *decision.fallbacks] == expected
    broken = [r.detail or "" for r in decision.reasons if r.code == "breaker_open"]
    assert broken == sorted(broken)
    assert len(broken) == sum(1 for n in expected if breaker_failures(stats[n], NOW_MS, policy))
