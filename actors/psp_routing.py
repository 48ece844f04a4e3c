"""PSP routing: which payment service provider gets an authorization, with ranked fallbacks and reasons.

Decisions follow the orchestrators' order: eligibility filter first, then a ranking. The ranking here is
expected fee (cheapest first) then configured priority; success-rate scoring, breakers and overrides
extend ``route_payment`` without changing its contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clickcash.events import Reason
from config.domain import Psp


@dataclass(frozen=True, slots=True)
class RouteRequest:
    country: str
    currency: str
    network: str
    amount_cents: int
    avoid: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RouteDecision:
    psp: str
    fallbacks: list[str]
    reasons: list[Reason]


def expected_fee_cents(psp: Psp, amount_cents: int) -> int:
    return round(amount_cents * psp.fee_pct / 100) + psp.fee_fixed_cents


def eligible(psp: Psp, request: RouteRequest) -> bool:
    return (
        request.country in psp.countries
        and request.currency in psp.currencies
        and request.network in psp.networks
    )


def route_payment(request: RouteRequest, psps: Sequence[Psp]) -> RouteDecision | None:
    """Rank the eligible PSPs; ``None`` means no PSP may take this payment."""
    candidates = [p for p in psps if eligible(p, request)]
    if not candidates:
        return None
    preferred = [p for p in candidates if p.name not in request.avoid] or candidates
    ranked = sorted(
        preferred, key=lambda p: (expected_fee_cents(p, request.amount_cents), p.priority, p.name)
    )
    preferred_names = {p.name for p in preferred}
    rest = [p for p in candidates if p.name not in preferred_names]
    chosen = ranked[0]
    reasons = [
        Reason(
            code="eligible",
            detail=f"{len(candidates)} of {len(psps)} PSPs serve "
            f"{request.country}/{request.currency}/{request.network}",
        ),
        Reason(
            code="lowest_expected_fee",
            detail=f"{chosen.name} fee {expected_fee_cents(chosen, request.amount_cents)} cents",
        ),
    ]
    if request.avoid & {p.name for p in candidates}:
        reasons.append(Reason(code="avoided_after_decline", detail=",".join(sorted(request.avoid))))
    return RouteDecision(
        psp=chosen.name,
        fallbacks=[p.name for p in ranked[1:]] + [p.name for p in rest],
        reasons=reasons,
    )
