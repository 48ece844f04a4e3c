"""Campaign traffic as data: a deterministic generator of realistic input events.

Pure (no Kafka): the demo, the benchmark and the Locust users all draw from it, and its distributions are
unit-tested. Customers are Zipf-skewed so a few are hot and most are cold; orders are followed by payment
outcomes with soft and hard declines, some payment-method updates, and a configurable share of re-sent
duplicates and malformed records.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from clickcash.envelope import structured_event

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
    b'{"specversion": "1.0", "id": "x", "type": "order.placed", "synthetic": true}',
    b'{"specversion": "1.0", "id": "bad-type", "source": "s", "type": "coupon.redeemed", '
    b'"time": "2026-01-01T00:00:00Z", "partitionkey": "c", "synthetic": true, "data": {}}',
]
"""Bad records of the mix; those that are JSON objects say ``synthetic: true`` like every generated event
(their dead letters are marked); the others cannot carry an attribute."""


# Decline codes of the per-PSP outcome model (``CampaignMix.psps``), weighted as seen in card payments:
# insufficient funds and do-not-honor dominate soft declines; technical ones are gateway errors/timeouts.
SOFT_CODE_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("51", 0.45),
    ("05", 0.3),
    ("61", 0.1),
    ("65", 0.1),
    ("1A", 0.05),
)
HARD_CODE_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("54", 0.3),
    ("14", 0.25),
    ("04", 0.15),
    ("41", 0.15),
    ("43", 0.15),
)
TECHNICAL_CODE_WEIGHTS: tuple[tuple[str, float], ...] = (("91", 0.4), ("96", 0.3), ("timeout", 0.3))


@dataclass(frozen=True)
class PspProfile:
    """How one payment service provider answers in the generated traffic."""

    name: str
    share: float
    """share of card and non-PayPal wallet payments it gets (PayPal payments go to a profile named paypal)"""
    approval_rate: float
    hard_share: float = 0.15
    """share of its declines that are hard (never retried)"""
    technical_share: float = 0.08
    """share of its declines that are technical (gateway errors, timeouts)"""


# Starting values: authorization rates of 85-95 % are typical for card-not-present e-commerce.
DEFAULT_PSPS: tuple[PspProfile, ...] = (
    PspProfile("adyen", 0.45, 0.92, hard_share=0.12, technical_share=0.05),
    PspProfile("stripe", 0.35, 0.90, hard_share=0.15, technical_share=0.06),
    PspProfile("braintree", 0.20, 0.86, hard_share=0.18, technical_share=0.12),
    PspProfile("paypal", 0.0, 0.95, hard_share=0.10, technical_share=0.05),
)


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
    psps: tuple[PspProfile, ...] = ()
    """per-PSP approval rates and decline classes; empty keeps the simple model (``decline_rate`` for every
    PSP, ``hard_decline_share`` of declines hard)"""
    recovery_rate: float = 0.0
    """share of payment-method updates followed by a successful new authorization (ends dunning)"""
    payment_outcomes: bool = True
    """False when something else answers for the PSPs (``clickcash.loadtest.traffic.psp_sim``): orders only"""
    units_per_customer: int | None = 55
    """units a customer orders under the campaign; their later orders are regular purchases (no campaign id,
    so no campaign limit). None: every order is a campaign order, and a hot customer buys without end. A real
    campaign's shoppers order a handful of units: with 55 against the guard's per-campaign limit of 50
    (config/domain.toml), the orders that take a busy customer past 50 are rejected (measured: about 1 % of
    orders on the load-test mix, 0.5 % on the demo's), the rest accepted. Customers stay Zipf-skewed: hot
    keys still load one partition, shard and state far more than cold ones"""
    regional_methods: bool = True
    """pay only with networks the order's region accepts (a checkout offers only those); False also sends
    e.g. amex in the euro zone, which the guard rejects"""

    @property
    def name(self) -> str:
        """``campaign`` or ``abuse`` when the two knobs that tell them apart match one, else ``custom``."""
        for name, knobs in MIX_KNOBS.items():
            if all(getattr(self, k) == v for k, v in knobs.items()):
                return name
        return "custom"


MIX_KNOBS: dict[str, dict[str, Any]] = {
    "campaign": {"units_per_customer": 55, "regional_methods": True},
    "abuse": {"units_per_customer": None, "regional_methods": False},
}
"""The named traffic mixes (``--mix``). ``campaign`` (the default): most orders are accepted (under 10 %
rejected), as in a real campaign, so a load test measures the full decision path. ``abuse``: hot customers
buy without end and pay with methods their region refuses, so most orders are rejected by the quantity and
method guards: it exercises the rejection path (and flatters throughput, which is why it is not the
default)."""
MIX_NAMES: tuple[str, ...] = tuple(MIX_KNOBS)

# networks each generated country's checkout offers (config/domain.toml [orders.regions.*]), card first
_REGION_NETWORKS: dict[str, frozenset[str]] = {
    "US": frozenset({"visa", "mastercard", "amex", "paypal", "applepay", "googlepay"}),
    "GB": frozenset({"visa", "mastercard", "amex", "paypal", "applepay", "googlepay"}),
    "DE": frozenset({"visa", "mastercard", "paypal", "applepay", "googlepay"}),
    "FR": frozenset({"visa", "mastercard", "paypal", "applepay", "googlepay"}),
    "NL": frozenset({"visa", "mastercard", "paypal", "applepay"}),
}


def decisions_line(mix: str | None, outputs_by_type: dict[str, int]) -> str:
    """The traffic mix and the orders' accepted/rejected split: a run on a mostly rejected mix measures the
    cheap rejection path, so a reader needs both next to the throughput."""
    accepted = outputs_by_type.get("order.accepted", 0)
    rejected = outputs_by_type.get("order.rejected", 0)
    share = f" ({rejected / (accepted + rejected):.1%} rejected)" if accepted + rejected else ""
    return f"traffic mix: {mix or 'unknown'}; orders accepted {accepted:,}, rejected {rejected:,}{share}"


def named_mix(name: str, **overrides: Any) -> CampaignMix:
    """``CampaignMix`` of a named mix (see ``MIX_KNOBS``) with ``overrides``; ValueError names the choices."""
    if name not in MIX_KNOBS:
        raise ValueError(f"mix: unknown mix {name!r}; choose one of {', '.join(MIX_NAMES)}")
    return CampaignMix(**{**MIX_KNOBS[name], **overrides})


def loadtest_mix(mix: str = "campaign", **overrides: Any) -> CampaignMix:
    """The mix of ``clickcash loadtest`` and ``clickcash compare``: many customers (Zipf-skewed), per-PSP
    outcomes, recoveries; ``mix`` names the shoppers' behaviour (``campaign`` or ``abuse``)."""
    base: dict[str, Any] = {
        "customers": 50_000,
        "psps": DEFAULT_PSPS,
        "recovery_rate": 0.5,
        "method_update_rate": 0.35,
    }
    base.update(overrides)
    return named_mix(mix, **base)


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    key: bytes | None
    value: bytes
    event_id: str | None
    """None for malformed records"""
    kind: str
    """event type, or 'duplicate' / 'malformed'"""


class EventSource(Protocol):
    def next_event(self) -> GeneratedEvent: ...


PREPARED_EVENTS_MAX = 300_000
"""events a ``PreparedEvents`` holds at most (~150 MB); later ones are generated as they are asked for"""


class PreparedEvents:
    """The first ``count`` events of ``generator``, generated now; the rest as they are asked for.

    A paced run prepares its events before its clock starts: generating one costs ~38 µs of Python (a slow
    day on the 2-core development machine), which would otherwise run on the cores the measured pipeline
    shares, as a campaign's clients do not. The events and their order are the generator's own; each
    event's ``time`` is when it was generated, a few seconds before it is sent (the pipeline decides on the
    Kafka record's timestamp, which is stamped when it is sent)."""

    def __init__(self, generator: EventSource, count: int) -> None:
        self._generator = generator
        self._ready = deque(generator.next_event() for _ in range(min(count, PREPARED_EVENTS_MAX)))

    def next_event(self) -> GeneratedEvent:
        return self._ready.popleft() if self._ready else self._generator.next_event()


class CampaignGenerator:
    """``run_id`` prefixes event and order ids; ``customer_prefix`` (default ``run_id``) prefixes customer
    ids, so several generators (one per load-generating process) can share one population of customers while
    their event ids stay unique."""

    def __init__(
        self, mix: CampaignMix, seed: int = 7, run_id: str = "run", *, customer_prefix: str | None = None
    ) -> None:
        self._mix = mix
        self._rng = random.Random(seed)
        self._run = run_id
        self._customer_prefix = run_id if customer_prefix is None else customer_prefix
        self._psp_cum = _weights_cumulative([p.share for p in mix.psps]) if mix.psps else []
        self._paypal = next((p for p in mix.psps if p.name == "paypal"), None)
        self._seq = 0
        weights = [1 / (i + 1) ** mix.zipf_s for i in range(mix.customers)]
        total = sum(weights)
        self._cum: list[float] = []
        acc = 0.0
        for w in weights:
            acc += w / total
            self._cum.append(acc)
        self._backlog: list[tuple[str, str, dict[str, object], str | None]] = []
        """follow-up events: (type, customer, data, campaign id as the order's: "" the mix's, None none)"""
        self._order_campaign: str | None = ""
        """the campaign of the order whose follow-ups are being planned"""
        self._recent: list[GeneratedEvent] = []
        self._campaign_units: dict[str, int] = {}
        """units each customer ordered in the campaign so far (``units_per_customer``)"""

    def _customer(self) -> str:
        i = min(bisect.bisect_left(self._cum, self._rng.random()), self._mix.customers - 1)
        return f"{self._customer_prefix}-c{i:06d}"

    def _campaign_of_order(self, customer: str, units: int) -> str | None:
        """The campaign an order of ``units`` belongs to: the mix's, until the customer's campaign budget
        (``units_per_customer``) would be exceeded; after that their orders are regular purchases (no
        campaign, so no campaign limit applies)."""
        budget = self._mix.units_per_customer
        bought = self._campaign_units.get(customer, 0)
        if budget is not None and bought > 0 and bought + units > budget:
            return None
        self._campaign_units[customer] = bought + units
        return self._mix.campaign_id

    def _envelope(
        self,
        etype: str,
        customer: str,
        data: dict[str, object],
        now: datetime,
        campaign: str | None = "",
    ) -> GeneratedEvent:
        """``campaign``: the event's campaign id; "" for the mix's, None for none (attribute left out)."""
        self._seq += 1
        eid = f"{self._run}-e{self._seq:09d}"
        campaignid = self._mix.campaign_id if campaign == "" else campaign
        extensions: dict[str, object] = {"correlationid": f"{self._run}-corr-{self._seq}"}
        if campaignid is not None:
            extensions["campaignid"] = campaignid
        extensions["synthetic"] = True
        value = structured_event(
            id=eid,
            source="loadtest/campaign",
            type=etype,
            time=now.isoformat(),
            partitionkey=customer,
            extensions=extensions,
            data=data,
        )
        return GeneratedEvent(customer.encode(), value, eid, etype)

    def _order(self, customer: str) -> tuple[str, dict[str, object]]:
        rng = self._rng
        r = rng.random()
        country, currency = next((c, cur) for c, cur, w in _cumulative(COUNTRIES) if r <= w)
        wallet = rng.random() < 0.25
        network = rng.choice(WALLETS if wallet else CARD_NETWORKS)
        if network == "paypal" and country not in ("US", "GB", "DE", "FR", "NL"):
            network = "visa"
        if self._mix.regional_methods and network not in _REGION_NETWORKS.get(country, frozenset({network})):
            network = "visa" if not wallet else "paypal"
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
            etype, customer, data, followup_campaign = self._backlog.pop(0)
            ev = self._envelope(etype, customer, data, now, followup_campaign)
        else:
            customer = self._customer()
            order_id, order = self._order(customer)
            items = order["items"]
            assert isinstance(items, list)
            units = sum(int(item["quantity"]) for item in items)
            campaign = self._campaign_of_order(customer, units)
            ev = self._envelope("order.placed", customer, order, now, campaign)
            self._order_campaign = campaign
            self._plan_followups(customer, order_id, order)
        self._recent.append(ev)
        if len(self._recent) > 1000:
            self._recent = self._recent[-500:]
        return ev

    def _follow(self, event: tuple[str, str, dict[str, object]]) -> None:
        """Queue a follow-up of the current order, in the order's campaign."""
        self._backlog.append((*event, self._order_campaign))

    def _plan_followups(self, customer: str, order_id: str, order: dict[str, object]) -> None:
        if not self._mix.payment_outcomes:
            return
        if self._mix.psps:
            self._plan_psp_outcome(customer, order_id, order)
            return
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
            self._follow(("payment.declined", customer, {**base, "decline_code": code}))
            if rng.random() < mix.method_update_rate:
                pm = {
                    "type": "card",
                    "network": rng.choice(CARD_NETWORKS),
                    "token": f"tok_{rng.getrandbits(48):012x}",
                }
                self._follow(
                    ("payment_method.updated", customer, {"customer_id": customer, "payment_method": pm})
                )
        else:
            self._follow(("payment.authorized", customer, base))

    def _plan_psp_outcome(self, customer: str, order_id: str, order: dict[str, object]) -> None:
        """The per-PSP model: the PSP by share (PayPal payments by PayPal), its approval rate, its split of
        declines into soft, hard and technical, and recoveries after payment-method updates."""
        rng, mix = self._rng, self._mix
        method = order["payment_method"]
        assert isinstance(method, dict)
        if method["network"] == "paypal" and self._paypal is not None:
            psp = self._paypal
        else:
            psp = mix.psps[min(bisect.bisect_left(self._psp_cum, rng.random()), len(mix.psps) - 1)]
        base: dict[str, object] = {
            "order_id": order_id,
            "customer_id": customer,
            "attempt": 1,
            "psp": psp.name,
            "amount_cents": order["total_cents"],
            "currency": order["currency"],
        }
        if rng.random() < psp.approval_rate:
            self._follow(("payment.authorized", customer, base))
            return
        r = rng.random()
        if r < psp.hard_share:
            code = weighted_choice(rng, HARD_CODE_WEIGHTS)
        elif r < psp.hard_share + psp.technical_share:
            code = weighted_choice(rng, TECHNICAL_CODE_WEIGHTS)
        else:
            code = weighted_choice(rng, SOFT_CODE_WEIGHTS)
        self._follow(("payment.declined", customer, {**base, "decline_code": code}))
        if rng.random() < mix.method_update_rate:
            wallet = rng.random() < 0.2
            pm = {
                "type": "wallet" if wallet else "card",
                "network": rng.choice(["applepay", "googlepay"] if wallet else CARD_NETWORKS),
                "token": f"tok_{rng.getrandbits(48):012x}",
            }
            self._follow(
                ("payment_method.updated", customer, {"customer_id": customer, "payment_method": pm})
            )
            if rng.random() < mix.recovery_rate:
                others = [p for p in mix.psps if p.name != psp.name and p.share > 0] or [psp]
                self._follow(
                    ("payment.authorized", customer, {**base, "attempt": 2, "psp": rng.choice(others).name})
                )

    def events(self, n: int) -> Iterator[GeneratedEvent]:
        for _ in range(n):
            yield self.next_event()


def _weights_cumulative(weights: Sequence[float]) -> list[float]:
    total = sum(weights) or 1.0
    out, acc = [], 0.0
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def weighted_choice(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    r, acc = rng.random() * sum(w for _, w in table), 0.0
    for code, w in table:
        acc += w
        if r < acc:
            return code
    return table[-1][0]


def _cumulative(table: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    out, acc = [], 0.0
    for c, cur, w in table:
        acc += w
        out.append((c, cur, acc))
    out[-1] = (out[-1][0], out[-1][1], 1.0)
    return out
