"""PSP routing: which payment service provider gets an authorization, with ranked fallbacks and reasons.

Decisions follow the orchestrators' order:

1. eligibility (country, currency, network); nothing eligible -> ``None``;
2. explicit overrides (pin a PSP, or split volume by percentage) for a campaign or merchant segment;
3. a score blending recent approval rate (per PSP x segment, smoothed toward a prior), expected cost and
   configured priority;
4. exploration: a small share of traffic goes to a uniformly drawn healthy PSP, so a PSP whose score
   dropped (or a new one) keeps producing evidence;
5. circuit breaker: PSPs with too many recent technical failures are excluded; if every eligible PSP is
   broken the least-bad one is still returned (``all_breakers_open``), never nothing.

Pure: no clock, no randomness, no I/O. Time (``now``) and the random draw (``explore_draw``) are inputs,
so a replayed event routes the same way. The stats the score reads are the small ``SegmentStats`` values
the shard keeps in Redis and updates with :func:`record_outcome`.

Reason codes (stable): ``eligible``, ``lowest_expected_fee`` (cost ranking) or ``scored`` (score
ranking), ``breaker_open``, ``avoided_after_decline``, ``override_pinned``, ``override_split``,
``override_split_remainder``, ``override_skipped``, ``explored``, ``all_breakers_open``.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

import orjson

from clickcash.config.domain import Psp, RoutingOverride, RoutingPolicy
from clickcash.events import Reason

LEGACY_POLICY = RoutingPolicy(ranking="cost", explore_share=0.0)
"""What ``route_payment`` uses without a policy: cheapest expected fee, then priority (the original
ranking), so existing callers see no change until they pass the configured policy."""


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One authorization to route. ``avoid`` holds PSPs that just declined this payment.

    ``issuer_country`` defaults to the order's country when the BIN lookup did not provide one.
    """

    country: str
    currency: str
    network: str
    amount_cents: int
    avoid: frozenset[str] = frozenset()
    campaign_id: str | None = None
    merchant_segment: str | None = None
    issuer_country: str | None = None

    @property
    def segment(self) -> str:
        """network|currency|issuer country: the slice of traffic a success rate is measured on."""
        return f"{self.network}|{self.currency}|{self.issuer_country or self.country}"


@dataclass(frozen=True, slots=True)
class RouteDecision:
    psp: str
    fallbacks: list[str]
    reasons: list[Reason]


def draw_from_id(event_id: str, salt: str = "route") -> float:
    """A uniform number in [0, 1) derived from ``event_id``: the same event always draws the same, so
    a replayed or redelivered event routes the same way. ``salt`` separates independent uses (the retry
    of attempt 2 should not reuse attempt 1's draw)."""
    digest = hashlib.blake2b(f"{salt}\x00{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def stats_key(psp_name: str, request: RouteRequest) -> str:
    """The key under which the stats of ``psp_name`` in the request's segment are stored."""
    return f"{psp_name}|{request.segment}"


# --- success-rate stats -------------------------------------------------------------------------------

Bucket = tuple[int, int, int, int]
"""(bucket_start_ms, attempts, approvals, technical_failures)"""


@dataclass(frozen=True, slots=True)
class SegmentStats:
    """Outcomes of one PSP in one segment, in time buckets (oldest first, at most ``max_buckets``).

    Bounded and approximate by design: per segment it is at most ``max_buckets`` tuples whatever the
    traffic. The window it describes is the current (partial) bucket plus ``max_buckets - 1`` full ones,
    so a rate read at any instant covers between ``(max_buckets - 1) * bucket_ms`` and
    ``max_buckets * bucket_ms`` of history: each outcome counts for at most one ``bucket_ms`` longer than
    in an exact sliding window of ``(max_buckets - 1) * bucket_ms`` (with 60 s x 8: 7 to 8 minutes).
    Technical failures count as attempts that were not approved: to the merchant a timeout is a failed
    authorization too, and the breaker judges them separately.
    """

    buckets: tuple[Bucket, ...] = ()

    @property
    def attempts(self) -> int:
        return sum(b[1] for b in self.buckets)

    @property
    def approvals(self) -> int:
        return sum(b[2] for b in self.buckets)

    @property
    def technical_failures(self) -> int:
        return sum(b[3] for b in self.buckets)

    def encode(self) -> bytes:
        """Compact JSON (a flat list of integers, 4 per bucket), ~20-120 bytes for a busy segment."""
        return orjson.dumps([n for b in self.buckets for n in b])

    @classmethod
    def decode(cls, raw: bytes | str) -> SegmentStats:
        """Inverse of :meth:`encode`; raises ``ValueError`` on anything else (a corrupt value must not be
        read as "no traffic" silently)."""
        try:
            flat = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"segment stats are not JSON: {exc}") from exc
        if (
            not isinstance(flat, list)
            or len(flat) % 4
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in flat)
        ):
            raise ValueError("segment stats must be a flat list of non-negative integers, 4 per bucket")
        buckets = tuple((flat[i], flat[i + 1], flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4))
        for start, attempts, approvals, technical in buckets:
            if approvals + technical > attempts:
                raise ValueError(f"bucket {start}: approvals + technical failures exceed attempts")
        if any(a[0] >= b[0] for a, b in pairwise(buckets)):
            raise ValueError("segment stats buckets must be in increasing start order")
        return cls(buckets)


EMPTY_STATS = SegmentStats()


def _bucket_start_ms(now_ms: int, policy: RoutingPolicy) -> int:
    return now_ms - now_ms % policy.bucket_ms


def _live(stats: SegmentStats, now_ms: int | None, policy: RoutingPolicy) -> tuple[Bucket, ...]:
    """Buckets inside the window at ``now_ms`` (all stored ones when ``now_ms`` is None)."""
    if now_ms is None or not stats.buckets:
        return stats.buckets
    cutoff = _bucket_start_ms(now_ms, policy) - (policy.max_buckets - 1) * policy.bucket_ms
    if min(stats.buckets)[0] >= cutoff:  # tuples order by their start first
        return stats.buckets
    return tuple(b for b in stats.buckets if b[0] >= cutoff)


def record_outcome(
    stats: SegmentStats, now_ms: int, approved: bool, technical: bool, policy: RoutingPolicy
) -> SegmentStats:
    """Add one authorization outcome at ``now_ms`` and drop buckets that left the window.

    A late outcome (clocks of two shards disagree) is added to its own bucket if that bucket is still in
    the window, and dropped otherwise; the window is anchored at the newer of ``now_ms`` and the newest
    bucket so stats never grow past ``max_buckets``.
    """
    if approved and technical:
        raise ValueError("an outcome is approved or a technical failure, not both")
    start = _bucket_start_ms(now_ms, policy)
    newest = max([start, *(b[0] for b in stats.buckets)])
    cutoff = newest - (policy.max_buckets - 1) * policy.bucket_ms
    by_start = {b[0]: b for b in stats.buckets if b[0] >= cutoff}
    if start >= cutoff:
        _, attempts, approvals, failures = by_start.get(start, (start, 0, 0, 0))
        by_start[start] = (start, attempts + 1, approvals + int(approved), failures + int(technical))
    return SegmentStats(tuple(by_start[k] for k in sorted(by_start)))


def success_rate(
    stats: SegmentStats,
    policy: RoutingPolicy,
    *,
    now_ms: int | None = None,
    prior: float | None = None,
) -> float:
    """Approval rate in the window, smoothed toward ``prior`` (default ``policy.prior_success_rate``).

    (approvals + prior x w) / (attempts + w) with w = ``prior_weight_attempts``: with no traffic it is the
    prior, so a new PSP competes on its expected rate instead of being starved at 0; with n attempts the
    prior's pull is w / (n + w) of the gap. Pass ``now_ms`` to ignore buckets that aged out since the
    last write.
    """
    p = policy.prior_success_rate if prior is None else prior
    live = _live(stats, now_ms, policy)
    attempts = sum(b[1] for b in live)
    approvals = sum(b[2] for b in live)
    weight = policy.prior_weight_attempts
    if attempts + weight == 0:
        return p
    return (approvals + p * weight) / (attempts + weight)


def breaker_failures(stats: SegmentStats, now_ms: int, policy: RoutingPolicy) -> tuple[int, int] | None:
    """(technical failures, attempts) of the window that holds the breaker open, or None if closed."""
    b = policy.breaker
    in_window = _live(stats, now_ms, policy)
    if not any(x[3] for x in in_window):
        return None  # no technical failure in the window: nothing can trip (routing's common case)
    live = sorted(in_window)
    for end in reversed(live):
        if now_ms >= end[0] + policy.bucket_ms + b.cooldown_ms:
            break  # older windows ended even earlier: their cool-down is over too
        window = [x for x in live if end[0] - b.window_ms < x[0] <= end[0]]
        failures = sum(x[3] for x in window)
        attempts = sum(x[1] for x in window)
        if failures >= b.min_failures or (
            attempts >= b.min_attempts and failures >= b.failure_rate * attempts
        ):
            return failures, attempts
    return None


def breaker_open(stats: SegmentStats, now_ms: int, policy: RoutingPolicy) -> bool:
    """True while the PSP must be skipped: a breaker window tripped and its cool-down has not passed.

    Windows are whole buckets, so a failure can hold the breaker up to one ``bucket_ms`` longer than an
    exact leaky bucket would. Once the cool-down ends the PSP gets traffic again (half-open); a new
    failure streak re-trips it.
    """
    return breaker_failures(stats, now_ms, policy) is not None


# --- routing ------------------------------------------------------------------------------------------


def expected_fee_cents(psp: Psp, amount_cents: int) -> int:
    return round(amount_cents * psp.fee_pct / 100) + psp.fee_fixed_cents


def eligible(psp: Psp, request: RouteRequest) -> bool:
    return (
        request.country in psp.countries
        and request.currency in psp.currencies
        and request.network in psp.networks
    )


def score(psp: Psp, request: RouteRequest, rate: float, policy: RoutingPolicy) -> float:
    """Score points: approval percentage points minus fee as percent of the amount minus priority.

    The amount is floored at 1 cent so a zero-amount verification ranks by fixed fee.
    """
    w = policy.weights
    cost_pct = expected_fee_cents(psp, request.amount_cents) * 100 / max(request.amount_cents, 1)
    return w.success_per_pct * rate * 100 - w.cost_per_pct * cost_pct - w.priority_per_unit * psp.priority


def _matching_override(request: RouteRequest, overrides: Sequence[RoutingOverride]) -> RoutingOverride | None:
    for o in overrides:
        if o.campaign_id is not None and o.campaign_id != request.campaign_id:
            continue
        if o.merchant_segment is not None and o.merchant_segment != request.merchant_segment:
            continue
        return o
    return None


def route_payment(
    request: RouteRequest,
    psps: Sequence[Psp],
    *,
    policy: RoutingPolicy | None = None,
    stats: Mapping[str, SegmentStats] | None = None,
    now: datetime | None = None,
    explore_draw: float = 1.0,
    overrides: Sequence[RoutingOverride] | None = None,
) -> RouteDecision | None:
    """Choose a PSP and rank the fallbacks; ``None`` only when no PSP may take this payment at all.

    ``policy`` None keeps the original cost ranking (no exploration). ``stats`` maps PSP name to its
    stats in the request's segment (see :func:`stats_key`); ``now`` is needed with stats, to age buckets
    and judge breakers. ``explore_draw`` is a uniform number in [0, 1) the caller derives from the event
    id; it decides exploration and volume splits (never both for one payment). The default 1.0 never
    explores and always lands in a split's remainder. ``overrides`` replaces ``policy.overrides``.

    Fallback order: healthy PSPs that did not decline (by rank), then healthy ones that did, then
    broken ones (fewest technical failures first). So ``avoid`` is honoured whenever another healthy
    eligible PSP exists; a PSP that is down is judged worse than one that declined this payment.
    """
    pol = policy or LEGACY_POLICY
    candidates, eligible_reason = _eligible(psps, request)
    if not candidates:
        return None
    if not 0.0 <= explore_draw <= 1.0:
        raise ValueError(f"explore_draw must be in [0, 1], got {explore_draw}")
    stats = stats or {}
    if stats and now is None:
        raise ValueError("route_payment needs now to read stats")
    now_ms = int(now.timestamp() * 1000) if now is not None else None
    cutoff = _window_cutoff(now_ms, pol)

    # the same arithmetic as ``score`` and ``expected_fee_cents``, each fee computed once per PSP
    amount = request.amount_cents
    w = pol.weights
    by_cost = pol.ranking == "cost"
    rates: dict[str, float] = {}
    scores: dict[str, float] = {}
    fees: dict[str, int] = {}
    keys: dict[str, tuple[float, int, int, str]] = {}
    """each PSP's rank key: (minus score, or 0 when ranking by cost; fee; priority; name)"""
    broken: dict[str, tuple[int, int]] = {}
    for p in candidates:
        name = p.name
        seg_stats = stats.get(name, EMPTY_STATS)
        prior = None if p.expected_approval_pct is None else p.expected_approval_pct / 100
        rate, technical = _rate_and_technical(seg_stats, pol, now_ms, prior, cutoff)
        fee = fees[name] = round(amount * p.fee_pct / 100) + p.fee_fixed_cents
        rates[name] = rate
        cost_pct = fee * 100 / max(amount, 1)
        score = scores[name] = (
            w.success_per_pct * rate * 100 - w.cost_per_pct * cost_pct - w.priority_per_unit * p.priority
        )
        keys[name] = (0.0 if by_cost else -score, fee, p.priority, name)
        if technical and now_ms is not None:  # no technical failure in the window: the breaker is closed
            tripped = _breaker_at(seg_stats, now_ms, pol)
            if tripped is not None:
                broken[name] = tripped

    # sorted by rank key, ties (none: names differ) kept in the PSPs' order, as a stable sort would
    ranked = [p for _, _, p in sorted([(keys[p.name], i, p) for i, p in enumerate(candidates)])]
    if broken:
        healthy = [p for p in ranked if p.name not in broken]

        def badness(p: Psp) -> tuple[float, bool, tuple[float, int, int, str]]:
            failures, attempts = broken[p.name]
            return (failures / max(attempts, 1), p.name in request.avoid, keys[p.name])

        worst = sorted((p for p in candidates if p.name in broken), key=badness)
    else:
        healthy, worst = ranked, []
    if request.avoid:
        fresh = [p for p in healthy if p.name not in request.avoid]
        order = fresh + [p for p in healthy if p.name in request.avoid] + worst
    else:
        fresh = healthy
        order = healthy + worst
    by_name = {p.name: p for p in candidates}

    reasons = [
        eligible_reason,
        _ranking_reason(ranked, fees, rates, scores, pol),
    ]
    for name, (failures, attempts) in sorted(broken.items()):
        reasons.append(_breaker_reason(name, failures, attempts, pol.breaker.window_ms))
    if request.avoid & by_name.keys():
        reasons.append(Reason(code="avoided_after_decline", detail=",".join(sorted(request.avoid))))

    chosen = order[0].name
    decided = False
    draw = explore_draw
    override = _matching_override(request, pol.overrides if overrides is None else overrides)
    if override is not None:
        target: str | None
        if override.pin is not None:
            target = override.pin
            reasons_code, detail = "override_pinned", f"{override.name}: pinned to {target}"
        else:
            target, draw = _split_target(override, explore_draw)
            if target is None:
                reasons_code, detail = "override_split_remainder", f"{override.name}: remainder by score"
            else:
                reasons_code, detail = "override_split", f"{override.name}: draw fell to {target}"
        if target is not None:
            why_not = _unusable(target, by_name, broken, request, fresh)
            if why_not is None:
                chosen, decided = target, True
                reasons.append(Reason(code=reasons_code, detail=detail))
            else:
                reasons.append(Reason(code="override_skipped", detail=f"{override.name}: {target} {why_not}"))
        else:
            reasons.append(Reason(code=reasons_code, detail=detail))
    if not decided and len(fresh) >= 2 and draw < pol.explore_share:
        pool = sorted(p.name for p in fresh)
        chosen = pool[min(int(draw / pol.explore_share * len(pool)), len(pool) - 1)]
        reasons.append(Reason(code="explored", detail=f"{chosen} drawn from {len(pool)} healthy PSPs"))
    if chosen in broken:
        reasons.append(
            Reason(code="all_breakers_open", detail=f"every eligible PSP is failing; {chosen} fails least")
        )
    return RouteDecision(psp=chosen, fallbacks=[p.name for p in order if p.name != chosen], reasons=reasons)


_REASON_MEMO_MAX = 4_096
_breaker_reasons: dict[tuple[str, int, int, int], Reason] = {}


def _breaker_reason(name: str, failures: int, attempts: int, window_ms: int) -> Reason:
    """The ``breaker_open`` reason, one (frozen) model per distinct text: a tripped breaker holds for a
    while, and every order of its segment meanwhile gives the same reason."""
    key = (name, failures, attempts, window_ms)
    reason = _breaker_reasons.get(key)
    if reason is None:
        if len(_breaker_reasons) >= _REASON_MEMO_MAX:
            _breaker_reasons.clear()
        reason = _breaker_reasons[key] = Reason(
            code="breaker_open",
            detail=f"{name}: {failures} technical failures in {attempts} attempts within {window_ms} ms; "
            "excluded",
        )
    return reason


def _window_cutoff(now_ms: int | None, policy: RoutingPolicy) -> int | None:
    """The first bucket start still in the window at ``now_ms`` (None: no clock, every bucket counts)."""
    if now_ms is None:
        return None
    return _bucket_start_ms(now_ms, policy) - (policy.max_buckets - 1) * policy.bucket_ms


_RATE_MEMO_MAX = 4_096
_rate_memo: dict[
    tuple[int, int, int | None, float | None], tuple[SegmentStats, RoutingPolicy, float, bool]
] = {}


def _rate_and_technical(
    stats: SegmentStats,
    policy: RoutingPolicy,
    now_ms: int | None,
    prior: float | None,
    cutoff: int | None,
) -> tuple[float, bool]:
    """``success_rate`` of ``stats`` at ``now_ms`` and whether its window holds a technical failure,
    remembered per stats object: a segment's stats change only when the shard refreshes or commits them,
    while every order of the segment asks again. The answer depends on ``now_ms`` only through the
    window's first bucket (``_live``), which is in the key; the entry holds the stats and the policy it
    was computed for, so a key whose objects were freed and their ids reused never matches.
    ``cutoff`` is ``_window_cutoff(now_ms, policy)``, computed once per decision by the caller."""
    key = (id(stats), id(policy), cutoff, prior)
    hit = _rate_memo.get(key)
    if hit is not None and hit[0] is stats and hit[1] is policy:
        return hit[2], hit[3]
    rate = success_rate(stats, policy, now_ms=now_ms, prior=prior)
    technical = any(b[3] for b in _live(stats, now_ms, policy))
    if len(_rate_memo) >= _RATE_MEMO_MAX:
        _rate_memo.clear()
    _rate_memo[key] = (stats, policy, rate, technical)
    return rate, technical


_breaker_memo: dict[
    tuple[int, int], tuple[SegmentStats, RoutingPolicy, int, int, tuple[int, int] | None]
] = {}


def _breaker_at(stats: SegmentStats, now_ms: int, policy: RoutingPolicy) -> tuple[int, int] | None:
    """``breaker_failures`` remembered per stats object with the span of instants it holds for.

    Within one window (the live buckets, fixed between two bucket starts) the answer changes only when
    ``now_ms`` crosses a bucket's cool-down end (``start + bucket_ms + cooldown_ms``: the windows ending
    at that bucket stop counting), so an answer holds from the last such end at or before ``now_ms`` to
    the next one after it, and inside the bucket ``now_ms`` falls in."""
    key = (id(stats), id(policy))
    hit = _breaker_memo.get(key)
    if hit is not None and hit[0] is stats and hit[1] is policy and hit[2] <= now_ms < hit[3]:
        return hit[4]
    answer = breaker_failures(stats, now_ms, policy)
    bucket_start = _bucket_start_ms(now_ms, policy)
    lo, hi = bucket_start, bucket_start + policy.bucket_ms
    for b in stats.buckets:
        ends = b[0] + policy.bucket_ms + policy.breaker.cooldown_ms
        if ends <= now_ms:
            lo = max(lo, ends)
        else:
            hi = min(hi, ends)
    if len(_breaker_memo) >= _RATE_MEMO_MAX:
        _breaker_memo.clear()
    _breaker_memo[key] = (stats, policy, lo, hi, answer)
    return answer


_ELIGIBLE_MAX = 10_000
_eligible_memo: dict[int, tuple[tuple[Psp, ...], dict[tuple[str, str, str], tuple[list[Psp], Reason]]]] = {}


def _eligible(psps: Sequence[Psp], request: RouteRequest) -> tuple[list[Psp], Reason]:
    """The PSPs that serve the request's country, currency and network, and the ``eligible`` reason,
    remembered per (country, currency, network): every order and retry asked again for the same few.

    The memo belongs to the PSP list object and holds the PSPs it saw (frozen models); it is used only
    while the list still holds exactly those, so a list changed in place starts a new memo. The returned
    list and reason are shared: callers must not mutate them (``Reason`` is frozen)."""
    memo = _eligible_memo.get(id(psps))
    if memo is None or len(memo[0]) != len(psps) or not all(map(operator.is_, memo[0], psps)):
        if len(_eligible_memo) >= 16:  # PSP lists come and go in tests and reloads; keep a few
            _eligible_memo.clear()
        memo = (tuple(psps), {})
        _eligible_memo[id(psps)] = memo
    key = (request.country, request.currency, request.network)
    hit = memo[1].get(key)
    if hit is None:
        candidates = [p for p in psps if eligible(p, request)]
        reason = Reason(
            code="eligible",
            detail=f"{len(candidates)} of {len(psps)} PSPs serve "
            f"{request.country}/{request.currency}/{request.network}",
        )
        if len(memo[1]) >= _ELIGIBLE_MAX:
            memo[1].clear()
        hit = memo[1][key] = (candidates, reason)
    return hit


def _split_target(override: RoutingOverride, draw: float) -> tuple[str | None, float]:
    """The PSP the draw falls to (cumulative percentages in name order), or None for the remainder,
    with the draw rescaled to [0, 1) over the remainder so exploration there stays uniform."""
    cumulative = 0.0
    for name in sorted(override.split_pct):
        cumulative += override.split_pct[name] / 100
        if draw < cumulative:
            return name, 1.0
    rest = 1.0 - cumulative
    return None, ((draw - cumulative) / rest if rest > 0 and draw < 1.0 else 1.0)


def _unusable(
    target: str,
    by_name: Mapping[str, Psp],
    broken: Mapping[str, tuple[int, int]],
    request: RouteRequest,
    fresh: Sequence[Psp],
) -> str | None:
    if target not in by_name:
        return "is not eligible"
    if target in broken:
        return "has its breaker open"
    if target in request.avoid and fresh:
        return "just declined this payment"
    return None


def _ranking_reason(
    ranked: Sequence[Psp],
    fees: Mapping[str, int],
    rates: Mapping[str, float],
    scores: Mapping[str, float],
    policy: RoutingPolicy,
) -> Reason:
    """``fees``: each ranked PSP's ``expected_fee_cents`` for the request's amount.

    Built for every decision, so it is made the cheap way: each rate's text is remembered (a segment's
    rates change only when its stats do, while a score depends on the amount), and the ``Reason`` is
    validated without ``BaseModel.__init__``'s Python wrapper (the same model, fields and fields set)."""
    top = ranked[0]
    if policy.ranking == "cost":
        return _new_reason(
            {"code": "lowest_expected_fee", "detail": f"{top.name} fee {fees[top.name]} cents"}
        )
    parts = [
        f"{p.name}={scores[p.name]:.2f} (approval {_approval_text(rates[p.name])}, fee {fees[p.name]} cents)"
        for p in ranked
    ]
    return _new_reason({"code": "scored", "detail": "; ".join(parts)})


_new_reason: Callable[[dict[str, str]], Reason] = Reason.__pydantic_validator__.validate_python
"""``Reason.model_validate`` of a dict without the Python wrapper (it only checks arguments)"""
_approval_texts: dict[float, str] = {}


def _approval_text(rate: float) -> str:
    """``f"{rate:.3f}"``, remembered per value. Only for positive rates: ``0.0 == -0.0`` would share a key
    while their texts differ."""
    if not rate > 0:
        return f"{rate:.3f}"
    text = _approval_texts.get(rate)
    if text is None:
        if len(_approval_texts) >= _REASON_MEMO_MAX:
            _approval_texts.clear()
        text = _approval_texts[rate] = f"{rate:.3f}"
    return text
