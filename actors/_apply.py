"""Applying one validated event to one customer's state: the domain engines wired to outputs and timers.

Called by :class:`clickcash.actors.shard.Shard` for each new (non-duplicate) event, in the customer's order.
Pure
with respect to services: it reads and mutates the loaded ``CustomerState``, appends outputs to the batch's
result and timer operations to the batch's write, all committed atomically by the shard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from clickcash.actors import _output_json as output_json
from clickcash.actors.engines.dunning import CustomerProfile, assign_tier, network_limit, plan_dunning
from clickcash.actors.engines.orders import check_order, order_quantity
from clickcash.actors.engines.psp_routing import RouteDecision, RouteRequest, draw_from_id, route_payment
from clickcash.actors.engines.psp_stats import PspStatsBook, segment_of
from clickcash.actors.state.base import BatchWrite, CustomerState, OpenDunning, OrderSummary, PendingStep
from clickcash.config.domain import DomainConfig
from clickcash.envelope import structured_event_after, structured_tail
from clickcash.events import (
    OUTPUT_SOURCE,
    SYNTHETIC_HEADER,
    SYNTHETIC_HEADER_VALUE,
    CustomerPreferencesUpdated,
    DunningClosed,
    DunningScheduled,
    DunningStepDue,
    DunningTimerFired,
    OrderPlaced,
    OrderRejected,
    OutputRole,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentMethodUpdated,
    Reason,
    RouteDecided,
    output_id,
)

if TYPE_CHECKING:
    from clickcash.actors._decode import InputEvent
    from clickcash.actors.contract import OutputTopics, ShardResult

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_SUFFIX = "+00:00"
_MILLIS = tuple(timedelta(milliseconds=m) for m in range(1000))
_MILLIS_TEXT = tuple(f".{m:03d}000{_UTC_SUFFIX}" if m else _UTC_SUFFIX for m in range(1000))
"""what ``isoformat()`` appends to a whole second's text for each millisecond (nothing for 0 µs)"""
_EXACT_SECONDS = 2**32
"""below this many seconds since the epoch a ``float`` of seconds holds milliseconds to within 2**-22 s"""
SYNTHETIC_COUNT_PREFIX = "synthetic|"
"""count key prefix of the synthetic share of a count (``synthetic|<output type>``, ``synthetic|in:<type>``,
``synthetic|clickcash.dead_letter``): the metrics split their counters by a ``synthetic`` label with it"""


@dataclass(slots=True)
class Apply:
    """Everything one event's application touches."""

    ev: InputEvent
    state: CustomerState
    result: ShardResult
    write: BatchWrite
    key: bytes | None
    partition: int
    attribution: tuple[str | None, str | None] | None = None
    """(correlationid, campaignid) for outputs when not the event's own: a timer command acts for the
    plan, so its outputs carry the attribution of the decline that opened the plan"""
    synthetic: bool | None = None
    """whether outputs are marked synthetic when not the event's own (a timer command acts for its plan)"""
    now_ms: int = 0
    """the event's decision time: its record's timestamp (0: none, read the clock). Every rule applied to
    the event, and every output's ``time``, sees this one instant, and a replay or the verifier's reference
    run decides exactly as the first run did"""
    now: datetime = _EPOCH
    time_text: str = ""


class EventApplier:
    def __init__(
        self,
        topics: OutputTopics,
        domain: DomainConfig,
        clock: Callable[[], datetime],
        psp_stats: PspStatsBook | None = None,
    ) -> None:
        self._topics = topics
        self._domain = domain
        self._clock = clock
        self._psp_stats = psp_stats or PspStatsBook(domain.routing, list(domain.psps))
        self._psp_names = frozenset(p.name for p in domain.psps)
        self._last_instant: tuple[int, datetime, str] = (0, _EPOCH, _EPOCH.isoformat())
        """(ms, datetime, its text) of the last event with a record timestamp: under load many events of
        a batch share a millisecond, and the datetime and its text are immutable"""
        self._second: tuple[int, datetime, str] = (-1, _EPOCH, "")
        """(second, its datetime, its ``isoformat()`` without the UTC offset) for :meth:`_instant`"""
        self._tail: tuple[tuple[object, ...], bytes] = ((), b"")
        """the envelope attributes from ``time`` on of the last output, with what they were made of"""

    def apply(self, a: Apply) -> None:
        data = a.ev.data
        if a.now_ms > 0:
            last_ms, now, text = self._last_instant
            if a.now_ms != last_ms:
                now, text = self._instant(a.now_ms)
                self._last_instant = (a.now_ms, now, text)
            a.now, a.time_text = now, text
        else:
            a.now = self._clock()
            a.now_ms = _ms(a.now)
            a.time_text = a.now.isoformat()
        if a.state.first_seen_ms is None:
            a.state.first_seen_ms = a.now_ms
        if isinstance(data, OrderPlaced):
            self._order_placed(a, data)
        elif isinstance(data, PaymentDeclined):
            self._payment_declined(a, data)
        elif isinstance(data, PaymentAuthorized):
            self._payment_authorized(a, data)
        elif isinstance(data, PaymentMethodUpdated):
            self._payment_method_updated(a, data)
        elif isinstance(data, CustomerPreferencesUpdated):
            a.state.timezone = data.timezone
            a.state.channels = list(data.channels)
            if data.customer_since is not None:
                since = datetime.combine(data.customer_since, datetime.min.time(), UTC)
                a.state.customer_since_ms = _ms(since)
        elif isinstance(data, DunningTimerFired):
            self._timer_fired(a, data)

    def _instant(self, ms: int) -> tuple[datetime, str]:
        """``datetime.fromtimestamp(ms / 1000, UTC)`` and its ``isoformat()``, from the last whole second's
        datetime and text: record timestamps advance a millisecond at a time, so consecutive events
        rarely share a millisecond but nearly always a second, and adding a cached ``timedelta`` and
        appending a cached suffix is a fraction of converting and formatting each instant in full.
        Exact below ``_EXACT_SECONDS`` (the float ``ms / 1000`` is then within a quarter of a microsecond
        of the instant, so ``fromtimestamp`` rounds to it); later instants take the full path."""
        second, millis = divmod(ms, 1000)
        if second != self._second[0]:
            if second >= _EXACT_SECONDS:
                now = datetime.fromtimestamp(ms / 1000, UTC)
                return now, now.isoformat()
            base = datetime.fromtimestamp(second, UTC)
            self._second = (second, base, base.isoformat()[: -len(_UTC_SUFFIX)])
        _, base, head = self._second
        return base + _MILLIS[millis], head + _MILLIS_TEXT[millis]

    # --- outputs ----------------------------------------------------------------------------------

    def emit(self, a: Apply, topic: str, type_: str, role: str, data: Any) -> None:
        """Encode one output envelope; ``data`` (a validated output model) is serialized by pydantic-core
        straight to JSON and spliced in as the last member, without an intermediate dict; ``bytes`` are
        a model's JSON already (``_output_json``)."""
        ev = a.ev
        correlationid, campaignid = a.attribution or (ev.correlationid, ev.campaignid)
        synthetic = ev.synthetic if a.synthetic is None else a.synthetic
        # the attributes from ``time`` on are the same for every output of the event: encoded once
        tail_key = (ev.id, ev.customer_id, a.time_text, correlationid, campaignid, synthetic)
        if self._tail[0] != tail_key:
            extensions: dict[str, object] = {
                "causationid": ev.id,
                "correlationid": correlationid,
                "campaignid": campaignid,
            }
            if synthetic:
                extensions["synthetic"] = True
            tail = structured_tail(
                time=a.time_text,
                datacontenttype="application/json",
                partitionkey=ev.customer_id,
                extensions=extensions,
            )
            self._tail = (tail_key, tail)
        value = structured_event_after(
            id=output_id(ev.id, role),
            source=OUTPUT_SOURCE,
            type=type_,
            tail=self._tail[1],
            data=data if isinstance(data, bytes) else data.__pydantic_serializer__.to_json(data),
        )
        if synthetic:
            a.result.count(SYNTHETIC_COUNT_PREFIX + type_)
            a.result.add(topic, a.key, value, [(SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE)])
        else:
            a.result.add(topic, a.key, value)
        a.result.count(type_)

    # --- orders -----------------------------------------------------------------------------------

    def _route(self, a: Apply, request: RouteRequest, salt: str) -> RouteDecision | None:
        """Route with the configured policy on the shared success-rate stats of the request's segment.

        The exploration and split draw comes from the event id, so a replayed event draws the same."""
        decision = route_payment(
            request,
            self._domain.psps,
            policy=self._domain.routing,
            stats=self._psp_stats.stats_for(request.segment, a.now_ms),
            now=a.now,
            explore_draw=draw_from_id(a.ev.id, salt),
        )
        if decision is not None:
            a.result.count(f"route_decided:{decision.psp}")
            for reason in decision.reasons:
                if reason.code == "breaker_open" and reason.detail:
                    a.result.count(f"breaker_open:{reason.detail.split(':', 1)[0]}")
        return decision

    def _order_placed(self, a: Apply, order: OrderPlaced) -> None:
        campaign = a.ev.campaignid
        reasons = check_order(
            order,
            self._domain.orders,
            campaign_id=campaign,
            quantity_so_far=a.state.campaign_units.get(campaign, 0) if campaign else 0,
        )
        decision = None
        if not reasons:
            request = RouteRequest(
                order.country,
                order.currency,
                order.payment_method.network,
                order.total_cents,
                campaign_id=campaign,
                merchant_segment=order.merchant_segment,
            )
            decision = self._route(a, request, "route")
            if decision is None:
                reasons = [
                    Reason(
                        code="no_eligible_psp",
                        field="data.payment_method.network",
                        detail=f"no PSP serves {order.country}/{order.currency}/"
                        f"{order.payment_method.network}",
                    )
                ]
        if reasons or decision is None:
            rejected = OrderRejected(order_id=order.order_id, customer_id=order.customer_id, reasons=reasons)
            self.emit(a, self._topics.orders, "order.rejected", OutputRole.ORDER_DECISION, rejected)
            return
        # the hot path's two outputs, written without building their models (see ``_output_json``)
        accepted = output_json.order_accepted(
            order.order_id, order.customer_id, order.total_cents, order.currency, order.country
        )
        self.emit(a, self._topics.orders, "order.accepted", OutputRole.ORDER_DECISION, accepted)
        route = output_json.route_decided(
            order.order_id,
            order.customer_id,
            1,
            decision.psp,
            decision.fallbacks,
            order.total_cents,
            order.currency,
            f"{order.order_id}:1",
            decision.reasons,
        )
        self.emit(a, self._topics.payments, "payment.route_decided", OutputRole.ROUTE, route)
        a.state.payment_network = order.payment_method.network
        if campaign:
            a.state.add_campaign_units(campaign, order_quantity(order))
        a.state.remember_order(
            order.order_id,
            OrderSummary(
                amount_cents=order.total_cents,
                currency=order.currency,
                country=order.country,
                network=order.payment_method.network,
            ),
        )

    # --- dunning ----------------------------------------------------------------------------------

    def _cancel_timer(self, a: Apply, order_id: str, plan: OpenDunning) -> None:
        member = plan.timer_member(a.ev.customer_id, order_id)
        if member is not None and plan.timer_partition is not None:
            a.write.remove_timer(plan.timer_partition, member)

    def _arm_timer(self, a: Apply, order_id: str, plan: OpenDunning) -> None:
        """Wake the plan at its next step: one timer per plan, never one object per step in memory."""
        member = plan.timer_member(a.ev.customer_id, order_id)
        if member is not None:
            plan.timer_partition = a.partition
            a.write.add_timer(a.partition, member, plan.steps[plan.next_index].due_ms)

    def _close(self, a: Apply, order_id: str, type_: str, reason: str, role: str) -> None:
        plan = a.state.open_dunning.pop(order_id, None)
        if plan is None:
            return
        self._cancel_timer(a, order_id, plan)
        closed = DunningClosed(order_id=order_id, customer_id=a.ev.customer_id, reason=reason)
        self.emit(a, self._topics.dunning, type_, role, closed)

    def _record_outcome(
        self, a: Apply, order_id: str, psp: str, *, approved: bool, technical: bool = False
    ) -> None:
        """Feed the PSP's success rate in the order's segment (committed with the batch, shared)."""
        order = a.state.orders.get(order_id)
        if order is None or psp not in self._psp_names:
            a.result.count("outcome_unattributed")
            return
        segment = segment_of(order.network, order.currency, order.country)
        increments = self._psp_stats.record(psp, segment, a.now_ms, approved=approved, technical=technical)
        for key, add in increments.items():
            a.write.counter_increments[key] = a.write.counter_increments.get(key, 0) + add

    def _payment_declined(self, a: Apply, declined: PaymentDeclined) -> None:
        now, now_ms = a.now, a.now_ms
        policy = self._domain.dunning
        technical = declined.decline_code in policy.technical_codes
        self._record_outcome(a, declined.order_id, declined.psp, approved=False, technical=technical)
        order = a.state.orders.get(declined.order_id)
        tenure_days = a.state.tenure_days(now_ms)
        profile = CustomerProfile(
            timezone=a.state.timezone,
            channels=tuple(a.state.channels),
            tier=assign_tier(policy, a.state.lifetime_value_cents, tenure_days),
            tenure_days=tenure_days,
            country=order.country if order else None,
        )
        network = a.state.payment_network or (order.network if order else None)
        plan = plan_dunning(
            declined,
            policy,
            now,
            a.state.channels,
            profile=profile,
            retries_last_30d=a.state.retries_counted(now_ms, 30 * _DAY_MS, declined.order_id),
            retries_last_24h=a.state.retries_made(now_ms, _DAY_MS),
            network=network,
            advice_code=declined.merchant_advice_code,
        )
        previous = a.state.open_dunning.get(declined.order_id)
        declines = (previous.declines + 1) if previous else 1
        if previous is not None:
            self._cancel_timer(a, declined.order_id, previous)
        plan_id = output_id(a.ev.id, OutputRole.DUNNING)
        scheduled = DunningScheduled(
            order_id=declined.order_id,
            customer_id=declined.customer_id,
            decline_code=declined.decline_code,
            decline_class=plan.decline_class,
            steps=plan.steps,
        )
        self.emit(a, self._topics.dunning, "dunning.scheduled", OutputRole.DUNNING, scheduled)
        open_plan = OpenDunning(
            declines=declines,
            last_psp=declined.psp,
            last_decline_code=declined.decline_code,
            decline_class=plan.decline_class,
            plan_id=plan_id,
            correlationid=a.ev.correlationid,
            campaignid=a.ev.campaignid,
            synthetic=a.ev.synthetic,
            steps=[
                PendingStep(kind=s.kind, due_ms=int(s.due_at.timestamp() * 1000), channel=s.channel)
                for s in plan.steps
            ],
        )
        superseded = a.state.open_plan(declined.order_id, open_plan)
        if not open_plan.steps:  # nothing may be done (no retry left, no allowed channel): close now
            role = f"{OutputRole.DUNNING}:end"
            self._close(a, declined.order_id, "dunning.exhausted", "nothing_to_schedule", role)
        self._arm_timer(a, declined.order_id, open_plan)
        for order_id, old in superseded:
            self._cancel_timer(a, order_id, old)
            closed = DunningClosed(
                order_id=order_id, customer_id=a.ev.customer_id, reason="too_many_open_plans"
            )
            role = f"{OutputRole.DUNNING}:exhausted:{order_id}"
            self.emit(a, self._topics.dunning, "dunning.exhausted", role, closed)

    def _payment_authorized(self, a: Apply, authorized: PaymentAuthorized) -> None:
        self._record_outcome(a, authorized.order_id, authorized.psp, approved=True)
        a.state.lifetime_value_cents += authorized.amount_cents
        self._close(a, authorized.order_id, "dunning.recovered", "payment_authorized", OutputRole.DUNNING)

    def _timer_fired(self, a: Apply, fired: DunningTimerFired) -> None:
        """A due step: act on it only if the plan is still open and this is its next step (so a step fires
        once, and never after the customer paid), then arm the timer for the step after."""
        plan = a.state.open_dunning.get(fired.order_id)
        if plan is None or plan.plan_id != fired.plan_id or plan.next_index != fired.step_index:
            member = "\x1f".join([a.ev.customer_id, fired.order_id, fired.plan_id, str(fired.step_index)])
            a.write.remove_timer(a.partition, member)
            a.result.count("timer_stale")
            return
        self._cancel_timer(a, fired.order_id, plan)
        a.attribution = (plan.correlationid, plan.campaignid)
        a.synthetic = plan.synthetic or a.ev.synthetic
        step = plan.steps[plan.next_index]
        attempt = None
        if step.kind == "retry":
            attempt = plan.declines + 1
            self._retry(a, fired.order_id, plan, attempt, Reason(code="dunning_retry_due"))
        due = DunningStepDue(
            order_id=fired.order_id,
            customer_id=fired.customer_id,
            plan_id=fired.plan_id,
            step_index=fired.step_index,
            kind=step.kind,
            channel=step.channel,
            attempt=attempt,
        )
        self.emit(a, self._topics.dunning, "dunning.step_due", f"{OutputRole.DUNNING}:step", due)
        plan.next_index += 1
        if plan.next_index >= len(plan.steps):
            self._close(
                a, fired.order_id, "dunning.exhausted", "schedule_completed", f"{OutputRole.DUNNING}:end"
            )
        else:
            self._arm_timer(a, fired.order_id, plan)

    def _retry(self, a: Apply, order_id: str, plan: OpenDunning, attempt: int, why: Reason) -> None:
        order = a.state.orders.get(order_id)
        if order is None:
            return
        network = a.state.payment_network or order.network
        avoid: frozenset[str] = frozenset()
        switch = self._domain.routing.avoid_declining_psp_codes
        if plan.last_psp and (plan.last_decline_code is None or plan.last_decline_code in switch):
            avoid = frozenset([plan.last_psp])
        request = RouteRequest(
            order.country, order.currency, network, order.amount_cents, avoid, campaign_id=plan.campaignid
        )
        decision = self._route(a, request, f"retry:{attempt}")
        if decision is None:
            return
        a.state.record_retry(a.now_ms)
        route = RouteDecided(
            order_id=order_id,
            customer_id=a.ev.customer_id,
            attempt=attempt,
            psp=decision.psp,
            fallbacks=decision.fallbacks,
            amount_cents=order.amount_cents,
            currency=order.currency,
            idempotency_key=f"{order_id}:{attempt}",
            reasons=[why, *decision.reasons],
        )
        self.emit(a, self._topics.payments, "payment.route_decided", f"{OutputRole.ROUTE}:{order_id}", route)

    def _payment_method_updated(self, a: Apply, update: PaymentMethodUpdated) -> None:
        """A new payment method retries every open dunning plan at once, avoiding the PSP that declined.

        The open plans' remaining retries will now run on the new card, so an immediate retry is made only
        while the card's network budget has room for it next to them (``retry_skipped_network_cap``)."""
        a.state.payment_network = update.payment_method.network
        a.state.card_retries_ms = []  # a new card: the network caps count per card
        limit = network_limit(self._domain.dunning, update.payment_method.network)
        now_ms = a.now_ms
        for order_id, plan in sorted(a.state.open_dunning.items()):
            over_30d = limit.max_retries_30d is not None and (
                a.state.retries_counted(now_ms, 30 * _DAY_MS, "") >= limit.max_retries_30d
            )
            over_24h = limit.max_retries_24h is not None and (
                a.state.retries_made(now_ms, _DAY_MS) >= limit.max_retries_24h
            )
            if over_30d or over_24h:
                a.result.count("retry_skipped_network_cap")
                continue
            self._retry(a, order_id, plan, plan.declines + 1, Reason(code="payment_method_updated"))


_DAY_MS = 86_400_000


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def utc_now() -> datetime:
    return datetime.now(UTC)
