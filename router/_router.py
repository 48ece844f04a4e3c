"""The router: consume the input topic in batches, fan each batch out to the shards, and commit the
shards' outputs together with the consumed offsets in one Kafka transaction.

Order: each customer maps to one shard and every router talks to its shards from one thread, so a shard
sees a customer's events in offset order. Rounds (one consumed batch, at most one call per shard) complete
strictly oldest first, so outputs are produced in input order too.

Durability: outputs and offsets commit atomically (``send_offsets_to_transaction`` with the consumer's group
metadata, which also fences a zombie router after a rebalance). On any failure the open transaction aborts
and the consumer rewinds to the committed offsets; shards answer replayed offsets with the first response
they stored, so the replay produces the same outputs with the same ids.

Backpressure: at most ``max_inflight_batches_per_shard`` rounds are in flight; the router stops consuming
until the oldest completes, so memory is bounded whatever the input lag.

Latency: with no backlog waiting, a transaction commits as soon as a round's outputs are produced; the
commit interval only bounds batching under load (``clickcash.router._cadence`` decides,
docs/performance-latency.md
explains the floor).

Layout: this module is the loop and the I/O (consumer, shard pool, parking store); the transactional
producer is ``clickcash.router._transactions``; the decisions are pure functions of state and time in
``clickcash.router._cadence`` (when to commit, how long to wait), ``clickcash.router._failures`` (retry,
isolate, park, wait out
an outage) and ``clickcash.router._decisions`` (which positions and records a commit covers, where a rewind
seeks).
``clickcash.testing`` runs it in one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from clickcash.actors.contract import ShardBatch, ShardResult
from clickcash.config.settings import Settings
from clickcash.errors import ClientWedgedError, ServiceError
from clickcash.events import mask_card_numbers
from clickcash.group_offsets import call_with_retry
from clickcash.histogram import BATCH_BOUNDS_S, END_TO_END_BOUNDS_S, KAFKA_BOUNDS_S, Histogram
from clickcash.offset_retry import RetryBudget
from clickcash.router import _pause
from clickcash.router._cadence import Cadence, Decision
from clickcash.router._decisions import (
    idle_check_due,
    partitions_known_ours,
    positions_ahead,
    rewind_targets,
    round_marks,
    split_parked,
    still_uncommitted,
    waiting_records,
    without_partitions,
)
from clickcash.router._dispatch import OffsetTracker, RawRecord, split_by_shard
from clickcash.router._failures import Action, FailureKind, FailurePolicy, kafka_failure_kind
from clickcash.router._timers import TimerPump
from clickcash.router._transactions import Transactions
from clickcash.router.assignment import shard_for
from clickcash.router.erasure import ERASE, erasing_customers, split_at_erasure
from clickcash.router.parking import ParkedCustomer, ParkingStore, dropped_dead_letter

log = logging.getLogger(__name__)

REWIND_BUDGET = RetryBudget(budget_s=30.0)
"""how long a rewind keeps asking for the committed offsets while the group coordinator moves (a broker
restart): past it the run ends with a ``ServiceError`` and the supervisor starts a new one"""


class ShardFailedError(Exception):
    """A shard call failed (actor died, or raised); the round cannot be trusted."""

    shard_ids: tuple[int, ...] = ()
    """the shards the failed round was sent to (set by the router; one of them failed)"""
    last_offsets: tuple[tuple[int, int], ...] = ()
    """(partition, last offset) of the failed round's records"""
    kind: FailureKind = FailureKind.PROCESSING
    """OUTAGE when the shard reported a backing service unavailable (or was refused as stale, which the
    fence and replay resolve): the records are not to blame"""
    service: str = ""
    """the unavailable service, for an outage"""


class ShardPool(Protocol):
    """How the router reaches its shards: Ray actors in production, plain objects in tests."""

    @property
    def size(self) -> int: ...

    def fence(self) -> None:
        """Learn which instance each shard is now, and address every later batch to it.

        Called before the first batch and after every failure: a call made while a dead shard was being
        restarted then reaches the new instance addressed to the old one, and is refused rather than
        applied ahead of the replay. Returns once every shard has answered, so every call made to them
        before has finished (a shard runs one caller's calls in order). Raises ``ShardFailedError`` if a
        shard cannot answer."""
        ...

    def submit(self, shard: int, batch: ShardBatch) -> Any: ...

    def wait(self, handles: Sequence[Any], timeout_s: float) -> bool:
        """True when every handle's result is ready."""
        ...

    def results(self, handles: Sequence[Any]) -> list[ShardResult]:
        """The results, in ``handles`` order; raises ``ShardFailedError``."""
        ...


@dataclass(slots=True)
class _Round:
    handles: list[Any]
    last_offsets: dict[int, int]
    events: int
    consumed_at: float
    shards: tuple[int, ...] = ()
    timestamps_ms: list[int] = field(default_factory=list)
    """Kafka timestamps of the round's records, for the end-to-end latency observed at commit"""


@dataclass
class RouterStats:
    router_index: int
    consumed: int = 0
    produced: int = 0
    transactions: int = 0
    aborts: int = 0
    rewinds: int = 0
    inflight_rounds: int = 0
    max_inflight_rounds: int = 0
    timers_fired: int = 0
    assigned: list[int] = field(default_factory=list)
    committed: dict[int, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    last_commit_ms: float = 0.0
    produced_by_topic: dict[str, int] = field(default_factory=dict)
    inflight_by_shard: dict[int, int] = field(default_factory=dict)
    oldest_inflight_age_s: dict[int, float] = field(default_factory=dict)
    histograms: dict[str, dict[str, Any]] = field(default_factory=dict)
    """end_to_end, round, commit, transaction: :class:`Histogram` as dicts (seconds)"""
    shards: int = 0
    """the shard count customers are mapped to (changes at a rescale)"""
    failed_rounds: int = 0
    isolations: int = 0
    """times this router began isolating a failing record"""
    round_cap: int = 0
    """while isolating: records per round (0: not isolating)"""
    parked: int = 0
    """customers this router parked since it started"""
    parked_customers: int = 0
    """parked customers of the partitions this router owns (summed over routers: all parked customers)"""
    held_customers: dict[str, int] = field(default_factory=dict)
    """held customers of the owned partitions per reason: ``parked`` (a failure), ``paused`` (a campaign)"""
    outage_service: str = ""
    """the service this router is waiting for ("" when none)"""
    outage_for_s: float = 0.0


def consumer_config(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    return {
        **k.client_config(),
        "group.id": k.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 20,
        "queued.max.messages.kbytes": 16384,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300000,
    }


def producer_config(settings: Settings, router_index: int) -> dict[str, Any]:
    k = settings.kafka
    return {
        **k.client_config(),
        "transactional.id": k.router_transactional_id(router_index),
        "transaction.timeout.ms": k.transaction_timeout_ms,
        # Right after a commit the coordinator is still writing the markers, so the next transaction's
        # AddOffsetsToTxn is answered CONCURRENT_TRANSACTIONS and librdkafka waits retry.backoff.ms (default
        # 100) before asking again: measured here, that alone made every commit take ~115 ms and kept the
        # router blocked in commits most of the time. 5 ms (growing exponentially up to
        # retry.backoff.max.ms on repeated failures) brings it to ~12 ms; the Java client special-cases it
        # to 20 ms (KAFKA-5477, confluent-kafka-python#967).
        "retry.backoff.ms": 5,
        # The router sets no delivery callback: a failed delivery fails the transaction's commit, which
        # aborts and replays the round. Reports of successful deliveries were only queued, turned into
        # Python objects and dropped by every poll (~0.5 µs of the router's CPU per output record).
        "delivery.report.only.error": True,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000,
    }


class Router:
    def __init__(
        self,
        settings: Settings,
        router_index: int,
        pool: ShardPool,
        *,
        timers: TimerPump | None = None,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        transaction_grace_s: float = 30.0,
        parking: ParkingStore | None = None,
    ) -> None:
        self._s = settings
        p = settings.pipeline
        self._failures = FailurePolicy(
            p.round_max_attempts,
            p.round_retry_backoff_ms / 1000,
            p.round_retry_backoff_max_ms / 1000,
            p.outage_backoff_max_ms / 1000,
        )
        """what to do after a failed round (see ``clickcash.router._failures``)"""
        self._parking = parking
        self._erasure_mac = settings.security.erasure_mac()
        self._parked: dict[bytes, ParkedCustomer] = parking.load() if parking is not None else {}
        """parked customers (key -> where parking began), reloaded at every assignment"""
        self._parking_checked = 0.0
        self._parked_loaded = True
        self._paused: frozenset[str] = parking.paused() if parking is not None else frozenset()
        """paused campaigns, reread with the parking requests (every ``timer_poll_interval_ms``)"""
        self._uncommitted: list[RawRecord] = []
        """records consumed and not committed: the failing round when one fails"""
        self._stop = threading.Event()
        self._topic = settings.kafka.input_topic
        self._pool = pool
        self._timers = timers
        self._idle_checked = 0.0
        self._max_inflight = settings.pipeline.max_inflight_batches_per_shard
        self._commit_interval_s = settings.kafka.commit_interval_ms / 1000
        self._cadence = Cadence(
            commit_interval_s=self._commit_interval_s,
            idle_wait_s=settings.kafka.consume_timeout_ms / 1000,
            inflight_poll_s=settings.kafka.inflight_poll_ms / 1000,
            batch_max=settings.kafka.consume_batch_max,
            max_inflight=self._max_inflight,
            backlog_batch_max=max(settings.kafka.consume_backlog_batch_max, settings.kafka.consume_batch_max),
        )
        """when to commit and how long to wait (see ``clickcash.router._cadence``)"""
        self._linger_s = settings.kafka.consume_linger_ms / 1000
        self._last_consumed = 0
        """records the last consume returned: a full batch means a backlog is waiting"""
        self._revoked_while_taking: set[int] | None = None
        """partitions revoked or lost during the second consume of :meth:`_take`"""
        self._consumer = consumer_factory(consumer_config(settings))
        self._txn = Transactions(
            producer_factory(producer_config(settings, router_index)),
            name=f"router-{router_index}-txn",
            call_timeout_s=settings.kafka.transaction_call_timeout_ms / 1000,
            grace_s=transaction_grace_s,
        )
        """the transactional producer (see ``clickcash.router._transactions``)"""
        self._inflight: deque[_Round] = deque()
        self._offsets = OffsetTracker()
        self._shard_cache: dict[bytes, int] = {}
        self._assigned: set[int] = set()
        self.stats = RouterStats(router_index)
        self._lock = threading.Lock()
        self._histograms = {
            "end_to_end": Histogram.of(END_TO_END_BOUNDS_S),
            "round": Histogram.of(BATCH_BOUNDS_S),
            "commit": Histogram.of(KAFKA_BOUNDS_S),
            "transaction": Histogram.of(KAFKA_BOUNDS_S),
        }
        self._uncommitted_stamps_ms: list[int] = []
        self._closing = False
        """``_close`` has begun: a revoke then commits nothing"""
        self._pending_pool: ShardPool | None = None
        self._fenced = False
        self._delivered_since_seek: set[int] = set()
        """partitions that delivered a record since the last rewind or assignment: their consumer
        position is known to be ours (``partitions_known_ours``)"""
        self._positions_at_seek: dict[int, int] = {}
        """the consumer positions read right after the last rewind (or a first assignment), per partition:
        a position that moved away from it without a delivery moved past a transaction marker"""
        self.stats.shards = pool.size

    # --- lifecycle --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> RouterStats:
        """Process until ``stop`` is set, then drain in-flight work, commit it and leave the group."""
        self._stop = stop
        try:
            self.start()
            while not stop.is_set():
                self._step()
            try:
                self._drain()
                self._commit()
            except (ShardFailedError, KafkaException) as exc:
                # Nothing is lost: what was not committed stays uncommitted and is replayed by the next
                # router that owns these partitions (the shards answer replays with stored responses).
                log.warning(
                    "router %d: in-flight work not committed at stop (%s); it will be replayed",
                    self.stats.router_index,
                    exc,
                )
        finally:
            self._close()
        return self.snapshot()

    def start(self) -> None:
        """Initialise the producer's transactions and join the group (what :meth:`run` does first)."""
        self._txn.init()
        self._consumer.subscribe(
            [self._topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def step(self) -> None:
        """One turn of :meth:`run`'s loop: consume, dispatch, complete rounds, commit when due, and
        recover from a failed round. For driving a started router by hand (``clickcash.testing``)."""
        self._step()

    def snapshot(self) -> RouterStats:
        rounds = list(self._inflight)  # one C-level copy; the run thread may append meanwhile
        now = time.monotonic()
        inflight_by_shard: dict[int, int] = {}
        oldest_age_s: dict[int, float] = {}
        for rnd in rounds:
            for shard in rnd.shards:
                inflight_by_shard[shard] = inflight_by_shard.get(shard, 0) + 1
                oldest_age_s.setdefault(shard, now - rnd.consumed_at)
        with self._lock:
            s = self.stats
            return RouterStats(
                router_index=s.router_index,
                consumed=s.consumed,
                produced=s.produced,
                transactions=s.transactions,
                aborts=s.aborts,
                rewinds=s.rewinds,
                inflight_rounds=len(self._inflight),
                max_inflight_rounds=s.max_inflight_rounds,
                timers_fired=s.timers_fired,
                assigned=sorted(self._assigned),
                committed=dict(self._offsets.committed),
                counts=dict(s.counts),
                last_commit_ms=s.last_commit_ms,
                produced_by_topic=dict(s.produced_by_topic),
                inflight_by_shard=inflight_by_shard,
                oldest_inflight_age_s=oldest_age_s,
                histograms={name: h.to_dict() for name, h in self._histograms.items()},
                shards=s.shards,
                failed_rounds=s.failed_rounds,
                isolations=self._failures.isolations,
                round_cap=self._failures.round_cap or 0,
                parked=self._failures.parked,
                parked_customers=sum(1 for c in list(self._parked.values()) if c.partition in self._assigned),
                held_customers=_pause.held_counts(dict(self._parked), set(self._assigned)),
                outage_service=self._failures.outage_service,
                outage_for_s=self._failures.outage_for_s(now),
            )

    def request_rescale(self, pool: ShardPool) -> None:
        """Map customers to ``pool`` from the next round boundary on (thread-safe: the actor calls it from
        another thread while ``run`` loops)."""
        with self._lock:
            self._pending_pool = pool

    def _switch_pool(self) -> None:
        """Drain every round in flight and commit, then switch shards: a customer that moves to another
        shard has nothing in flight anywhere, so its order holds. A failure while draining leaves the
        request pending; the recovery rewinds and the next step switches with nothing in flight."""
        self._drain()
        self._commit()
        with self._lock:
            pool, self._pending_pool = self._pending_pool, None
            if pool is None:
                return
            self._pool = pool
            self._fenced = False
            self._shard_cache.clear()
            self.stats.shards = pool.size
        log.info("router %d: now dispatching to %d shards", self.stats.router_index, pool.size)

    def _close(self) -> None:
        # Leaving the group below revokes through ``_on_revoke``, which must not drain and commit now:
        # after an error that ended the run, the abort below throws away produced outputs, and a commit
        # of the consumer's positions would skip their records for good (``run`` has already drained and
        # committed on a normal stop).
        self._closing = True
        wedged = self._txn.wedged
        if wedged is not None:
            log.error(
                "router %d: the producer never returned from %s; leaving it behind (the next run's "
                "producer fences it and the open transaction aborts)",
                self.stats.router_index,
                wedged,
            )
        try:
            if self._txn.open:
                self._abort()
        except ServiceError as exc:
            # Closing anyway: the coordinator aborts the open transaction when it times out or when the
            # next producer with this transactional id (the restarted router) initialises.
            log.warning("router %d: could not abort on close: %s", self.stats.router_index, exc)
        try:
            self._consumer.close()
        except KafkaException as exc:
            log.warning("router %d: closing consumer: %s", self.stats.router_index, exc)
        self._txn.close()

    # --- the loop ---------------------------------------------------------------------------------

    def _step(self) -> None:
        try:
            # Fencing before a switch too: the fence call queues behind the calls of rounds a failure
            # abandoned, so once it returns none of them can still be running at a shard whose customers
            # are about to move.
            self._fence_if_needed()
            if self._failures.isolating:
                self._isolated_step()
                return
            self._serve_parking_requests()
            if self._pending_pool is not None:
                self._switch_pool()
                self._fence_if_needed()
            self._complete_ready()
            plan = self._decide()
            if plan.take:
                # A commit that is due waits for nothing: what is queued goes to the shards first, so
                # their work on it overlaps the commit's round trip.
                msgs = self._take(0.0 if plan.commit else plan.wait_s, self._cadence.round_max(plan.backlog))
                self._last_consumed = len(msgs)
                if msgs:
                    self._dispatch(msgs)
            elif not plan.commit:
                self._complete_oldest(timeout_s=plan.wait_s)
            if self._timers is not None and self._assigned:
                self._fire_timers(self._timers)
            if self._txn.open and (plan.commit or self._decide().commit):
                self._commit()
            elif not self._inflight:
                self._commit_idle_positions()
        except ShardFailedError as exc:
            log.warning(
                "router %d: shard failed (%s); rewinding",
                self.stats.router_index,
                exc,
                extra={
                    "router_id": self.stats.router_index,
                    "shard_ids": list(exc.shard_ids),
                    "partition_last_offsets": {str(p): o for p, o in exc.last_offsets},
                },
            )
            self._failed(exc.kind, exc.service, str(exc))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.fatal():
                raise ServiceError("kafka", f"fatal: {err}") from exc
            log.warning("router %d: kafka error (%s); rewinding", self.stats.router_index, exc)
            kind = kafka_failure_kind(err.name()) if isinstance(err, KafkaError) else FailureKind.PROCESSING
            self._failed(kind, "kafka", str(exc))
        except ClientWedgedError:
            raise  # the producer is unusable: the run ends and its supervisor starts a new one
        except ServiceError as exc:
            # Redis (the parking store, the timer index) or Kafka out of reach: wait for it
            log.warning("router %d: %s; rewinding", self.stats.router_index, exc)
            self._failed(FailureKind.OUTAGE, exc.service, str(exc))

    # --- failures, isolation and parking (policy in clickcash.router._failures, store in
    # clickcash.router.parking) ----

    def _failed(self, kind: FailureKind, service: str, reason: str) -> None:
        """A round failed: ask the policy, park the poison record if it is found, rewind and wait."""
        verdict = self._failures.failed(
            time.monotonic(), kind, [(r[0], r[1]) for r in self._uncommitted], service
        )
        with self._lock:
            self.stats.failed_rounds += 1
        if verdict.action is Action.PARK:
            try:
                self._park(reason)
            except ServiceError as exc:
                log.warning("router %d: could not park (%s); retrying", self.stats.router_index, exc)
                verdict = self._failures.failed(time.monotonic(), FailureKind.OUTAGE, (), exc.service)
        elif self._failures.outage_since_s is not None and kind is FailureKind.OUTAGE:
            log.warning(
                "router %d: %s unavailable for %.0f s; next attempt in %.1f s",
                self.stats.router_index,
                self._failures.outage_service,
                self._failures.outage_for_s(time.monotonic()),
                verdict.wait_s,
            )
        elif verdict.round_cap is not None:
            log.warning(
                "router %d: isolating a failing record: rounds of at most %d records",
                self.stats.router_index,
                verdict.round_cap,
            )
        self._recover(verdict.wait_s)

    def _park(self, reason: str) -> None:
        """Park the customer of the one uncommitted record: it and the customer's later records go to
        the parking store from the replay on."""
        if self._parking is None or len(self._uncommitted) != 1:
            log.error("router %d: cannot park (no parking store); retrying", self.stats.router_index)
            return
        partition, offset, key, _, _ = self._uncommitted[0]
        customer = key if key is not None else b""
        masked = mask_card_numbers(reason.encode())[0].decode(errors="replace")[:1000]
        parked = ParkedCustomer(customer, partition, offset, masked, int(time.time() * 1000))
        self._parked[customer] = self._parking.park(parked)
        self._failures.parked_one()
        log.error(
            "router %d: customer parked at partition %d offset %d: %s",
            self.stats.router_index,
            partition,
            offset,
            masked,
            extra={"customer_id": customer.decode(errors="replace"), "router_id": self.stats.router_index},
        )

    def _divert_parked(self, records: list[RawRecord]) -> list[RawRecord]:
        """Note the round's records as uncommitted; keep the parked customers' records in the parking
        store (one round trip) and return the others, which flow."""
        self._uncommitted.extend(records)
        if self._parking is None:
            return records
        if not self._parked_loaded:
            self._parked = self._parking.load()
            self._parked_loaded = True
        for hold in _pause.new_holds(records, self._parked, self._paused, int(time.time() * 1000)):
            self._parked[hold.customer] = self._parking.park(hold)
        if not self._parked:
            return records
        kept, flowing = split_parked(records, self._parked)
        if kept:
            self._parking.keep(kept)
            for customer in erasing_customers(kept, self._erasure_mac):
                self._parking.request(customer, ERASE)  # served at the next round boundary
            with self._lock:
                self.stats.counts["parked_records"] = self.stats.counts.get("parked_records", 0) + len(kept)
        return flowing

    def _committed_records(self) -> None:
        """Forget the uncommitted records a commit covered, and tell the policy how many."""
        before = len(self._uncommitted)
        if before:
            self._uncommitted = still_uncommitted(self._uncommitted, self._offsets.committed)
        self._failures.committed(before - len(self._uncommitted), idle=not self._uncommitted)

    def _isolated_step(self) -> None:
        """One round of at most ``round_cap`` records, committed before the next is consumed, so each
        round that passes is progress kept and the one that fails is the smaller suspect."""
        cap = self._failures.round_cap or 1
        msgs = self._consumer.consume(
            min(cap, self._s.kafka.consume_batch_max), self._s.kafka.consume_timeout_ms / 1000
        )
        if msgs:
            self._dispatch(msgs)
        self._drain()
        self._commit()

    def _serve_parking_requests(self) -> None:
        """Replay or drop the parked customers an operator asked for (``clickcash parked``) that this
        router owns, at a round boundary: everything consumed before is committed first, so a released
        customer's parked records come out before any of its later records.

        A replay sends the customer's parked records, with their original positions and timestamps, to
        its shard as one batch (applied atomically): the outputs are those the records would have had
        if never parked, same ids. The batch carries no committed watermarks, so the shard keeps their
        first responses until a later batch, sent only after this commit, releases them; a replay whose
        Kafka commit fails is served again at the next step, before any other batch, from those stored
        responses. The records leave the store only after the commit."""
        if self._parking is None:
            return
        now = time.monotonic()
        if now - self._parking_checked < self._s.pipeline.timer_poll_interval_ms / 1000:
            return
        self._paused = self._parking.paused()
        # a resumed campaign's held customers are released by the parking replay
        requests = {**_pause.releases(self._parked, self._paused, self._assigned), **self._parking.requests()}
        if not requests:
            self._parking_checked = now
            return
        self._parked = self._parking.load()
        self._parked_loaded = True
        mine: list[tuple[bytes, str]] = []
        for customer, action in sorted(requests.items()):
            parked = self._parked.get(customer)
            if parked is None:
                self._parking.outcome(customer, f"{action} not done: the customer is not parked")
            elif parked.partition in self._assigned:
                mine.append((customer, action))
        if mine:
            self._drain()
            self._commit()
        for customer, action in mine:
            records = self._parking.records(customer)
            if action == ERASE:
                self._erase_parked(customer, records)
                continue
            if action == "replay":
                if not self._replay_parked(customer, records):
                    continue
            elif action == "drop":
                self._drop_parked(customer, records)
            else:
                self._parking.outcome(customer, f"unknown request {action!r}: use replay or drop")
                continue
            self._parking.release(customer, records if action == "drop" else ())
            self._parked.pop(customer, None)
            self._parking.outcome(customer, f"{action}: {len(records)} records released")
            log.warning(
                "router %d: parked customer released (%s, %d records)",
                self.stats.router_index,
                action,
                len(records),
                extra={
                    "customer_id": customer.decode(errors="replace"),
                    "router_id": self.stats.router_index,
                },
            )
        self._parking_checked = time.monotonic()

    def _replay_parked(self, customer: bytes, records: list[RawRecord]) -> bool:
        """Apply and commit the customer's parked records; False (still parked, outcome stored) when
        the shard still fails them."""
        assert self._parking is not None
        key = customer or None
        batch = ShardBatch(self._topic)
        for p, o, _, value, ts in records:
            batch.partitions.append(p)
            batch.offsets.append(o)
            batch.keys.append(key)
            batch.values.append(value)
            batch.timestamps_ms.append(ts)
        results: list[ShardResult] = []
        if records:
            # after another customer's replay failed, a shard refuses the rest of the run's calls
            self._fence_if_needed()
            handle = self._pool.submit(shard_for(customer, self._pool.size) if key else 0, batch)
            while not self._pool.wait([handle], 1.0):
                if self._stop.is_set():
                    return False
            try:
                results = self._pool.results([handle])
            except ShardFailedError as exc:
                self._fenced = False
                masked = mask_card_numbers(str(exc).encode())[0].decode(errors="replace")[:1000]
                self._parking.outcome(customer, f"replay failed, still parked: {masked}")
                log.error(
                    "router %d: replay of a parked customer failed: %s", self.stats.router_index, masked
                )
                return False
        self._txn.begin()
        for res in results:
            for topic, k, value, headers in zip(res.topics, res.keys, res.values, res.headers, strict=True):
                self._txn.produce(topic, k, value, headers)
        self._commit()
        with self._lock:
            self.stats.produced += sum(len(r) for r in results)
            for res in results:
                for name, v in res.counts.items():
                    self.stats.counts[name] = self.stats.counts.get(name, 0) + v
        return True

    def _erase_parked(self, customer: bytes, records: list[RawRecord]) -> None:
        """Erase a parked customer that asked to be forgotten (see ``clickcash.router.erasure``): its held
        records before the erasure command go without a trace, the command and later records are
        replayed; the customer stays parked if the replay fails."""
        assert self._parking is not None
        split = split_at_erasure(records, self._erasure_mac)
        if split is None:
            self._parking.outcome(customer, "erase not done: no erasure command among the held records")
            return
        erased, rest = split
        if not self._replay_parked(customer, rest):
            return
        self._parking.release(customer, erased=erased)
        self._parking.forget_outcome(customer)
        self._parked.pop(customer, None)
        log.warning(
            "router %d: parked customer erased (%d held records erased, %d replayed)",
            self.stats.router_index,
            len(erased),
            len(rest),
        )  # no customer id: it was erased

    def _drop_parked(self, customer: bytes, records: list[RawRecord]) -> None:
        """One dead letter per parked record (``parked_dropped``), committed."""
        if not records:
            return
        reason = self._parked.get(customer)
        detail = "dropped by an operator while parked" + (f" ({reason.reason})" if reason else "")
        time_text = datetime.now(UTC).isoformat()
        self._txn.begin()
        for r in records:
            k, value, headers = dropped_dead_letter(self._topic, r, detail[:1000], time_text)
            self._txn.produce(self._s.kafka.dlq_topic, k, value, headers)
        self._commit()
        with self._lock:
            self.stats.produced += len(records)

    def _decide(self) -> Decision:
        inflight = len(self._inflight)
        cheap_backlog = self._cadence.backlog(self._last_consumed, inflight)
        return self._cadence.decide(
            time.monotonic(),
            txn_open=self._txn.open,
            txn_started=self._txn.started,
            inflight=inflight,
            last_consumed=self._last_consumed,
            waiting=self._waiting() if self._txn.open and not cheap_backlog else 0,
        )

    def _waiting(self) -> int:
        """Records past the consumer's positions up to the partitions' ends as last fetched: a backlog the
        local queue may not show yet. librdkafka's cached watermarks, so no broker round trip."""
        if not self._assigned:
            return 0
        tps = [TopicPartition(self._topic, p) for p in sorted(self._assigned)]
        positions: dict[int, int] = {}
        highs: dict[int, int] = {}
        for tp in self._consumer.position(tps):
            positions[tp.partition] = tp.offset
            if tp.offset >= 0:
                marks = self._consumer.get_watermark_offsets(tp, cached=True)
                if marks is not None:
                    highs[tp.partition] = marks[1]
        return waiting_records(positions, highs)

    def _take(self, wait_s: float, batch_max: int) -> list[Message]:
        """Consume the next round of at most ``batch_max`` records: wake on the first record (``consume``
        waits its whole timeout unless the batch fills), then give the round ``consume_linger_ms`` to fill.
        ``wait_s`` 0: only what is queued already.

        A rebalance can run inside the second call; records of the first call from partitions it revoked
        are dropped (another router, or this one after reassignment, reads them again from the committed
        offset)."""
        if wait_s <= 0:
            return self._consumer.consume(batch_max, 0)
        first = self._consumer.consume(1, wait_s)
        if not first or batch_max == 1:
            return first
        revoked: set[int] = set()
        self._revoked_while_taking = revoked
        try:
            rest = self._consumer.consume(batch_max - len(first), self._linger_s)
        finally:
            self._revoked_while_taking = None
        if revoked:
            first = [m for m in first if m.partition() not in revoked]
        return first + rest

    def _fence_if_needed(self) -> None:
        if not self._fenced:
            self._pool.fence()
            self._fenced = True

    def _dispatch(self, msgs: list[Message]) -> None:
        records: list[RawRecord] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("router %d: consume error %s", self.stats.router_index, err)
                continue
            records.append(
                (cast(int, m.partition()), cast(int, m.offset()), m.key(), m.value(), m.timestamp()[1])
            )
        if not records:
            return
        self._delivered_since_seek.update(r[0] for r in records)
        flowing = self._divert_parked(records)
        by_shard = split_by_shard(self._topic, flowing, self._pool.size, self._shard_cache)
        committed = dict(self._offsets.committed)
        handles = []
        for idx in sorted(by_shard):
            batch = by_shard[idx]
            batch.committed = committed
            handles.append(self._pool.submit(idx, batch))
        last, stamps_ms = round_marks(records)
        self._inflight.append(
            _Round(handles, last, len(records), time.monotonic(), tuple(sorted(by_shard)), stamps_ms)
        )
        with self._lock:
            self.stats.consumed += len(records)
            self.stats.max_inflight_rounds = max(self.stats.max_inflight_rounds, len(self._inflight))

    def _complete_ready(self) -> None:
        while self._inflight and self._pool.wait(self._inflight[0].handles, 0.0):
            self._finish(self._inflight.popleft())

    def _complete_oldest(self, timeout_s: float) -> None:
        if self._inflight and self._pool.wait(self._inflight[0].handles, timeout_s):
            self._finish(self._inflight.popleft())

    def _drain(self) -> None:
        while self._inflight:
            rnd = self._inflight[0]
            while not self._pool.wait(rnd.handles, 1.0):
                pass
            self._finish(self._inflight.popleft())

    def _finish(self, rnd: _Round) -> None:
        try:
            results = self._pool.results(rnd.handles)
        except ShardFailedError as exc:
            exc.shard_ids, exc.last_offsets = rnd.shards, tuple(sorted(rnd.last_offsets.items()))
            raise
        self._txn.begin()
        produced = 0
        for res in results:
            self._txn.produce_all(res.topics, res.keys, res.values, res.headers)
            produced += len(res)
        self._txn.poll()
        partitions = list(rnd.last_offsets)
        self._offsets.produced(partitions, [rnd.last_offsets[p] for p in partitions])
        self._uncommitted_stamps_ms.extend(rnd.timestamps_ms)
        with self._lock:
            self.stats.produced += produced
            self._histograms["round"].observe(time.monotonic() - rnd.consumed_at)
            by_topic = self.stats.produced_by_topic
            for res in results:
                for k, v in res.counts.items():
                    self.stats.counts[k] = self.stats.counts.get(k, 0) + v
                for topic, n in Counter(res.topics).items():
                    by_topic[topic] = by_topic.get(topic, 0) + n

    def _fire_timers(self, pump: TimerPump) -> None:
        due = pump.poll(sorted(self._assigned))
        if due and self._parked:
            # a parked customer's timers wait for its release: their commands would only be parked
            due = [t for t in due if t.customer.encode() not in self._parked]
        if not due:
            return
        self._txn.begin()
        for timer in due:
            key, value = timer.command()
            self._txn.produce(self._topic, key, value, None)
        with self._lock:
            self.stats.timers_fired += len(due)

    # --- transactions -----------------------------------------------------------------------------

    def _positions_ahead(self) -> dict[int, int]:
        """Consumer positions past what is tracked, when nothing is in flight.

        A partition's log can end in a transaction marker (the routers write timer commands
        transactionally); the position moves past it, the last processed offset never does. With no
        round in flight everything consumed is already produced, so the position is safe to commit.
        """
        if self._inflight or not self._assigned:
            return {}
        tracked = {**self._offsets.committed, **self._offsets.pending()}
        tps = [TopicPartition(self._topic, p) for p in sorted(self._assigned)]
        positions = {tp.partition: tp.offset for tp in self._consumer.position(tps)}
        owned = partitions_known_ours(
            self._assigned, self._delivered_since_seek, positions, self._positions_at_seek
        )
        return positions_ahead({p: positions[p] for p in owned if p in positions}, tracked)

    def _commit_idle_positions(self) -> None:
        if not idle_check_due(time.monotonic(), self._idle_checked, self._commit_interval_s, self._txn.open):
            return
        self._idle_checked = time.monotonic()
        ahead = self._positions_ahead()
        if ahead:
            self._txn.begin()
            self._commit()

    def _commit(self) -> None:
        if not self._txn.open:
            return
        started = time.monotonic()
        for p, pos in self._positions_ahead().items():
            self._offsets.produced([p], [pos - 1])
        pending = self._offsets.pending()
        offsets = [TopicPartition(self._topic, p, o) for p, o in sorted(pending.items())]
        self._txn.commit(offsets, self._consumer.consumer_group_metadata() if offsets else None)
        self._offsets.mark_committed()
        self._committed_records()
        done = time.monotonic()
        with self._lock:
            self.stats.transactions += 1
            self.stats.last_commit_ms = (done - started) * 1000
            self._histograms["commit"].observe(done - started)
            self._histograms["transaction"].observe(done - self._txn.started)
            self._histograms["end_to_end"].observe_ages(time.time() * 1000, self._uncommitted_stamps_ms)
        self._uncommitted_stamps_ms.clear()

    def _abort(self) -> None:
        """Abort the open transaction (see ``clickcash.router._transactions``) and forget what it was to
        commit."""
        if self._txn.abort(f"router {self.stats.router_index}"):
            with self._lock:
                self.stats.aborts += 1
        self._offsets.discard()
        self._uncommitted_stamps_ms.clear()

    def _recover(self, wait_s: float = 0.2) -> None:
        """Abort, forget in-flight rounds and rewind every owned partition to its committed offset; the
        replay starts after ``wait_s`` (or at once when the router is being stopped)."""
        if self._txn.open:
            self._abort()
        self._offsets.discard()
        self._inflight.clear()
        self._uncommitted.clear()
        self._fenced = False
        self._rewind()
        self._stop.wait(wait_s)

    def _rewind(self) -> None:
        self._delivered_since_seek.clear()
        if not self._assigned:
            return
        tps = [TopicPartition(self._topic, p) for p in sorted(self._assigned)]
        committed = call_with_retry(
            lambda timeout_s: self._consumer.committed(tps, timeout=timeout_s),
            operation="read the committed offsets to rewind",
            group_id=self._s.kafka.group_id,
            bootstrap=self._s.kafka.bootstrap_servers,
            budget=REWIND_BUDGET,
        )
        targets = rewind_targets(((tp.partition, tp.offset) for tp in committed), OFFSET_BEGINNING)
        for partition, offset in sorted(targets.items()):
            self._consumer.seek(TopicPartition(self._topic, partition, offset))
        self._note_positions_at_seek(tps)
        with self._lock:
            self.stats.rewinds += 1

    def _note_positions_at_seek(self, tps: list[TopicPartition]) -> None:
        for tp in self._consumer.position(tps):
            self._positions_at_seek[tp.partition] = tp.offset

    def _note_assigned_positions(self, partitions: list[TopicPartition]) -> None:
        """A partition new to this consumer reports no position (negative) until its first fetch from the
        committed offset, so any position it reports later is the consumer's own; one it owned before may
        report the old position, which is not (only a delivery makes that one ours)."""
        tps = [TopicPartition(self._topic, tp.partition) for tp in partitions]
        try:
            reported = self._consumer.position(tps)
        except KafkaException:
            reported = [TopicPartition(self._topic, tp.partition, 0) for tp in partitions]
        for tp in reported:
            if tp.offset < 0:
                self._positions_at_seek[tp.partition] = tp.offset
            else:
                self._positions_at_seek.pop(tp.partition, None)

    # --- rebalance callbacks (run inside consume()) ----------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._delivered_since_seek.difference_update(tp.partition for tp in partitions)
        self._note_assigned_positions(partitions)
        self._assigned.update(tp.partition for tp in partitions)
        log.info("router %d: assigned %s", self.stats.router_index, sorted(self._assigned))
        # another router may have parked customers of these partitions: reloaded before the next
        # dispatch (not here: a Redis error inside the consumer's callback would lose the assignment)
        self._parked_loaded = False

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish and commit everything consumed so far before the partitions go to another router (not
        while closing: what was not committed then is replayed by the next owner)."""
        try:
            if self._closing:
                self._inflight.clear()
            else:
                self._drain()
                self._commit()
        except (KafkaException, ShardFailedError, ServiceError) as exc:
            log.warning("router %d: could not commit before revoke: %s", self.stats.router_index, exc)
            if self._txn.open:
                self._abort()
            self._inflight.clear()
        revoked = [tp.partition for tp in partitions]
        if self._revoked_while_taking is not None:
            self._revoked_while_taking.update(revoked)
        self._uncommitted = without_partitions(self._uncommitted, revoked)
        self._offsets.forget(revoked)
        self._assigned.difference_update(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions were taken away without a chance to commit: drop our uncommitted work."""
        if self._txn.open:
            self._abort()
        self._inflight.clear()
        lost = [tp.partition for tp in partitions]
        if self._revoked_while_taking is not None:
            self._revoked_while_taking.update(lost)
        self._uncommitted = without_partitions(self._uncommitted, lost)
        self._offsets.forget(lost)
        self._assigned.difference_update(lost)
