"""Campaign traffic as data: a deterministic generator of realistic input events.

Pure (no Kafka): the demo, the benchmark and the Locust users all draw from it, and its distributions are
unit-tested. Customers are Zipf-skewed so a few are hot and most are cold; orders are followed by payment
outcomes with soft and hard declines, some payment-method updates, and a configurable share of re-sent
duplicates and malformed records.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

COUNTRIES = [
    ("US", "USD", 0.55),
    ("GB", "GBP", 0.15),
    ("DE", "EUR", 0.15),
    ("FR", "EUR", 0.1),
    ("NL", "EUR", 0.05),
]
CARD_NETWORKS = ["visa", "visa", "visa", "mastercard", "mastercard", "amex"]
WALLETS = ["paypal", "applepay", "googlepay"]
PSPS = ["stripe", "adyen", "braintree"]
SOFT_CODES = ["51", "05", "61", "65", "91"]
HARD_CODES = ["04", "14", "41", "43", "54"]
MALFORMED = [
    b"{not json",
    b"\xff\xfe\xfa",
    b"[1, 2, 3]",
    b'{"specversion": "1.0", "id": "x", "type": "order.placed"}',
    b'{"specversion": "1.0", "id": "bad-type", "source": "s", "type": "coupon.redeemed", '
    b'"time": "2026-01-01T00:00:00Z", "partitionkey": "c", "data": {}}',
]


@dataclass(frozen=True)
class CampaignMix:
    customers: int = 1_000
    zipf_s: float = 1.1
    decline_rate: float = 0.12
    hard_decline_share: float = 0.15
    method_update_rate: float = 0.3
    duplicate_rate: float = 0.01
    malformed_rate: float = 0.005
    campaign_id: str = "spring-sale"


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    key: bytes | None
    value: bytes
    event_id: str | None
    """None for malformed records"""
    kind: str
    """event type, or 'duplicate' / 'malformed'"""


class CampaignGenerator:
    def __init__(self, mix: CampaignMix, seed: int = 7, run_id: str = "run") -> None:
        self._mix = mix
        self._rng = random.Random(seed)
        self._run = run_id
        self._seq = 0
        weights = [1 / (i + 1) ** mix.zipf_s for i in range(mix.customers)]
        total = sum(weights)
        self._cum: list[float] = []
        acc = 0.0
        for w in weights:
            acc += w / total
            self._cum.append(acc)
        self._backlog: list[tuple[str, str, dict[str, object]]] = []
        self._recent: list[GeneratedEvent] = []

    def _customer(self) -> str:
        import bisect

        i = min(bisect.bisect_left(self._cum, self._rng.random()), self._mix.customers - 1)
        return f"{self._run}-c{i:06d}"

    def _envelope(self, etype: str, customer: str, data: dict[str, object], now: datetime) -> GeneratedEvent:
        self._seq += 1
        eid = f"{self._run}-e{self._seq:09d}"
        body = {
            "specversion": "1.0",
            "id": eid,
            "source": "loadtest/campaign",
            "type": etype,
            "time": now.isoformat(),
            "partitionkey": customer,
            "correlationid": f"{self._run}-corr-{self._seq}",
            "campaignid": self._mix.campaign_id,
            "data": data,
        }
        return GeneratedEvent(customer.encode(), orjson.dumps(body), eid, etype)

    def _order(self, customer: str) -> tuple[str, dict[str, object]]:
        rng = self._rng
        r = rng.random()
        country, currency = next((c, cur) for c, cur, w in _cumulative(COUNTRIES) if r <= w)
        wallet = rng.random() < 0.25
        network = rng.choice(WALLETS if wallet else CARD_NETWORKS)
        if network == "paypal" and country not in ("US", "GB", "DE", "FR", "NL"):
            network = "visa"
        items = []
        for n in range(max(1, min(8, int(rng.expovariate(0.6)) + 1))):
            price = max(99, int(rng.lognormvariate(7.9, 0.9)))
            items.append(
                {
                    "sku": f"sku-{rng.randrange(500)}-{n}",
                    "quantity": rng.choice([1, 1, 1, 2, 3]),
                    "unit_price_cents": price,
                }
            )
        total = sum(int(i["quantity"]) * int(i["unit_price_cents"]) for i in items)  # type: ignore[call-overload]
        order_id = f"{self._run}-o{self._seq + 1:09d}"
        return order_id, {
            "order_id": order_id,
            "customer_id": customer,
            "country": country,
            "currency": currency,
            "items": items,
            "total_cents": total,
            "payment_method": {
                "type": "wallet" if wallet else "card",
                "network": network,
                "token": f"tok_{rng.getrandbits(48):012x}",
            },
        }

    def next_event(self, now: datetime | None = None) -> GeneratedEvent:
        """The next event of the campaign, interleaving orders with their payment outcomes."""
        now = now or datetime.now(UTC)
        rng, mix = self._rng, self._mix
        r = rng.random()
        if r < mix.malformed_rate:
            self._seq += 1
            return GeneratedEvent(self._customer().encode(), rng.choice(MALFORMED), None, "malformed")
        if r < mix.malformed_rate + mix.duplicate_rate and self._recent:
            prior = rng.choice(self._recent)
            return GeneratedEvent(prior.key, prior.value, prior.event_id, "duplicate")
        if self._backlog and rng.random() < 0.5:
            etype, customer, data = self._backlog.pop(0)
            ev = self._envelope(etype, customer, data, now)
        else:
            customer = self._customer()
            order_id, order = self._order(customer)
            ev = self._envelope("order.placed", customer, order, now)
            self._plan_followups(customer, order_id, order)
        self._recent.append(ev)
        if len(self._recent) > 1000:
            self._recent = self._recent[-500:]
        return ev

    def _plan_followups(self, customer: str, order_id: str, order: dict[str, object]) -> None:
        rng, mix = self._rng, self._mix
        base = {
            "order_id": order_id,
            "customer_id": customer,
            "attempt": 1,
            "psp": rng.choice(PSPS),
            "amount_cents": order["total_cents"],
            "currency": order["currency"],
        }
        if rng.random() < mix.decline_rate:
            hard = rng.random() < mix.hard_decline_share
            code = rng.choice(HARD_CODES if hard else SOFT_CODES)
            self._backlog.append(("payment.declined", customer, {**base, "decline_code": code}))
            if rng.random() < mix.method_update_rate:
                pm = {
                    "type": "card",
                    "network": rng.choice(CARD_NETWORKS),
                    "token": f"tok_{rng.getrandbits(48):012x}",
                }
                self._backlog.append(
                    ("payment_method.updated", customer, {"customer_id": customer, "payment_method": pm})
                )
        else:
            self._backlog.append(("payment.authorized", customer, base))

    def events(self, n: int) -> Iterator[GeneratedEvent]:
        for _ in range(n):
            yield self.next_event()


def _cumulative(table: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    out, acc = [], 0.0
    for c, cur, w in table:
        acc += w
        out.append((c, cur, acc))
    out[-1] = (out[-1][0], out[-1][1], 1.0)
    return out
