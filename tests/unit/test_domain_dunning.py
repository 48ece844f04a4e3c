"""Dunning of issue 3: tiers, quiet hours and holidays in the customer's zone, channels and network caps."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from clickcash.actors.engines.dunning import CustomerProfile, classify_decline, network_limit, plan_dunning
from clickcash.config.domain import (
    DomainConfig,
    DunningPolicy,
    DunningTier,
    NetworkRetryLimit,
    QuietHours,
    parse_holiday,
)
from clickcash.events import PaymentDeclined

CAT1 = ["04", "07", "12", "14", "15", "41", "43", "46", "57", "R0", "R1", "R3"]
CODES = ["05", "51", "54", "61", "91", "96", "timeout", "zz", "04", "14", "R1"]
CHANNELS = ["email", "sms", "push"]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
]
NETWORKS = [None, "visa", "mastercard", "amex"]


def _declined(code: str) -> PaymentDeclined:
    return PaymentDeclined(
        order_id="o-1",
        customer_id="c-1",
        attempt=1,
        psp="adyen",
        amount_cents=1000,
        currency="USD",
        decline_code=code,
    )


offsets = st.lists(st.floats(min_value=0.01, max_value=24 * 40, allow_nan=False), min_size=1, max_size=12)
hours = st.integers(min_value=0, max_value=23)


@st.composite
def quiet_hours(draw: st.DrawFn) -> QuietHours | None:
    if draw(st.booleans()):
        return None
    start = draw(hours)
    end = draw(hours.filter(lambda h: h != start))
    return QuietHours(start=time(start, draw(st.sampled_from([0, 30]))), end=time(end))


@st.composite
def policies(draw: st.DrawFn) -> DunningPolicy:
    hard = draw(st.lists(st.sampled_from(CODES), unique=True, max_size=4))
    technical = draw(st.lists(st.sampled_from([c for c in CODES if c not in hard]), unique=True, max_size=3))
    limits = {
        "visa": NetworkRetryLimit(
            max_retries_30d=draw(st.integers(min_value=0, max_value=15)), never_retry_codes=CAT1
        ),
        "mastercard": NetworkRetryLimit(
            max_retries_30d=draw(st.integers(min_value=0, max_value=35)),
            max_retries_24h=draw(st.integers(min_value=1, max_value=4)),
        ),
    }
    if draw(st.booleans()):
        limits["*"] = NetworkRetryLimit(max_retries_30d=draw(st.integers(min_value=0, max_value=10)))
    holidays = {
        "*": draw(st.lists(st.sampled_from(["01-01", "12-25", "03-03", "03-10"]), unique=True, max_size=3)),
        "DE": draw(st.lists(st.sampled_from(["2026-03-04", "03-05", "10-03"]), unique=True, max_size=3)),
    }
    return DunningPolicy(
        hard_codes=hard,
        technical_codes=technical,
        soft_retry_offsets_h=draw(offsets),
        technical_retry_offsets_h=draw(offsets),
        reminder_channel=draw(st.sampled_from([*CHANNELS, "letter"])),
        reminder_offsets_h=draw(st.lists(st.sampled_from([0.0, 24.0, 72.0, 168.0]), min_size=1, max_size=4)),
        escalation_after_h=draw(st.one_of(st.none(), st.sampled_from([48.0, 240.0]))),
        tiers={
            "vip": DunningTier(
                soft_retry_offsets_h=draw(offsets),
                escalation_after_h=200.0,
                escalation_min_tenure_days=draw(st.integers(min_value=0, max_value=400)),
            )
        },
        quiet_hours=draw(quiet_hours()),
        holidays=holidays,
        network_limits=limits,
    )


profiles = st.builds(
    CustomerProfile,
    timezone=st.sampled_from(ZONES),
    channels=st.lists(st.sampled_from(CHANNELS), unique=True, max_size=3).map(tuple),
    tier=st.sampled_from(["standard", "vip", "gold"]),
    tenure_days=st.integers(min_value=0, max_value=2000),
    country=st.sampled_from([None, "DE", "US"]),
)
times = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.sampled_from([UTC])
)


@given(
    policy=policies(),
    code=st.sampled_from(CODES),
    now=times,
    profile=st.one_of(st.none(), profiles),
    channels=st.lists(st.sampled_from(CHANNELS), unique=True, max_size=3),
    network=st.sampled_from(NETWORKS),
    used_30d=st.integers(min_value=0, max_value=40),
    used_24h=st.integers(min_value=0, max_value=5),
    advice=st.sampled_from([None, "03", "21", "24", "30", "99"]),
)
def test_every_plan_keeps_every_rule(
    policy: DunningPolicy,
    code: str,
    now: datetime,
    profile: CustomerProfile | None,
    channels: list[str],
    network: str | None,
    used_30d: int,
    used_24h: int,
    advice: str | None,
) -> None:
    plan = plan_dunning(
        _declined(code),
        policy,
        now,
        channels,
        profile=profile,
        retries_last_30d=used_30d,
        retries_last_24h=used_24h,
        network=network,
        advice_code=advice,
    )
    retries = [s.due_at for s in plan.steps if s.kind == "retry"]
    # hard declines (configured, network never-retry, Mastercard stop advice) are never retried
    assert plan.decline_class == classify_decline(code, policy, network=network, advice_code=advice)
    never = code in policy.hard_codes or code in network_limit(policy, network).never_retry_codes
    if network in (None, "mastercard") and advice in ("03", "21"):
        never = True
    assert (plan.decline_class == "hard") == never
    if plan.decline_class == "hard":
        assert retries == []
    # the network caps: never more than what is left in 30 days, nor the daily cap in any 24 h
    limit = network_limit(policy, network)
    if limit.max_retries_30d is not None:
        assert len(retries) <= max(0, limit.max_retries_30d - used_30d)
        if plan.decline_class != "hard" and used_30d >= limit.max_retries_30d:
            assert plan.exhausted
            assert "network_retry_limit_reached" in [r.code for r in plan.reasons]
    if limit.max_retries_24h is not None:
        for t in retries:
            in_window = sum(1 for r in retries if t - timedelta(hours=24) < r <= t)
            prior = used_24h if t - timedelta(hours=24) < now else 0
            assert in_window + prior <= limit.max_retries_24h
    # strictly increasing, never before now
    dues = [s.due_at for s in plan.steps]
    assert all(a < b for a, b in pairwise(dues))
    assert all(d >= now for d in dues)
    assert plan.next_wake() == (dues[0] if dues else None)
    # quiet hours and holidays in the customer's own zone
    tz = ZoneInfo(profile.timezone) if profile else UTC
    days = set(policy.holidays.get("*", []))
    if profile and profile.country:
        days |= set(policy.holidays.get(profile.country, []))
    parsed = {parse_holiday(d) for d in days}
    for d in dues:
        local = d.astimezone(tz)
        if policy.quiet_hours is not None:
            assert not policy.quiet_hours.contains(local.time().replace(tzinfo=None)), (
                local,
                policy.quiet_hours,
            )
        assert (local.year, local.month, local.day) not in parsed
        assert (None, local.month, local.day) not in parsed
    # reminders only on allowed channels, none without one
    allowed = list(profile.channels) if profile else channels
    reminders = [s for s in plan.steps if s.kind == "reminder"]
    assert all(s.channel in allowed for s in reminders)
    if not allowed:
        assert reminders == []
    assert all(s.channel is None for s in plan.steps if s.kind != "reminder")
    # equal inputs, equal plan
    again = plan_dunning(
        _declined(code),
        policy,
        now,
        channels,
        profile=profile,
        retries_last_30d=used_30d,
        retries_last_24h=used_24h,
        network=network,
        advice_code=advice,
    )
    assert again == plan


# --- examples with the shipped policy -------------------------------------------------------------------


def test_visa_category_1_is_hard_even_if_not_in_hard_codes(domain: DomainConfig) -> None:
    policy = domain.dunning.model_copy(update={"hard_codes": []})
    for code in CAT1:
        assert classify_decline(code, policy, network="visa") == "hard"
        plan = plan_dunning(
            _declined(code), policy, datetime(2026, 3, 2, 10, tzinfo=UTC), ["email"], network="visa"
        )
        assert plan.retry_count == 0
        assert "visa_category_1" in [r.code for r in plan.reasons]
    # the network unknown: the strictest rules apply
    assert classify_decline("R1", policy) == "hard"
    assert classify_decline("R1", policy, network="mastercard") == "soft"


def test_hard_decline_goes_straight_to_an_update_reminder(domain: DomainConfig) -> None:
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    plan = plan_dunning(_declined("54"), domain.dunning, now, ["email"])
    assert [(s.kind, s.due_at, s.channel) for s in plan.steps] == [("reminder", now, "email")]
    assert not plan.exhausted


def test_a_decline_late_in_berlin_reminds_at_eight_next_morning(domain: DomainConfig) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 3, 2, 22, 30, tzinfo=berlin)
    profile = CustomerProfile(timezone="Europe/Berlin", channels=("sms",), country="DE")
    plan = plan_dunning(_declined("51"), domain.dunning, now, [], profile=profile, network="visa")
    first = plan.steps[0]
    assert first.kind == "reminder"
    assert first.channel == "sms"
    assert first.due_at.astimezone(berlin) == datetime(2026, 3, 3, 8, 0, tzinfo=berlin)
    assert plan.nominal_due[0] == now.astimezone(UTC)
    assert "shifted_for_quiet_hours" in [r.code for r in plan.reasons]
    # retries keep their wall-clock time (22:30) only if allowed: they all moved to 08:00 too
    assert all(s.due_at.astimezone(berlin).time() == time(8, 0) for s in plan.steps)


def test_holidays_move_steps_to_the_next_allowed_morning(domain: DomainConfig) -> None:
    ny = ZoneInfo("America/New_York")
    now = datetime(2026, 12, 24, 10, 0, tzinfo=ny)  # +24 h lands on Christmas Day
    profile = CustomerProfile(timezone="America/New_York", channels=("email",), country="US")
    plan = plan_dunning(_declined("51"), domain.dunning, now, [], profile=profile)
    retry_days = [s.due_at.astimezone(ny).date() for s in plan.steps if s.kind == "retry"]
    assert retry_days[0] == datetime(2026, 12, 26).date()
    assert plan.steps[1].due_at.astimezone(ny).time() == time(8, 0)
    assert "shifted_for_holiday" in [r.code for r in plan.reasons]


def test_dst_gap_does_not_break_quiet_hours() -> None:
    policy = DunningPolicy(
        hard_codes=[],
        technical_codes=[],
        soft_retry_offsets_h=[1, 2, 3],
        technical_retry_offsets_h=[1],
        quiet_hours=QuietHours(start=time(1, 0), end=time(2, 30)),  # 02:30 does not exist on 2026-03-08 NY
    )
    ny = ZoneInfo("America/New_York")
    now = datetime(2026, 3, 8, 0, 30, tzinfo=ny)
    profile = CustomerProfile(timezone="America/New_York", channels=("email",))
    plan = plan_dunning(_declined("51"), policy, now, [], profile=profile)
    for s in plan.steps:
        assert policy.quiet_hours is not None
        assert not policy.quiet_hours.contains(s.due_at.astimezone(ny).time())


def test_vip_gets_more_retries_and_a_human_only_with_tenure(domain: DomainConfig) -> None:
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    standard = plan_dunning(_declined("51"), domain.dunning, now, ["email"])
    vip_new = CustomerProfile(channels=("email",), tier="vip", tenure_days=10)
    vip_old = CustomerProfile(channels=("email",), tier="vip", tenure_days=400)
    new = plan_dunning(_declined("51"), domain.dunning, now, [], profile=vip_new, network="visa")
    old = plan_dunning(_declined("51"), domain.dunning, now, [], profile=vip_old, network="visa")
    assert new.retry_count > standard.retry_count
    assert [s.kind for s in new.steps].count("reminder") == 3
    assert "escalation" not in [s.kind for s in new.steps]
    assert [s.kind for s in old.steps].count("escalation") == 1
    assert old.tier == "vip"
    unknown = plan_dunning(_declined("51"), domain.dunning, now, [], profile=CustomerProfile(tier="gold"))
    assert "unknown_tier" in [r.code for r in unknown.reasons]


def test_retry_budget_truncates_then_exhausts(domain: DomainConfig) -> None:
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    vip = CustomerProfile(channels=("email",), tier="vip")
    cut = plan_dunning(
        _declined("51"), domain.dunning, now, [], profile=vip, network="visa", retries_last_30d=12
    )
    assert cut.retry_count == 3
    assert cut.retries_left == 3
    assert not cut.exhausted
    assert "network_retry_limit_truncated" in [r.code for r in cut.reasons]
    done = plan_dunning(_declined("51"), domain.dunning, now, ["email"], network="visa", retries_last_30d=15)
    assert done.exhausted
    assert done.retry_count == 0
    assert [s.kind for s in done.steps] == ["reminder"]
    tech = plan_dunning(_declined("91"), domain.dunning, now, ["email"], network="visa", retries_last_30d=20)
    assert tech.exhausted
    assert [s.kind for s in tech.steps] == ["reminder"]


def test_mastercard_daily_cap_spaces_retries() -> None:
    policy = DunningPolicy(
        hard_codes=[],
        technical_codes=["91"],
        soft_retry_offsets_h=[24],
        technical_retry_offsets_h=[1, 2, 3, 4],
        quiet_hours=None,
        network_limits={"mastercard": NetworkRetryLimit(max_retries_24h=2)},
    )
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    plan = plan_dunning(_declined("91"), policy, now, [], network="mastercard", retries_last_24h=1)
    dues = [s.due_at for s in plan.steps]
    assert len(dues) == 4
    assert dues[0] == now + timedelta(hours=1)
    assert dues[1] > now + timedelta(hours=24)  # the retry already made holds one of the two slots
    assert "retry_spaced_for_daily_cap" in [r.code for r in plan.reasons]


def test_mastercard_advice_codes() -> None:
    policy = DunningPolicy(
        hard_codes=[],
        technical_codes=[],
        soft_retry_offsets_h=[1, 24, 72],
        technical_retry_offsets_h=[1],
        quiet_hours=None,
    )
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    stop = plan_dunning(_declined("51"), policy, now, ["email"], network="mastercard", advice_code="21")
    assert stop.decline_class == "hard"
    assert stop.retry_count == 0
    wait = plan_dunning(_declined("51"), policy, now, ["email"], network="mastercard", advice_code="26")
    assert [s.due_at - now for s in wait.steps if s.kind == "retry"] == [
        timedelta(hours=48),
        timedelta(hours=72),
    ]
    visa = plan_dunning(_declined("51"), policy, now, ["email"], network="visa", advice_code="21")
    assert visa.decline_class == "soft"


def test_step_indexes_and_next_wake() -> None:
    policy = DunningPolicy(
        hard_codes=[],
        technical_codes=[],
        soft_retry_offsets_h=[5, 1, 1],
        technical_retry_offsets_h=[1],
        quiet_hours=None,
    )
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    plan = plan_dunning(_declined("51"), policy, now, ["email"])
    assert [i for i, _ in plan.indexed_steps()] == list(range(len(plan.steps)))
    assert plan.next_wake() == now
    assert plan.next_wake(done=1) == now + timedelta(hours=1)
    assert plan.steps[2].due_at == now + timedelta(hours=1, minutes=1)  # duplicate offset: one gap later
    assert plan.next_wake(done=len(plan.steps)) is None


def test_naive_now_and_bad_profile_are_rejected() -> None:
    policy = DunningPolicy(
        hard_codes=[], technical_codes=[], soft_retry_offsets_h=[1], technical_retry_offsets_h=[1]
    )
    with pytest.raises(ValueError, match="aware"):
        plan_dunning(_declined("51"), policy, datetime(2026, 1, 1), ["email"])
    with pytest.raises(ValueError, match="time zone"):
        CustomerProfile(timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"holidays": {"Germany": ["10-03"]}}, "neither a country code"),
        ({"holidays": {"*": ["2026-02-30"]}}, "day is out of range"),
        ({"holidays": {"*": ["Dec 25"]}}, "YYYY-MM-DD or MM-DD"),
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "equal"),
        ({"technical_codes": ["51"], "hard_codes": ["51"]}, "both hard and technical"),
    ],
)
def test_bad_dunning_config_is_rejected_clearly(update: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "hard_codes": [],
        "technical_codes": [],
        "soft_retry_offsets_h": [1],
        "technical_retry_offsets_h": [1],
    }
    with pytest.raises(ValidationError, match=message):
        DunningPolicy.model_validate(base | update)
