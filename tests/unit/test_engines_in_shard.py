"""The domain engines as the shard runs them: shared PSP stats, campaign limits, tiers and network caps.

Several shards over one in-memory store stand for several shard actors over one Redis.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickcash.actors.contract import OutputTopics, ShardBatch, ShardResult
from clickcash.actors.engines.dunning import assign_tier
from clickcash.actors.engines.psp_stats import REFRESHED_BUCKETS, PspStatsBook, counter_key, segment_of
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import CustomerState, InMemoryStateStore
from clickcash.config.domain import DomainConfig, TierRule
from tests.unit.conftest import build_cloud_event, build_event_data, build_shard_batch

TOPICS = OutputTopics("orders", "payments", "dunning", "dlq")
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
US_VISA = segment_of("visa", "USD", "US")


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Feed:
    """Records of one partition with increasing offsets, any campaign."""

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.offset = 0
        self._ids = itertools.count(1)

    def __call__(
        self, etype: str, customer: str = "c-1", *, campaign: str | None = "spring-sale", **data: Any
    ) -> tuple[int, int, bytes, bytes]:
        eid = f"p{self.partition}-e{next(self._ids)}"
        value = build_cloud_event(
            etype, build_event_data(etype, customer, **data), event_id=eid, campaignid=campaign
        )
        rec = (self.partition, self.offset, customer.encode(), value)
        self.offset += 1
        return rec


def shard_on(store: InMemoryStateStore, domain: DomainConfig, clock: Clock, shard_id: int = 0) -> Shard:
    return Shard(shard_id, TOPICS, domain, store, clock=clock, psp_stats_refresh_ms=0)


def bodies(result: ShardResult, type_: str) -> list[dict[str, Any]]:
    out = []
    for value in result.values:
        ev = orjson.loads(value) if value.startswith(b"{") else None
        if ev is not None and ev.get("type") == type_:
            out.append(ev)
    return out


def batch(records: list[tuple[int, int, bytes, bytes]]) -> ShardBatch:
    """Records without timestamps: the shard decides at its clock, which these tests move."""
    out = build_shard_batch(records)
    out.timestamps_ms = [0] * len(out)
    return out


# --- PSP stats: shared, batched, exactly once -----------------------------------------------------------


def test_gateway_errors_seen_by_one_shard_open_the_breaker_for_another(domain: DomainConfig) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    clock = Clock()
    a, b = shard_on(store, domain, clock, 0), shard_on(store, domain, clock, 1)
    feed_a, feed_b = Feed(0), Feed(1)
    orders = [feed_a("order.placed", f"ca-{i}", order_id=f"oa-{i}") for i in range(8)]
    routed = bodies(a.apply(batch(orders)), "payment.route_decided")
    assert {r["data"]["psp"] for r in routed} == {"adyen"}, "fresh stats: adyen scores best for US visa"
    errors = [
        feed_a("payment.declined", f"ca-{i}", order_id=f"oa-{i}", decline_code="gateway_error")
        for i in range(8)
    ]
    a.apply(batch(errors))

    result = b.apply(batch([feed_b("order.placed", "cb-1", order_id="ob-1")]))
    [route] = bodies(result, "payment.route_decided")
    assert route["data"]["psp"] != "adyen"
    assert route["data"]["fallbacks"][-1] == "adyen", "a PSP with its breaker open is the last fallback"
    assert "breaker_open" in [r["code"] for r in route["data"]["reasons"]]
    assert result.counts["breaker_open:adyen"] == 1


def test_declines_lower_a_psps_rate_for_every_shard(domain: DomainConfig) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    clock = Clock()
    a, b = shard_on(store, domain, clock, 0), shard_on(store, domain, clock, 1)
    feed = Feed(0)
    orders = [feed("order.placed", f"c-{i}", order_id=f"o-{i}") for i in range(30)]
    a.apply(batch(orders))
    # soft declines: no breaker, but the approval rate drops far enough that stripe outscores adyen
    a.apply(batch([feed("payment.declined", f"c-{i}", order_id=f"o-{i}") for i in range(30)]))
    [route] = bodies(b.apply(batch([Feed(1)("order.placed", "x", order_id="ox")])), "payment.route_decided")
    assert route["data"]["psp"] == "stripe"
    assert "breaker_open" not in [r["code"] for r in route["data"]["reasons"]]


def test_a_replayed_batch_does_not_count_its_outcomes_twice(domain: DomainConfig) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    clock = Clock()
    shard = shard_on(store, domain, clock)
    feed = Feed(0)
    shard.apply(batch([feed("order.placed", order_id="o-1")]))
    outcome = batch([feed("payment.declined", order_id="o-1", decline_code="gateway_error")])
    shard.apply(outcome)
    shard.apply(outcome)  # the router rewound: same partition and offset
    start_ms = int(START.timestamp() * 1000) // 60_000 * 60_000
    key = counter_key("adyen", US_VISA, start_ms, "a")
    assert store.counters[key][1] == 1
    assert store.counters[counter_key("adyen", US_VISA, start_ms, "t")][1] == 1


def test_stats_book_reads_only_eligible_psps_and_refreshes_when_stale(domain: DomainConfig) -> None:
    book = PspStatsBook(domain.routing, list(domain.psps), refresh_ms=1_000)
    now_ms = int(START.timestamp() * 1000)
    keys = book.keys_to_load([US_VISA], now_ms)
    psps = {k.split("|")[0].removeprefix("psp:") for k in keys}
    assert psps == {"stripe", "adyen", "braintree"}, "paypal does not take visa"
    assert len(keys) == 3 * domain.routing.max_buckets * 3
    book.absorb(dict.fromkeys(keys, 0), now_ms)
    assert book.keys_to_load([US_VISA], now_ms + 999) == []
    refresh = 3 * REFRESHED_BUCKETS * 3
    assert len(book.keys_to_load([US_VISA], now_ms + 1_000)) == refresh, "only buckets still counting"
    assert book.keys_to_load([], now_ms + 1_000) == [], "a segment no batch or retry uses is not re-read"
    book.stats_for(US_VISA, now_ms + 1_000)  # a retry routed on the stale segment
    assert len(book.keys_to_load([], now_ms + 1_001)) == refresh


def test_a_refresh_replaces_the_newest_buckets_and_keeps_the_older_ones(domain: DomainConfig) -> None:
    book = PspStatsBook(domain.routing, list(domain.psps), refresh_ms=1_000)
    bucket = domain.routing.bucket_ms
    now_ms = int(START.timestamp() * 1000) // bucket * bucket + 1_000
    old, current = now_ms - 1_000 - 3 * bucket, now_ms - 1_000
    first = dict.fromkeys(book.keys_to_load([US_VISA], now_ms), 0)
    first |= {counter_key("adyen", US_VISA, old, "a"): 5, counter_key("adyen", US_VISA, old, "o"): 4}
    first |= {counter_key("adyen", US_VISA, current, "a"): 2, counter_key("adyen", US_VISA, current, "o"): 2}
    book.absorb(first, now_ms)
    later = now_ms + 1_000
    keys = book.keys_to_load([US_VISA], later)
    assert {int(k.split("|")[4]) for k in keys} == {current, current - bucket}
    refreshed = dict.fromkeys(keys, 0) | {
        counter_key("adyen", US_VISA, current, "a"): 7,  # other shards counted meanwhile
        counter_key("adyen", US_VISA, current, "o"): 6,
    }
    book.absorb(refreshed, later)
    stats = book.stats_for(US_VISA)["adyen"]
    assert stats.buckets == ((old, 5, 4, 0), (current, 7, 6, 0))


def test_a_retry_on_a_never_loaded_segment_loads_it_with_the_next_batch(domain: DomainConfig) -> None:
    book = PspStatsBook(domain.routing, list(domain.psps), refresh_ms=1_000)
    now_ms = int(START.timestamp() * 1000)
    assert book.stats_for(US_VISA) == {}
    keys = book.keys_to_load([], now_ms)
    assert len(keys) == 3 * domain.routing.max_buckets * 3
    book.absorb(dict.fromkeys(keys, 0), now_ms)
    assert book.keys_to_load([], now_ms + 10) == []


def test_own_outcomes_count_at_once_and_old_buckets_age_out(domain: DomainConfig) -> None:
    book = PspStatsBook(domain.routing, list(domain.psps))
    now_ms = int(START.timestamp() * 1000)
    inc = book.record("adyen", US_VISA, now_ms, approved=False, technical=True)
    book.committed(inc, now_ms)
    assert book.stats_for(US_VISA)["adyen"].technical_failures == 1
    later = now_ms + domain.routing.bucket_ms * (domain.routing.max_buckets + 1)
    book.committed(book.record("adyen", US_VISA, later, approved=True, technical=False), later)
    stats = book.stats_for(US_VISA)["adyen"]
    assert (stats.attempts, stats.approvals, stats.technical_failures) == (1, 1, 0)


# --- orders: the per-customer campaign guard ------------------------------------------------------------


def test_campaign_quantity_limit_counts_the_customers_earlier_orders(domain: DomainConfig) -> None:
    shard = shard_on(InMemoryStateStore(clock=lambda: 1_000.0), domain, Clock())
    feed = Feed(0)
    one = [{"sku": "TSHIRT-RED", "quantity": 1, "unit_price_cents": 2000}]
    doorbuster = "black-friday-doorbusters"  # 2 units per customer
    result = shard.apply(
        batch(
            [
                feed("order.placed", order_id="o-1", items=one, total_cents=2000, campaign=doorbuster),
                feed("order.placed", order_id="o-2", items=one, total_cents=2000, campaign=doorbuster),
                feed("order.placed", order_id="o-3", items=one, total_cents=2000, campaign=doorbuster),
                feed("order.placed", order_id="o-4", items=one, total_cents=2000, campaign="spring-sale"),
            ]
        )
    )
    decisions = [
        (v["data"]["order_id"], v["type"]) for v in map(orjson.loads, result.values) if "order" in v["type"]
    ]
    assert decisions == [
        ("o-1", "order.accepted"),
        ("o-2", "order.accepted"),
        ("o-3", "order.rejected"),
        ("o-4", "order.accepted"),
    ]
    [rejected] = bodies(result, "order.rejected")
    assert [r["code"] for r in rejected["data"]["reasons"]] == ["campaign_quantity_limit"]
    routes = bodies(result, "payment.route_decided")
    doorbuster_routes = [r for r in routes if r["campaignid"] == doorbuster]
    assert {r["data"]["psp"] for r in doorbuster_routes} == {"adyen"}
    assert all("override_pinned" in [x["code"] for x in r["data"]["reasons"]] for r in doorbuster_routes)


def test_enterprise_orders_are_split_between_the_configured_psps(domain: DomainConfig) -> None:
    shard = shard_on(InMemoryStateStore(clock=lambda: 1_000.0), domain, Clock())
    feed = Feed(0)
    orders = [
        feed("order.placed", f"c-{i}", order_id=f"o-{i}", merchant_segment="enterprise") for i in range(400)
    ]
    routes = bodies(shard.apply(batch(orders)), "payment.route_decided")
    split = [r["data"]["psp"] for r in routes]
    assert set(split) == {"adyen", "stripe"}
    assert 0.6 < split.count("adyen") / len(split) < 0.8, "70/30 split"


# --- dunning: tiers and network caps from the customer's history -----------------------------------------


def _retry_count(result: ShardResult) -> int:
    [scheduled] = bodies(result, "dunning.scheduled")
    return sum(1 for s in scheduled["data"]["steps"] if s["kind"] == "retry")


def test_a_valuable_long_standing_customer_gets_the_vip_schedule(domain: DomainConfig) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    shard = shard_on(store, domain, Clock())
    feed = Feed(0)
    since = (START - timedelta(days=400)).date()
    shard.apply(
        batch(
            [
                feed("customer.preferences_updated", customer_since=since.isoformat()),
                feed("order.placed", order_id="o-1"),
                feed("payment.authorized", order_id="o-1", amount_cents=60_000),
                feed("order.placed", order_id="o-2"),
            ]
        )
    )
    vip = shard.apply(batch([feed("payment.declined", order_id="o-2")]))
    assert _retry_count(vip) == len(domain.dunning.tiers["vip"].soft_retry_offsets_h or [])

    newcomer = shard.apply(
        batch([feed("order.placed", "new", order_id="n-1"), feed("payment.declined", "new", order_id="n-1")])
    )
    assert _retry_count(newcomer) == len(domain.dunning.soft_retry_offsets_h)


def test_a_cards_plans_together_never_exceed_the_network_cap(domain: DomainConfig) -> None:
    """Visa allows 15 retries per card in 30 days: open plans for several orders share that budget."""
    shard = shard_on(InMemoryStateStore(clock=lambda: 1_000.0), domain, Clock())
    feed = Feed(0)
    total = 0
    for i in range(6):
        result = shard.apply(
            batch([feed("order.placed", order_id=f"o-{i}"), feed("payment.declined", order_id=f"o-{i}")])
        )
        total += _retry_count(result)
    cap = domain.dunning.network_limits["visa"].max_retries_30d
    assert cap is not None and total == cap, "plans fill the budget and stop there"


def test_tenure_counts_from_the_first_event_without_crm_data(domain: DomainConfig) -> None:
    state = CustomerState(first_seen_ms=0)
    assert state.tenure_days(86_400_000 * 3 + 5) == 3
    since = datetime.combine(date(2020, 1, 1), datetime.min.time(), UTC)
    state.customer_since_ms = int(since.timestamp() * 1000)
    assert state.tenure_days(int(START.timestamp() * 1000)) > 2000


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    actions=st.lists(
        st.tuples(
            st.sampled_from(["order", "decline", "authorize", "new_card"]),
            st.integers(0, 7),
            st.sampled_from(["51", "05", "gateway_error", "91", "14"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_property_a_card_never_has_more_retries_than_the_network_allows(
    domain: DomainConfig, actions: list[tuple[str, int, str]]
) -> None:
    store = InMemoryStateStore(clock=lambda: 1_000.0)
    clock = Clock()
    shard = shard_on(store, domain, clock)
    feed = Feed(0)
    cap = domain.dunning.network_limits["visa"].max_retries_30d
    assert cap is not None
    for action, n, code in actions:
        if action == "order":
            record = feed("order.placed", order_id=f"o-{n}")
        elif action == "decline":
            record = feed("payment.declined", order_id=f"o-{n}", decline_code=code)
        elif action == "authorize":
            record = feed("payment.authorized", order_id=f"o-{n}")
        else:
            record = feed("payment_method.updated")
        shard.apply(batch([record]))
        clock.now += timedelta(hours=1)
        _, doc = store.customers["c-1"]
        state = CustomerState.decode(doc)
        now_ms = int(clock.now.timestamp() * 1000)
        assert state.retries_counted(now_ms, 30 * 86_400_000, except_order="") <= cap


def test_tiers_follow_the_first_matching_rule(domain: DomainConfig) -> None:
    policy = domain.dunning
    assert assign_tier(policy, 60_000, 400) == "vip"
    assert assign_tier(policy, 60_000, 10) == "standard", "value alone does not make a VIP"
    assert assign_tier(policy, 10, 400) == "standard"
    custom = policy.model_copy(
        update={
            "tier_rules": [
                TierRule(tier="trial", max_tenure_days=14, max_lifetime_value_cents=1),
                *policy.tier_rules,
            ]
        }
    )
    assert assign_tier(custom, 0, 3) == "trial"
    assert assign_tier(custom, 0, 14) == "standard"


def test_after_insufficient_funds_the_retry_stays_with_the_best_psp(domain: DomainConfig) -> None:
    """51 would decline at any PSP: switching buys nothing, so the retry is routed on score alone."""
    shard = shard_on(InMemoryStateStore(clock=lambda: 1_000.0), domain, Clock())
    feed = Feed(0)
    history = [feed("order.placed", f"h-{i}", order_id=f"h-{i}") for i in range(30)]
    history += [feed("payment.authorized", f"h-{i}", order_id=f"h-{i}", psp="adyen") for i in range(30)]
    shard.apply(batch(history))  # adyen approves well in this segment
    shard.apply(batch([feed("order.placed", order_id="o-1")]))
    shard.apply(batch([feed("payment.declined", order_id="o-1", decline_code="51", psp="adyen")]))
    [retry] = bodies(shard.apply(batch([feed("payment_method.updated")])), "payment.route_decided")
    assert "avoided_after_decline" not in [r["code"] for r in retry["data"]["reasons"]]
    assert retry["data"]["psp"] == "adyen"

    shard.apply(batch([feed("order.placed", order_id="o-2")]))
    shard.apply(batch([feed("payment.declined", order_id="o-2", decline_code="gateway_error", psp="adyen")]))
    routes = bodies(shard.apply(batch([feed("payment_method.updated")])), "payment.route_decided")
    after_error = next(r for r in routes if r["data"]["order_id"] == "o-2")
    assert after_error["data"]["psp"] != "adyen", "a technical failure is the PSP's: retry elsewhere"
