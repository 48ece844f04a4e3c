"""Dunning: what to do after a declined payment. A pure function of the decline, policy, customer and clock.

The plan is a list of ``DunningStep`` (retry / reminder / escalation) in strictly increasing time, each
identified by its position (the step index the timers carry). Guarantees, whatever the configuration:

- a hard decline (configured hard codes, a network's never-retry codes such as Visa category 1, or a
  Mastercard "stop" advice code) is never retried: the customer is asked to update the payment method;
- a plan never holds more retries than the card network allows (30-day cap less the retries already
  made) and never more than the 24-hour cap in any 24 hours; when nothing is left it says so
  (``exhausted``);
- no step lands in the customer's local quiet hours or on a configured holiday: it moves to the next
  allowed local time;
- reminders only use a channel the customer allowed; with none allowed there is no reminder.

Reason codes on the plan (stable): ``hard_decline``, ``visa_category_1``, ``network_never_retry``,
``mastercard_advice_stop``, ``mastercard_advice_retry_after``, ``network_retry_limit_reached``,
``network_retry_limit_truncated``, ``retry_spaced_for_daily_cap``, ``no_allowed_channel``,
``unknown_tier``, ``shifted_for_quiet_hours``, ``shifted_for_holiday``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickcash.config.domain import DunningPolicy, NetworkRetryLimit, QuietHours, parse_holiday
from clickcash.events import DunningStep, PaymentDeclined, Reason

DeclineClass = Literal["hard", "soft", "technical"]
StepKind = Literal["retry", "reminder", "escalation"]

_KIND_ORDER: dict[str, int] = {"reminder": 0, "retry": 1, "escalation": 2}
_MAX_SHIFTS = 1_000
"""Bound on moves while looking for an allowed instant: a calendar that forbids every day is a config
error, reported instead of looping."""


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """What dunning needs to know about the customer: where their clock is, how they may be contacted,
    and how much care they get (``tier`` selects the schedule, ``tenure_days`` gates escalation)."""

    timezone: str = "UTC"
    channels: tuple[str, ...] = ("email",)
    tier: str = "standard"
    tenure_days: int = 0
    country: str | None = None
    """ISO country for the holiday calendar (``None``: only the global holidays apply)."""

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {self.timezone!r}") from exc


@dataclass(frozen=True, slots=True)
class DunningPlan:
    """Steps in strictly increasing ``due_at``; a step's index in ``steps`` is its stable id."""

    decline_class: DeclineClass
    steps: list[DunningStep]
    exhausted: bool = False
    """True when the network retry budget was already used up, so the plan holds no retry."""
    retries_left: int | None = None
    """Retries the network allowed before this plan (``None``: no configured cap)."""
    tier: str = "standard"
    reasons: list[Reason] = field(default_factory=list)
    nominal_due: list[datetime] = field(default_factory=list)
    """Per step, when the schedule wanted it before quiet hours, holidays and caps moved it."""

    def next_wake(self, done: int = 0) -> datetime | None:
        """When this plan next wants waking: the earliest step from index ``done`` on (None: finished)."""
        return min((s.due_at for s in self.steps[done:]), default=None)

    def indexed_steps(self) -> list[tuple[int, DunningStep]]:
        return list(enumerate(self.steps))

    @property
    def retry_count(self) -> int:
        return sum(1 for s in self.steps if s.kind == "retry")


def assign_tier(policy: DunningPolicy, lifetime_value_cents: int, tenure_days: int) -> str:
    """The customer's tier: the first of ``policy.tier_rules`` that matches, else the default tier."""
    for rule in policy.tier_rules:
        if lifetime_value_cents < rule.min_lifetime_value_cents or tenure_days < rule.min_tenure_days:
            continue
        if (
            rule.max_lifetime_value_cents is not None
            and lifetime_value_cents >= rule.max_lifetime_value_cents
        ):
            continue
        if rule.max_tenure_days is not None and tenure_days >= rule.max_tenure_days:
            continue
        return rule.tier
    return policy.default_tier


def network_limit(policy: DunningPolicy, network: str | None) -> NetworkRetryLimit:
    """The retry rules for ``network``; unknown network -> the strictest of all configured ones, so a
    missing network field can never let a plan exceed any network's cap."""
    limits = policy.network_limits
    if network is not None:
        return limits.get(network) or limits.get("*") or NetworkRetryLimit()
    if not limits:
        return NetworkRetryLimit()
    caps_30d = [v.max_retries_30d for v in limits.values() if v.max_retries_30d is not None]
    caps_24h = [v.max_retries_24h for v in limits.values() if v.max_retries_24h is not None]
    return NetworkRetryLimit(
        max_retries_30d=min(caps_30d, default=None),
        max_retries_24h=min(caps_24h, default=None),
        never_retry_codes=sorted({c for v in limits.values() for c in v.never_retry_codes}),
    )


def classify_decline(
    code: str, policy: DunningPolicy, *, network: str | None = None, advice_code: str | None = None
) -> DeclineClass:
    """Hard declines are never retried; technical ones get a short backoff; the rest are soft.

    Hard: a configured hard code, a never-retry code of the card's network (Visa category 1; any
    network's list when the network is unknown), or a Mastercard "stop" merchant advice code.
    """
    return _classify(code, policy, network, advice_code)[0]


def _classify(
    code: str, policy: DunningPolicy, network: str | None, advice_code: str | None
) -> tuple[DeclineClass, Reason | None]:
    if code in policy.hard_codes:
        return "hard", Reason(code="hard_decline", detail=f"decline code {code}")
    if code in network_limit(policy, network).never_retry_codes:
        why = "visa_category_1" if network == "visa" else "network_never_retry"
        return "hard", Reason(code=why, detail=f"decline code {code} must never be retried")
    if (
        advice_code is not None
        and network in (None, "mastercard")
        and advice_code in policy.mastercard_stop_advice_codes
    ):
        return "hard", Reason(code="mastercard_advice_stop", detail=f"merchant advice code {advice_code}")
    if code in policy.technical_codes:
        return "technical", None
    return "soft", None


@dataclass(frozen=True, slots=True)
class _Wanted:
    due: datetime
    kind: StepKind
    channel: str | None = None


def plan_dunning(
    declined: PaymentDeclined,
    policy: DunningPolicy,
    now: datetime,
    channels: Sequence[str],
    *,
    profile: CustomerProfile | None = None,
    retries_last_30d: int = 0,
    retries_last_24h: int = 0,
    network: str | None = None,
    advice_code: str | None = None,
) -> DunningPlan:
    """Plan retries, reminders and escalation for one declined payment.

    ``channels`` are the customer's allowed channels when no ``profile`` is given (a profile carries its
    own). Without a profile the customer is on the default tier, in UTC, with only global holidays.
    ``retries_last_30d``/``retries_last_24h`` are the retries already made on this card (for the
    network caps); ``network`` is the card network (``None``: the strictest configured rules apply);
    ``advice_code`` is a Mastercard merchant advice code when the PSP returned one.

    A hard decline gets no retry, only "update your payment method" reminders (the first at once); a
    soft one gets reminders and the retry schedule; a technical one only its short retry backoff. If the
    network budget is used up, the plan has no retry, is ``exhausted``, and reminds the customer instead.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    reasons: list[Reason] = []
    tz: tzinfo = ZoneInfo(profile.timezone) if profile is not None else UTC
    allowed = list(profile.channels) if profile is not None else list(channels)
    tier_name = profile.tier if profile is not None else policy.default_tier
    tier = policy.tier(tier_name)
    if tier is None and tier_name != policy.default_tier:
        reasons.append(Reason(code="unknown_tier", detail=f"{tier_name}: using the base schedule"))

    decline_class, why = _classify(declined.decline_code, policy, network, advice_code)
    if why is not None:
        reasons.append(why)

    limit = network_limit(policy, network)
    retries_left = (
        None if limit.max_retries_30d is None else max(0, limit.max_retries_30d - max(retries_last_30d, 0))
    )

    # the schedule the tier wants
    soft = (tier.soft_retry_offsets_h if tier else None) or policy.soft_retry_offsets_h
    technical = (tier.technical_retry_offsets_h if tier else None) or policy.technical_retry_offsets_h
    reminder_h = (tier.reminder_offsets_h if tier else None) or policy.reminder_offsets_h
    escalation_h = tier.escalation_after_h if tier and tier.escalation_after_h else policy.escalation_after_h
    min_tenure = tier.escalation_min_tenure_days if tier else 0
    tenure = profile.tenure_days if profile is not None else 0

    retry_h: list[float] = []
    if decline_class != "hard":
        retry_h = sorted(technical if decline_class == "technical" else soft)
        after_h = _advised_wait_h(policy, network, advice_code)
        if after_h is not None:
            retry_h = sorted({max(h, after_h) for h in retry_h})
            reasons.append(
                Reason(code="mastercard_advice_retry_after", detail=f"advice {advice_code}: >= {after_h} h")
            )
    exhausted = False
    if retry_h and retries_left is not None and len(retry_h) > retries_left:
        if retries_left == 0:
            exhausted = True
            reasons.append(
                Reason(
                    code="network_retry_limit_reached",
                    detail=f"{retries_last_30d} retries in 30 days; cap {limit.max_retries_30d}",
                )
            )
        else:
            reasons.append(
                Reason(
                    code="network_retry_limit_truncated",
                    detail=f"{len(retry_h)} planned, {retries_left} left of {limit.max_retries_30d}",
                )
            )
        retry_h = retry_h[:retries_left]

    wanted = [_Wanted(now + timedelta(hours=h), "retry") for h in retry_h]
    if decline_class in ("hard", "soft") or exhausted:
        channel = _reminder_channel(policy, allowed)
        if channel is None:
            reasons.append(Reason(code="no_allowed_channel", detail="no reminder: customer allows none"))
        else:
            wanted += [
                _Wanted(now + timedelta(hours=h), "reminder", channel) for h in sorted(set(reminder_h))
            ]
        if escalation_h is not None and decline_class != "technical" and tenure >= min_tenure:
            wanted.append(_Wanted(now + timedelta(hours=escalation_h), "escalation"))
    wanted.sort(key=lambda w: (w.due, _KIND_ORDER[w.kind]))

    steps, nominal = _place(wanted, now, tz, policy, profile, limit, retries_last_24h, reasons)
    return DunningPlan(
        decline_class=decline_class,
        steps=steps,
        exhausted=exhausted,
        retries_left=retries_left,
        tier=tier_name,
        reasons=reasons,
        nominal_due=nominal,
    )


def _advised_wait_h(policy: DunningPolicy, network: str | None, advice_code: str | None) -> float | None:
    if advice_code is None or network not in (None, "mastercard"):
        return None
    return policy.mastercard_retry_after_h.get(advice_code)


def _reminder_channel(policy: DunningPolicy, allowed: Sequence[str]) -> str | None:
    """The policy's channel when the customer allowed it, else their first allowed one."""
    if policy.reminder_channel in allowed:
        return policy.reminder_channel
    return allowed[0] if allowed else None


def _place(
    wanted: Sequence[_Wanted],
    now: datetime,
    tz: tzinfo,
    policy: DunningPolicy,
    profile: CustomerProfile | None,
    limit: NetworkRetryLimit,
    retries_last_24h: int,
    reasons: list[Reason],
) -> tuple[list[DunningStep], list[datetime]]:
    """Give each wanted step the first allowed instant at or after its wish and after the previous step.

    Steps only ever move later, one after the other, so order is kept and times strictly increase.
    """
    calendar = _Calendar(policy.quiet_hours, _holidays(policy, profile), tz)
    gap = timedelta(milliseconds=policy.min_step_gap_ms)
    day = timedelta(hours=24)
    steps: list[DunningStep] = []
    nominal: list[datetime] = []
    retry_times: list[datetime] = []
    moved: dict[str, int] = {}
    spaced = 0
    for w in wanted:
        t = w.due if not steps else max(w.due, steps[-1].due_at + gap)
        t = calendar.next_allowed(t, moved)
        if w.kind == "retry" and limit.max_retries_24h is not None:
            for _ in range(_MAX_SHIFTS):
                holders = [r for r in retry_times if r > t - day]
                holders += [now] * max(retries_last_24h, 0) if now > t - day else []
                if len(holders) < limit.max_retries_24h:
                    break
                t = calendar.next_allowed(min(holders) + day + timedelta(milliseconds=1), moved)
                spaced += 1
            else:  # pragma: no cover - bounded by the cap
                raise ValueError("could not space retries under the daily cap")
            retry_times.append(t)
        steps.append(DunningStep(kind=w.kind, due_at=t, channel=w.channel))
        nominal.append(w.due)
    if moved.get("quiet"):
        reasons.append(Reason(code="shifted_for_quiet_hours", detail=f"{moved['quiet']} moves"))
    if moved.get("holiday"):
        reasons.append(Reason(code="shifted_for_holiday", detail=f"{moved['holiday']} moves"))
    if spaced:
        reasons.append(
            Reason(code="retry_spaced_for_daily_cap", detail=f"cap {limit.max_retries_24h} per 24 h")
        )
    return steps, nominal


Holidays = frozenset[tuple[int | None, int, int]]
_holiday_memo: dict[int, tuple[DunningPolicy, dict[str | None, Holidays]]] = {}


def _holidays(policy: DunningPolicy, profile: CustomerProfile | None) -> Holidays:
    """The parsed holidays of the customer's country plus the global ones, parsed once per country for
    each (frozen) policy object instead of once per plan."""
    country = profile.country if profile is not None else None
    memo = _holiday_memo.get(id(policy))
    if memo is None or memo[0] is not policy:
        if len(_holiday_memo) >= 16:  # policies come and go in tests and reloads; keep a few
            _holiday_memo.clear()
        memo = (policy, {})
        _holiday_memo[id(policy)] = memo
    days = memo[1].get(country)
    if days is None:
        listed = list(policy.holidays.get("*", []))
        if country is not None:
            listed += policy.holidays.get(country, [])
        days = memo[1][country] = frozenset(parse_holiday(d) for d in listed)
    return days


@dataclass(frozen=True, slots=True)
class _Calendar:
    """The customer's local calendar: quiet hours and holidays in their time zone."""

    quiet: QuietHours | None
    holidays: frozenset[tuple[int | None, int, int]]
    tz: tzinfo

    def is_holiday(self, d: date) -> bool:
        return (d.year, d.month, d.day) in self.holidays or (None, d.month, d.day) in self.holidays

    def allowed(self, t: datetime) -> bool:
        local = t.astimezone(self.tz)
        if self.is_holiday(local.date()):
            return False
        return self.quiet is None or not self.quiet.contains(local.time().replace(tzinfo=None))

    def next_allowed(self, t: datetime, moved: dict[str, int]) -> datetime:
        """``t`` if allowed, else the next local morning (end of quiet hours, or midnight) that is."""
        t = t.astimezone(UTC)
        for _ in range(_MAX_SHIFTS):
            local = t.astimezone(self.tz)
            if self.is_holiday(local.date()):
                target = self._local(local.date() + timedelta(days=1), self._day_start())
                moved["holiday"] = moved.get("holiday", 0) + 1
            elif self.quiet is not None and self.quiet.contains(local.time().replace(tzinfo=None)):
                end_day = local.date()
                if self.quiet.start > self.quiet.end and local.time() >= self.quiet.start:
                    end_day += timedelta(days=1)
                target = self._local(end_day, self.quiet.end)
                moved["quiet"] = moved.get("quiet", 0) + 1
            else:
                return t
            # a wall time inside a DST gap can map to an instant before t: always make progress
            t = target if target > t else t + timedelta(minutes=1)
        raise ValueError("no allowed contact time within the search horizon: check holidays/quiet_hours")

    def _day_start(self) -> time:
        return self.quiet.end if self.quiet is not None and self.quiet.start > self.quiet.end else time(0)

    def _local(self, d: date, at: time) -> datetime:
        return datetime.combine(d, at, tzinfo=self.tz).astimezone(UTC)
