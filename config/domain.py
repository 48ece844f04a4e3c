"""Business rules and tables the engines read: loaded from ``config/domain.toml`` and validated at start.

Plain pydantic models with no service imports, so the engines (and their unit tests) take them as values.
Every section is frozen and rejects unknown keys, so a typo in the TOML fails at start with the key's
path instead of silently falling back to a default. Sections added after the first release all have
defaults, so an older domain file still loads.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clickcash.errors import ConfigError

DEFAULT_DOMAIN_FILE = Path(__file__).with_name("domain.toml")

Pct = Annotated[float, Field(ge=0, le=100)]
PositiveHours = Annotated[float, Field(gt=0)]
NonNegativeHours = Annotated[float, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- orders -----------------------------------------------------------------------------------------


class RegionRule(_Section):
    """Currencies and payment networks allowed for orders from one country."""

    currencies: list[str]
    networks: list[str]


class PriceBand(_Section):
    """Unit-price bounds for SKUs the catalogue does not list.

    A floor catches fat-finger and coupon-stacking errors (a 1-cent TV); a ceiling catches a price typed
    in the wrong unit. ``None`` means no ceiling.
    """

    floor_unit_cents: Annotated[int, Field(ge=0)] = 0
    ceiling_unit_cents: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _floor_below_ceiling(self) -> PriceBand:
        if self.ceiling_unit_cents is not None and self.floor_unit_cents > self.ceiling_unit_cents:
            raise ValueError(
                f"floor_unit_cents {self.floor_unit_cents} is above ceiling_unit_cents "
                f"{self.ceiling_unit_cents}"
            )
        return self


class CatalogueEntry(_Section):
    """Price guardrail for one SKU (``sku``) or a family of SKUs (``pattern``, a shell-style glob).

    Bounds come from explicit ``floor_unit_cents``/``ceiling_unit_cents`` and/or from a catalogue price:
    with ``list_price_cents`` and ``max_discount_pct`` the floor is the list price less the largest
    allowed discount and the ceiling (unless given) the list price itself. When both give a floor, the
    stricter (higher) one wins.
    """

    sku: str | None = None
    pattern: str | None = None
    floor_unit_cents: Annotated[int, Field(ge=0)] | None = None
    ceiling_unit_cents: Annotated[int, Field(ge=0)] | None = None
    list_price_cents: Annotated[int, Field(ge=0)] | None = None
    max_discount_pct: Pct | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CatalogueEntry:
        if (self.sku is None) == (self.pattern is None):
            raise ValueError("give exactly one of sku or pattern")
        if (self.list_price_cents is None) != (self.max_discount_pct is None):
            raise ValueError("list_price_cents and max_discount_pct go together")
        if (
            self.floor_unit_cents is None
            and self.ceiling_unit_cents is None
            and self.list_price_cents is None
        ):
            raise ValueError("give floor_unit_cents, ceiling_unit_cents or list_price_cents")
        floor, ceiling = self.bounds_cents()
        if ceiling is not None and floor > ceiling:
            raise ValueError(f"floor {floor} cents is above ceiling {ceiling} cents")
        return self

    def bounds_cents(self) -> tuple[int, int | None]:
        """(floor, ceiling) unit price in cents; the floor is rounded up so a discount never exceeds the
        configured maximum by a rounding cent."""
        floor = self.floor_unit_cents or 0
        ceiling = self.ceiling_unit_cents
        if self.list_price_cents is not None and self.max_discount_pct is not None:
            keep_bp = 10_000 - round(self.max_discount_pct * 100)  # basis points of the list price
            floor = max(floor, -(-self.list_price_cents * keep_bp // 10_000))
            if ceiling is None:
                ceiling = self.list_price_cents
        return floor, ceiling


class OrderRules(_Section):
    max_quantity_per_line: Annotated[int, Field(ge=1)] = 50
    max_order_total_cents: Annotated[int, Field(ge=1)] = 2_000_000
    regions: dict[str, RegionRule]
    default_price: PriceBand = PriceBand()
    """Bounds for SKUs no catalogue entry matches (the default accepts every price)."""
    catalogue: list[CatalogueEntry] = Field(default_factory=list)
    """Exact-SKU entries win over patterns; among patterns the first match in file order wins."""
    default_campaign_quantity_limit: Annotated[int, Field(ge=1)] | None = None
    """Units one customer may buy per campaign when the campaign has no own limit (``None``: no limit)."""
    campaign_quantity_limits: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_catalogue_skus(self) -> OrderRules:
        skus = [e.sku for e in self.catalogue if e.sku is not None]
        dupes = sorted({s for s in skus if skus.count(s) > 1})
        if dupes:
            raise ValueError(f"catalogue: duplicate sku entries {dupes}")
        return self


# --- PSPs and routing -------------------------------------------------------------------------------


class Psp(_Section):
    """A payment service provider and where it may be used.

    ``fee_pct`` and ``fee_fixed_cents`` make the expected cost; ``priority`` (lower first) orders PSPs of
    equal cost. ``expected_approval_pct`` is the prior the success-rate score starts from before this PSP
    has traffic in a segment (``None``: the routing policy's ``prior_success_rate``).
    """

    name: str
    countries: list[str]
    currencies: list[str]
    networks: list[str]
    priority: Annotated[int, Field(ge=0)] = 100
    fee_pct: Annotated[float, Field(ge=0, le=20)] = 2.9
    fee_fixed_cents: Annotated[int, Field(ge=0)] = 30
    expected_approval_pct: Pct | None = None


class RoutingWeights(_Section):
    """How the score blends approval, cost and priority, in score points.

    With 1 point per approval percentage point and 1 point per percent of the amount paid in fees, the
    score tracks expected value per unit amount (approval x (amount - fee)): one point more approval is
    worth exactly one percent of fee. Priority is a small tie-breaker.
    """

    success_per_pct: Annotated[float, Field(ge=0)] = 1.0
    cost_per_pct: Annotated[float, Field(ge=0)] = 1.0
    priority_per_unit: Annotated[float, Field(ge=0)] = 0.01


class BreakerPolicy(_Section):
    """When a PSP is taken out of rotation for technical failures (timeouts, gateway errors).

    Trips when a ``window_ms`` of buckets holds ``min_failures`` technical failures, or at least
    ``min_attempts`` attempts of which ``failure_rate`` or more failed technically; stays open for
    ``cooldown_ms`` after the end of the last bucket that tripped it.
    """

    window_ms: Annotated[int, Field(ge=1)] = 120_000
    min_failures: Annotated[int, Field(ge=1)] = 5
    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    min_attempts: Annotated[int, Field(ge=1)] = 10
    cooldown_ms: Annotated[int, Field(ge=0)] = 60_000


class RoutingOverride(_Section):
    """An explicit rule that runs before scoring: pin one PSP, or split volume by percentage.

    Matches on ``campaign_id`` and/or ``merchant_segment`` (all given must match); the first matching
    override wins. Split percentages may sum to less than 100; the remainder is routed by score.
    """

    name: Annotated[str, Field(min_length=1)]
    campaign_id: str | None = None
    merchant_segment: str | None = None
    pin: str | None = None
    split_pct: dict[str, Annotated[float, Field(gt=0, le=100)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_action(self) -> RoutingOverride:
        if self.campaign_id is None and self.merchant_segment is None:
            raise ValueError(f"override {self.name!r}: give campaign_id and/or merchant_segment")
        if (self.pin is None) == (not self.split_pct):
            raise ValueError(f"override {self.name!r}: give exactly one of pin or split_pct")
        total = sum(self.split_pct.values())
        if total > 100 + 1e-9:
            raise ValueError(f"override {self.name!r}: split_pct sums to {total}, above 100")
        return self

    def psp_names(self) -> set[str]:
        return {self.pin} if self.pin is not None else set(self.split_pct)


class RoutingPolicy(_Section):
    """PSP selection: scoring weights, the success-rate window, exploration, breaker and overrides.

    ``ranking = "cost"`` ranks by expected fee then priority only (the behaviour before scoring existed).
    Success rates come from ``max_buckets`` time buckets of ``bucket_ms`` per PSP x segment, smoothed
    toward the prior with ``prior_weight_attempts`` pseudo-attempts so a new PSP is not starved.
    """

    ranking: Literal["score", "cost"] = "score"
    weights: RoutingWeights = RoutingWeights()
    prior_success_rate: Annotated[float, Field(ge=0, le=1)] = 0.90
    prior_weight_attempts: Annotated[float, Field(ge=0)] = 20.0
    bucket_ms: Annotated[int, Field(ge=1_000)] = 60_000
    max_buckets: Annotated[int, Field(ge=1, le=1_000)] = 8
    explore_share: Annotated[float, Field(ge=0, lt=1)] = 0.05
    breaker: BreakerPolicy = BreakerPolicy()
    overrides: list[RoutingOverride] = Field(default_factory=list)
    avoid_declining_psp_codes: list[str] = Field(
        default_factory=lambda: ["05", "91", "96", "timeout", "gateway_error"]
    )
    """Decline codes after which a retry goes to another PSP: technical failures are the PSP's, and
    do-not-honor is often the acquirer's risk rules. Issuer-side codes such as insufficient funds (51)
    would decline anywhere, so those retries stay with the best-scoring PSP."""

    @model_validator(mode="after")
    def _breaker_fits_window(self) -> RoutingPolicy:
        retained_ms = self.bucket_ms * self.max_buckets
        needed_ms = self.breaker.window_ms + self.breaker.cooldown_ms
        if needed_ms > retained_ms:
            raise ValueError(
                f"breaker.window_ms + breaker.cooldown_ms ({needed_ms}) exceeds the retained history "
                f"bucket_ms x max_buckets ({retained_ms}): the breaker would close early"
            )
        names = [o.name for o in self.overrides]
        if len(names) != len(set(names)):
            raise ValueError(f"overrides: duplicate names in {names}")
        return self


# --- dunning ----------------------------------------------------------------------------------------


class QuietHours(_Section):
    """Local hours with no contact and no retry: ``start`` to ``end``, wrapping midnight when start > end."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal; leave quiet_hours out to have none")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are local wall-clock times: no UTC offset")
        return self

    def contains(self, t: time) -> bool:
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


MAX_NETWORK_RETRY_CAP = 100
"""Highest network retry cap the config may set (real networks cap at 15-35 per 30 days). A customer's
state keeps only this many recent retries of the card, which decides every cap exactly (see
``CustomerState.record_retry``)."""


class NetworkRetryLimit(_Section):
    """A card network's retry rules: codes never retried and caps on retries per card.

    Caps count the plan's retries plus those the caller reports as already made, so a plan never pushes
    a card over the network's limit (excess retries are fined per attempt).
    """

    max_retries_30d: Annotated[int, Field(ge=0, le=MAX_NETWORK_RETRY_CAP)] | None = None
    max_retries_24h: Annotated[int, Field(ge=1, le=MAX_NETWORK_RETRY_CAP)] | None = None
    never_retry_codes: list[str] = Field(default_factory=list)


class DunningTier(_Section):
    """Overrides of the base schedule for one customer value tier; unset fields inherit the base."""

    soft_retry_offsets_h: Annotated[list[PositiveHours], Field(min_length=1)] | None = None
    technical_retry_offsets_h: Annotated[list[PositiveHours], Field(min_length=1)] | None = None
    reminder_offsets_h: Annotated[list[NonNegativeHours], Field(min_length=1)] | None = None
    escalation_after_h: PositiveHours | None = None
    escalation_min_tenure_days: Annotated[int, Field(ge=0)] = 0
    """Escalate to a human only for customers at least this many days old (a week-old account is not
    worth an agent's call; a five-year one is)."""


class TierRule(_Section):
    """Assigns a customer to a tier by value and tenure; the first rule that matches wins.

    Value is the sum of the customer's authorized payments in minor units (currencies are not converted:
    a deliberate approximation for tiering). Bounds are inclusive minimums and exclusive maximums.
    """

    tier: Annotated[str, Field(min_length=1)]
    min_lifetime_value_cents: Annotated[int, Field(ge=0)] = 0
    max_lifetime_value_cents: Annotated[int, Field(ge=1)] | None = None
    min_tenure_days: Annotated[int, Field(ge=0)] = 0
    max_tenure_days: Annotated[int, Field(ge=1)] | None = None


_HOLIDAY_RE = re.compile(r"^(?:\d{4}-)?\d{2}-\d{2}$")


class DunningPolicy(_Section):
    """How declined payments are chased: decline-code classes, the schedules, and contact rules."""

    hard_codes: list[str]
    technical_codes: list[str]
    soft_retry_offsets_h: Annotated[list[PositiveHours], Field(min_length=1)]
    technical_retry_offsets_h: Annotated[list[PositiveHours], Field(min_length=1)]
    reminder_channel: str = "email"
    reminder_offsets_h: Annotated[list[NonNegativeHours], Field(min_length=1)] = Field(
        default_factory=lambda: [0.0]
    )
    """When "update your payment method" reminders go out (hard and soft declines), hours after the
    decline."""
    escalation_after_h: PositiveHours | None = None
    default_tier: str = "standard"
    tiers: dict[str, DunningTier] = Field(default_factory=dict)
    tier_rules: list[TierRule] = Field(default_factory=list)
    """How customers are put in tiers (first match wins; none: ``default_tier``)."""
    quiet_hours: QuietHours | None = QuietHours()
    holidays: dict[str, list[str]] = Field(default_factory=dict)
    """Country code (or ``"*"`` for everyone) -> dates, ``YYYY-MM-DD`` once or ``MM-DD`` every year, in
    the customer's local calendar."""
    network_limits: dict[str, NetworkRetryLimit] = Field(default_factory=dict)
    """Per network (``"*"``: any network not listed). With the network unknown the strictest applies."""
    mastercard_stop_advice_codes: list[str] = Field(default_factory=lambda: ["03", "21"])
    mastercard_retry_after_h: dict[str, PositiveHours] = Field(
        default_factory=lambda: {
            "24": 1.0,
            "25": 24.0,
            "26": 48.0,
            "27": 96.0,
            "28": 144.0,
            "29": 192.0,
            "30": 240.0,
        }
    )
    """Mastercard merchant advice codes 24-30: retry no earlier than this many hours."""
    min_step_gap_ms: Annotated[int, Field(ge=1)] = 60_000
    """Steps are at least this far apart, so two steps never share a timer instant."""

    @field_validator("holidays")
    @classmethod
    def _holiday_dates(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for where, days in value.items():
            if where != "*" and not re.fullmatch(r"[A-Z]{2}", where):
                raise ValueError(f"holidays: key {where!r} is neither a country code nor '*'")
            for day in days:
                if not _HOLIDAY_RE.match(day):
                    raise ValueError(f"holidays.{where}: {day!r} is not YYYY-MM-DD or MM-DD")
                parse_holiday(day)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DunningPolicy:
        both = sorted(set(self.hard_codes) & set(self.technical_codes))
        if both:
            raise ValueError(f"codes both hard and technical: {both}")
        known = {*self.tiers, self.default_tier}
        unknown = sorted({r.tier for r in self.tier_rules} - known)
        if unknown:
            raise ValueError(f"tier_rules: tiers {unknown} are not defined in tiers")
        return self

    def tier(self, name: str | None) -> DunningTier | None:
        return self.tiers.get(name or self.default_tier)


def parse_holiday(day: str) -> tuple[int | None, int, int]:
    """``YYYY-MM-DD`` -> (year, month, day); ``MM-DD`` -> (None, month, day). Raises ValueError."""
    parts = [int(p) for p in day.split("-")]
    year, month, dom = (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, parts[0], parts[1])
    date(year or 2000, month, dom)  # 2000 is a leap year, so 02-29 is accepted as a yearly date
    return year, month, dom


class DomainConfig(_Section):
    orders: OrderRules
    psps: Annotated[list[Psp], Field(min_length=1)]
    dunning: DunningPolicy
    routing: RoutingPolicy = RoutingPolicy()

    @model_validator(mode="after")
    def _unique_psp_names(self) -> DomainConfig:
        names = [p.name for p in self.psps]
        if len(names) != len(set(names)):
            raise ValueError(f"psps: duplicate PSP names in {names}")
        for override in self.routing.overrides:
            unknown = sorted(override.psp_names() - set(names))
            if unknown:
                raise ValueError(f"routing.overrides {override.name!r}: unknown PSPs {unknown}")
        return self


def load_domain_config(path: Path = DEFAULT_DOMAIN_FILE) -> DomainConfig:
    """Read and validate the domain file; raise ``ConfigError`` naming the file and the bad key."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"domain config {path}: {exc}") from exc
    try:
        return DomainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"domain config {path}: {problems}") from exc
