"""What a shard remembers, behind a small protocol: idempotency records, first responses, customer state.

Two implementations share the semantics: :class:`InMemoryStateStore` (unit tests, no services) and
``clickcash.actors.state.redis.RedisStateStore`` (production; one round trip to load a batch, one atomic Lua
call to
commit it). A batch commit is optimistic: it checks that every customer's version is the one loaded and
that no event was claimed meanwhile, and writes nothing if either check fails.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from clickcash.actors import keyspace
from clickcash.config.domain import MAX_NETWORK_RETRY_CAP


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The first sighting of an event id: its payload fingerprint and where it was read from.

    The position tells a replay (same partition and offset: return the stored first response) from a
    re-send (another offset: a duplicate, or a conflict if the fingerprint differs).
    """

    fingerprint: str
    partition: int
    offset: int

    def encode(self) -> bytes:
        return f"{self.fingerprint}|{self.partition}|{self.offset}".encode()

    @classmethod
    def decode(cls, raw: bytes) -> IdempotencyRecord:
        fp, p, o = raw.decode().split("|")
        return cls(fp, int(p), int(o))


timer_key = keyspace.timers
"""The sorted set of dunning timers of one input partition (see :func:`clickcash.actors.keyspace.timers`)."""


# The parts of a customer's document are plain dataclasses, not pydantic models: orjson writes dataclasses
# natively (fields in declaration order, the bytes pydantic's serializer writes for them), so encoding a
# document calls no Python per part, and pydantic still validates them when a document is decoded (unknown
# keys ignored, as the models' ``extra="ignore"`` did).


@dataclass
class PendingStep:
    kind: str
    due_ms: int
    channel: str | None = None


@dataclass
class OpenDunning:
    """A dunning plan in progress: its steps, which one is next, and the timer that will wake it."""

    declines: int = 1
    last_psp: str | None = None
    last_decline_code: str | None = None
    decline_class: str = "soft"
    plan_id: str = ""
    correlationid: str | None = None
    campaignid: str | None = None
    synthetic: bool = False
    """the decline that opened the plan was synthetic: the plan's step outputs are marked too"""
    steps: list[PendingStep] = field(default_factory=list)
    next_index: int = 0
    timer_partition: int | None = None

    def timer_member(self, customer_id: str, order_id: str) -> str | None:
        """The timer's member in the partition's sorted set, or None when no step is left."""
        if self.next_index >= len(self.steps):
            return None
        return keyspace.timer_member(customer_id, order_id, self.plan_id, self.next_index)


@dataclass
class OrderSummary:
    amount_cents: int
    currency: str
    country: str
    network: str


class CustomerState(BaseModel):
    """Per-customer state any shard can load, so any shard can take over any customer."""

    model_config = ConfigDict(extra="ignore")

    timezone: str = "UTC"
    channels: list[str] = Field(default_factory=lambda: ["email"])
    payment_network: str | None = None
    orders: dict[str, OrderSummary] = Field(default_factory=dict)
    open_dunning: dict[str, OpenDunning] = Field(default_factory=dict)
    campaign_units: dict[str, int] = Field(default_factory=dict)
    """campaign id -> units in the customer's accepted orders (the per-campaign quantity guard)"""
    first_seen_ms: int | None = None
    customer_since_ms: int | None = None
    """sign-up time from the CRM (``customer.preferences_updated``), preferred over first_seen_ms"""
    lifetime_value_cents: int = 0
    """authorized payments so far, minor units of any currency (tiering only)"""
    card_retries_ms: list[int] = Field(default_factory=list)
    """when dunning retried the current payment method (last 30 days), for the network caps"""

    MAX_ORDERS: ClassVar[int] = 50
    MAX_OPEN_DUNNING: ClassVar[int] = 10
    MAX_CAMPAIGNS: ClassVar[int] = 20
    RETRY_WINDOW_MS: ClassVar[int] = 30 * 86_400_000
    MAX_CARD_RETRIES: ClassVar[int] = MAX_NETWORK_RETRY_CAP

    def tenure_days(self, now_ms: int) -> int:
        since = self.customer_since_ms if self.customer_since_ms is not None else self.first_seen_ms
        return max(0, (now_ms - since) // 86_400_000) if since is not None else 0

    def add_campaign_units(self, campaign_id: str, units: int) -> None:
        """Count accepted units; the oldest campaigns are forgotten past ``MAX_CAMPAIGNS`` (a campaign's
        guard matters while it runs, and a customer's state must stay bounded)."""
        self.campaign_units[campaign_id] = self.campaign_units.pop(campaign_id, 0) + units
        while len(self.campaign_units) > self.MAX_CAMPAIGNS:
            del self.campaign_units[next(iter(self.campaign_units))]

    def record_retry(self, now_ms: int) -> None:
        """Keep the retries of the last 30 days, at most the latest ``MAX_CARD_RETRIES`` of them.

        Every use asks "how many retries since T?" to compare with a cap N <= ``MAX_NETWORK_RETRY_CAP``
        (config validation). The retries since T are the latest ones, so the latest ``MAX_CARD_RETRIES``
        hold min(true count, ``MAX_CARD_RETRIES``) of them: every cap is decided as with the full list."""
        kept = [t for t in self.card_retries_ms if now_ms - t < self.RETRY_WINDOW_MS]
        kept.append(now_ms)
        if len(kept) > self.MAX_CARD_RETRIES:
            kept = sorted(kept)[-self.MAX_CARD_RETRIES :]
        self.card_retries_ms = kept

    def retries_made(self, now_ms: int, window_ms: int) -> int:
        """Retries made on the current card in the last ``window_ms``. The 24-hour caps count only these:
        which planned retries fall inside a day depends on quiet-hour shifts at the moment of asking,
        and the plan itself spaces its own retries for the daily cap."""
        return sum(1 for t in self.card_retries_ms if now_ms - t < window_ms)

    def retries_counted(self, now_ms: int, window_ms: int, except_order: str) -> int:
        """Retries on the current card that a new plan must leave room for: those made in the last
        ``window_ms`` plus those other open plans will make in the next ``window_ms``. Counting both
        sides over-counts any single window, so the network cap holds across all of a card's plans."""
        made = self.retries_made(now_ms, window_ms)
        planned = sum(
            1
            for order_id, plan in self.open_dunning.items()
            if order_id != except_order
            for step in plan.steps[plan.next_index :]
            if step.kind == "retry" and step.due_ms - now_ms <= window_ms
        )
        return made + planned

    def open_plan(self, order_id: str, plan: OpenDunning) -> list[tuple[str, OpenDunning]]:
        """Open or replace a plan; returns the oldest plans closed to keep at most ``MAX_OPEN_DUNNING``."""
        self.open_dunning.pop(order_id, None)
        self.open_dunning[order_id] = plan
        closed = []
        while len(self.open_dunning) > self.MAX_OPEN_DUNNING:
            oldest = next(iter(self.open_dunning))
            closed.append((oldest, self.open_dunning.pop(oldest)))
        return closed

    def remember_order(self, order_id: str, summary: OrderSummary) -> None:
        """Keep recent orders for retries, bounded so a hot customer's state cannot grow without limit."""
        self.orders[order_id] = summary
        while len(self.orders) > self.MAX_ORDERS:
            victim = next((o for o in self.orders if o not in self.open_dunning), None)
            if victim is None:
                break
            del self.orders[victim]

    def encode(self) -> bytes:
        """Compact JSON, byte for byte what pydantic's ``to_json`` writes, several times as fast: orjson
        walks the model's field dict and writes its parts (dataclasses) natively, fields in declaration
        order like pydantic's serializer (no custom serializer, alias or extra field anywhere). A value
        orjson refuses (none should occur) falls back to pydantic's serializer, so the bytes never depend
        on the path taken."""
        try:
            return orjson.dumps(self.__dict__)
        except orjson.JSONEncodeError:
            return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def decode(cls, raw: bytes) -> CustomerState:
        return cls.model_validate_json(raw)


class StateCache:
    """Decoded customer states this shard committed last, so the next batch need not decode them again.

    The store stays the truth: a batch still loads every customer's version and document, and a cached
    state is used only when both are exactly what this shard wrote (same version, same bytes), so a write
    by another shard, a restored or rewritten key, anything, makes it a miss and the document is decoded.
    A state is taken out of the cache while a batch works on it and put back only after that batch's
    commit succeeded, so a conflicting or failed commit leaves nothing behind that could be stale.
    Bounded to ``max_customers`` entries, least recently used first out.
    """

    def __init__(self, max_customers: int) -> None:
        self._max = max_customers
        self._entries: OrderedDict[str, tuple[int, bytes, CustomerState]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, customer_id: str, version: int, doc: bytes | None) -> CustomerState | None:
        """The cached state if it is the one stored at ``version`` as ``doc``; removed from the cache."""
        entry = self._entries.pop(customer_id, None)
        if entry is not None and doc is not None and entry[0] == version and entry[1] == doc:
            self.hits += 1
            return entry[2]
        self.misses += 1
        return None

    def put(self, customer_id: str, version: int, doc: bytes, state: CustomerState) -> None:
        """Remember ``state`` as committed at ``version`` with document ``doc`` (after the commit)."""
        if self._max <= 0:
            return
        self._entries[customer_id] = (version, doc, state)
        self._entries.move_to_end(customer_id)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


@dataclass(slots=True)
class LoadedBatch:
    records: dict[str, IdempotencyRecord]
    responses: Mapping[str, bytes]
    """event id -> stored first response (the Redis store reads them only when one is asked for)"""
    customers: dict[str, tuple[int, bytes | None]]
    """customer id -> (version, encoded state or None when new)"""
    counters: dict[str, int] = field(default_factory=dict)
    """shared counter key -> value (0 when absent): the PSP success-rate stats"""


@dataclass(slots=True)
class BatchWrite:
    """Everything one shard batch changes, committed all-or-nothing."""

    expected_versions: dict[str, int] = field(default_factory=dict)
    customers: dict[str, bytes] = field(default_factory=dict)
    """customer id -> encoded state; empty bytes: the customer was erased, its document is deleted"""
    claims: list[tuple[str, IdempotencyRecord, bytes]] = field(default_factory=list)
    """(event id, record, encoded first response)"""
    release_responses: list[str] = field(default_factory=list)
    """event ids whose stored first responses can go: their offsets are committed"""
    timer_adds: list[tuple[int, str, int]] = field(default_factory=list)
    """(partition, member, due_ms)"""
    timer_removes: list[tuple[int, str]] = field(default_factory=list)
    """(partition, member)"""
    counter_increments: dict[str, int] = field(default_factory=dict)
    """shared counter key -> increment (the PSP outcomes of the batch's new events)"""
    counter_ttl_ms: int = 0
    """how long an incremented counter lives after its last increment"""
    _armed: set[tuple[int, str]] = field(default_factory=set)
    """(partition, member) of :attr:`timer_adds`, so a cancellation finds them without a scan"""

    def add_timer(self, partition: int, member: str, due_ms: int) -> None:
        self.timer_adds.append((partition, member, due_ms))
        self._armed.add((partition, member))

    def remove_timer(self, partition: int, member: str) -> None:
        """Cancel a timer, including one armed earlier in this batch. A commit runs the removes before the
        adds, so such a timer must leave :attr:`timer_adds` here: kept there, it outlived its own
        cancellation as an orphan, invisible to an erasure (no open plan names it) until it fired stale."""
        if (partition, member) in self._armed:
            self._armed.discard((partition, member))
            self.timer_adds = [t for t in self.timer_adds if t[0] != partition or t[1] != member]
        self.timer_removes.append((partition, member))

    def drop_timer_adds(self, member_prefix: str) -> None:
        """Forget the timers armed in this batch whose member starts with ``member_prefix`` (a customer's
        erasure: its timers armed before the erasure command in the same batch)."""
        self.timer_adds = [t for t in self.timer_adds if not t[1].startswith(member_prefix)]
        self._armed = {(p, m) for p, m, _ in self.timer_adds}

    def is_empty(self) -> bool:
        return not (
            self.customers
            or self.claims
            or self.release_responses
            or self.timer_adds
            or self.timer_removes
            or self.counter_increments
        )


class StateStore(Protocol):
    round_trips: int
    """network round trips made so far (batching is a promise, so it is counted)"""

    def load(
        self, event_ids: Sequence[str], customer_ids: Sequence[str], counter_keys: Sequence[str] = ()
    ) -> LoadedBatch: ...

    def commit(self, write: BatchWrite) -> bool:
        """Apply ``write`` atomically; False (and nothing written) if a version or claim check fails."""
        ...


class InMemoryStateStore:
    """The store's semantics in a dict, expiry included, for unit tests and single-process tools."""

    def __init__(
        self,
        retention_s: float = 7 * 86400,
        response_ttl_s: float = 86400,
        clock: Clock | None = None,
    ) -> None:
        self._retention_s = retention_s
        self._response_ttl_s = response_ttl_s
        self._clock = clock or time.monotonic
        self._records: dict[str, tuple[float, IdempotencyRecord]] = {}
        self._responses: dict[str, tuple[float, bytes]] = {}
        self.customers: dict[str, tuple[int, bytes]] = {}
        self.timers: dict[int, dict[str, int]] = {}
        """partition -> member -> due_ms"""
        self.counters: dict[str, tuple[float, int]] = {}
        """key -> (expires at, value)"""
        self.round_trips = 0

    def _live(self, entry: tuple[float, object] | None) -> bool:
        return entry is not None and entry[0] > self._clock()

    def load(
        self, event_ids: Sequence[str], customer_ids: Sequence[str], counter_keys: Sequence[str] = ()
    ) -> LoadedBatch:
        self.round_trips += 1
        records = {}
        responses = {}
        for eid in event_ids:
            rec = self._records.get(eid)
            if rec is not None and self._live(rec):
                records[eid] = rec[1]
            resp = self._responses.get(eid)
            if resp is not None and self._live(resp):
                responses[eid] = resp[1]
        customers: dict[str, tuple[int, bytes | None]] = {}
        for cid in customer_ids:
            ver, doc = self.customers.get(cid, (0, None))
            customers[cid] = (ver, doc)
        now = self._clock()
        counters = {
            k: self.counters[k][1] if k in self.counters and self.counters[k][0] > now else 0
            for k in counter_keys
        }
        return LoadedBatch(records, responses, customers, counters)

    def commit(self, write: BatchWrite) -> bool:
        self.round_trips += 1
        for cid, expected in write.expected_versions.items():
            if self.customers.get(cid, (0, b""))[0] != expected:
                return False
        for eid, _, _ in write.claims:
            if self._live(self._records.get(eid)):
                return False
        now = self._clock()
        for cid, doc in write.customers.items():
            if not doc:  # erased (``clickcash forget``): the customer is gone, as if never seen
                self.customers.pop(cid, None)
                continue
            self.customers[cid] = (write.expected_versions.get(cid, 0) + 1, doc)
        for eid, record, response in write.claims:
            self._records[eid] = (now + self._retention_s, record)
            self._responses[eid] = (now + self._response_ttl_s, response)
        for eid in write.release_responses:
            self._responses.pop(eid, None)
        for partition, member in write.timer_removes:
            self.timers.get(partition, {}).pop(member, None)
        for partition, member, due_ms in write.timer_adds:
            self.timers.setdefault(partition, {})[member] = due_ms
        for key, add in write.counter_increments.items():
            expires, value = self.counters.get(key, (0.0, 0))
            self.counters[key] = (now + write.counter_ttl_ms / 1000, (value if expires > now else 0) + add)
        return True

    def due_timers(self, partition: int, now_ms: int) -> list[tuple[str, int]]:
        return sorted(
            ((m, d) for m, d in self.timers.get(partition, {}).items() if d <= now_ms), key=lambda x: x[1]
        )

    def stored_responses(self) -> int:
        return sum(1 for v in self._responses.values() if self._live(v))


class Clock(Protocol):
    def __call__(self) -> float: ...
