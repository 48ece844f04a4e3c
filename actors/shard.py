"""The shard: applies one batch of a shard's customers' events, in order, exactly once per event id.

A plain class (no Ray): the Ray actor in ``clickcash.actors.actor`` is a thin shell over it, and tests build
it
directly with an in-memory store. Each ``apply`` makes one load round trip and one atomic commit to the
state store, however many events the batch holds.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from clickcash.actors import _first_response as first_response
from clickcash.actors._apply import SYNTHETIC_COUNT_PREFIX, Apply, EventApplier
from clickcash.actors._decode import InputEvent, decode_record, synthetic_value
from clickcash.actors.contract import Headers, OutputTopics, ShardBatch, ShardResult
from clickcash.actors.engines.psp_stats import PspStatsBook, segment_of
from clickcash.actors.erasure import ERASED_DOCUMENT, erased_output
from clickcash.actors.erasure import timer_removals as erasure_timer_removals
from clickcash.actors.keyspace import TIMER_SEP, timer_member
from clickcash.actors.state.base import (
    BatchWrite,
    CustomerState,
    IdempotencyRecord,
    LoadedBatch,
    StateCache,
    StateStore,
)
from clickcash.config.domain import DomainConfig
from clickcash.envelope import DEAD_LETTER_TYPE, binary_headers
from clickcash.erasure_mac import LOCAL_STACK_ERASURE_MAC, ErasureMac
from clickcash.errors import StateConflictError
from clickcash.events import (
    ERASED_EVENT_TYPE,
    ERASURE_EVENT_TYPE,
    OUTPUT_SOURCE,
    SYNTHETIC_HEADER,
    SYNTHETIC_HEADER_VALUE,
    TIMER_EVENT_TYPE,
    CustomerErasureRequested,
    DeadLetter,
    DeadLetterCode,
    DunningTimerFired,
    OrderPlaced,
    TruncatedOriginal,
    mask_card_numbers,
    output_id,
)
from clickcash.logs import RateLimitedLog
from clickcash.timer_mac import LOCAL_STACK_TIMER_MAC, TimerMac

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 5
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
RECORD_FRAMING_RESERVE_BYTES = 1_024
"""kept free below ``kafka.max_message_bytes`` for the record's and its batch's framing (varints, batch
header): a dead letter's key, value and headers together stay under the limit by this much"""
MAX_REASON_TEXT_CHARS = 1_000
"""a dead letter's ``field`` and ``detail`` are cut to this (a field name can quote a huge JSON key)"""
_COMMAND_TYPES = {
    TIMER_EVENT_TYPE: "timer command without a valid MAC of a router (security.timer_command_keys)",
    ERASURE_EVENT_TYPE: "erasure command without a valid MAC of clickcash forget "
    "(security.erasure_command_keys)",
}
"""input types acted on only with a valid MAC, and the detail of the dead letter of one without"""
MAX_DEAD_LETTER_KEY_BYTES = 1_024
"""a longer key (not a customer id: those are at most 255 characters) is replaced by its digest"""


GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two young-generation collections in a shard process (CPython's default: 700)."""


def tune_collector() -> None:
    """Collect less often in a shard process: a batch allocates hundreds of thousands of short-lived
    objects, nearly all freed by reference counting, so the default young threshold ran a collection every
    few events that found almost nothing, and each one promoted survivors (cached customer states) that
    older collections then traversed again. Cycles are still collected, in bigger, rarer steps.
    Long-lived objects present now (Ray, pydantic schemas, the config) are frozen out of every collection.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _now() -> datetime:
    return datetime.now(UTC)


class Shard:
    def __init__(
        self,
        shard_id: int,
        topics: OutputTopics,
        domain: DomainConfig,
        store: StateStore,
        *,
        max_event_bytes: int = 64 * 1024,
        clock: Callable[[], datetime] = _now,
        psp_stats_refresh_ms: int = 1_000,
        state_cache_customers: int = 10_000,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        timer_mac: TimerMac = LOCAL_STACK_TIMER_MAC,
        erasure_mac: ErasureMac = LOCAL_STACK_ERASURE_MAC,
    ) -> None:
        self.shard_id = shard_id
        self.incarnation = uuid.uuid4().hex
        """this instance, in its stats: a restarted shard is a new incarnation (the calls a router sent the
        instance before are refused by the actor's call gate, ``clickcash.actors.calls``)"""
        self._topics = topics
        self._domain = domain
        self._store = store
        self._max_event_bytes = max_event_bytes
        self._dead_letter_bytes = max_message_bytes - RECORD_FRAMING_RESERVE_BYTES
        self._timer_mac = timer_mac
        self._erasure_mac = erasure_mac
        self._clock = clock
        self._psp_stats = PspStatsBook(domain.routing, list(domain.psps), refresh_ms=psp_stats_refresh_ms)
        self._applier = EventApplier(topics, domain, clock, self._psp_stats)
        self.state_cache = StateCache(state_cache_customers)
        self._awaiting_commit: dict[int, list[tuple[int, str]]] = {}
        """partition -> [(offset, event id)] whose first responses are stored until their offset commits"""
        self.totals: dict[str, int] = {}
        self.batches = 0
        self.dead_letter_log = RateLimitedLog(log, "dead-letter")

    # --- the batch path ---------------------------------------------------------------------------

    def apply(self, batch: ShardBatch) -> ShardResult:
        decoded = [
            decode_record(batch.topic, p, o, k, v, self._max_event_bytes)
            for p, o, k, v in zip(batch.partitions, batch.offsets, batch.keys, batch.values, strict=True)
        ]
        for i, d in enumerate(decoded):
            if isinstance(d, InputEvent) and d.type in _COMMAND_TYPES and not self._authentic(d):
                decoded[i] = DeadLetter(
                    code=DeadLetterCode.FORGED_COMMAND,
                    field="data.mac",
                    detail=_COMMAND_TYPES[d.type],
                    source_topic=batch.topic,
                    partition=batch.partitions[i],
                    offset=batch.offsets[i],
                )
        release = self._releasable(batch.committed)
        event_ids = list(dict.fromkeys(d.id for d in decoded if isinstance(d, InputEvent)))
        customer_ids = list(dict.fromkeys(d.customer_id for d in decoded if isinstance(d, InputEvent)))
        segments = {
            segment_of(d.data.payment_method.network, d.data.currency, d.data.country)
            for d in decoded
            if isinstance(d, InputEvent) and isinstance(d.data, OrderPlaced)
        }
        self.batches += 1
        stamps = [t for t in batch.timestamps_ms if t > 0]
        for _ in range(MAX_COMMIT_ATTEMPTS):
            # the PSP stats are kept on the events' time base, like every decision (see Apply.now_ms)
            now_ms = max(stamps) if stamps else int(self._clock().timestamp() * 1000)
            counter_keys = self._psp_stats.keys_to_load(segments, now_ms)
            loaded = self._store.load(event_ids, customer_ids, counter_keys)
            self._psp_stats.absorb(loaded.counters, now_ms)
            states: dict[str, CustomerState] = {}
            result, write = self._evaluate(batch, decoded, loaded, states)
            write.release_responses = [eid for _, eid in release]
            write.counter_ttl_ms = self._psp_stats.counter_ttl_ms
            if self._store.commit(write):
                self._psp_stats.committed(write.counter_increments, now_ms)
                for cid, state in states.items():
                    if write.customers[cid] == ERASED_DOCUMENT:
                        continue
                    self.state_cache.put(cid, write.expected_versions[cid] + 1, write.customers[cid], state)
                break
            log.warning("shard %d: state changed under a batch, reloading", self.shard_id)
        else:
            raise StateConflictError(
                f"shard {self.shard_id}: batch kept conflicting after {MAX_COMMIT_ATTEMPTS} attempts"
            )
        self._forget_released(batch.committed)
        for eid, rec, _ in write.claims:
            self._awaiting_commit.setdefault(rec.partition, []).append((rec.offset, eid))
        for k, v in result.counts.items():
            self.totals[k] = self.totals.get(k, 0) + v
        return result

    def _authentic(self, ev: InputEvent) -> bool:
        """Whether a command carries a MAC of the configured keys (``clickcash.timer_mac`` for timer
        commands, ``clickcash.erasure_mac`` for erasure commands)."""
        data = ev.data
        if isinstance(data, CustomerErasureRequested):
            return self._erasure_mac.verify(data.mac, event_id=ev.id, customer_id=data.customer_id)
        assert isinstance(data, DunningTimerFired)
        return self._timer_mac.verify(
            data.mac,
            event_id=ev.id,
            customer_id=data.customer_id,
            order_id=data.order_id,
            plan_id=data.plan_id,
            step_index=data.step_index,
            due_ms=data.due_ms,
        )

    @property
    def store_round_trips(self) -> int:
        return self._store.round_trips

    def stored_responses(self) -> int:
        return sum(len(v) for v in self._awaiting_commit.values())

    def _releasable(self, committed: dict[int, int]) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for p, upto in committed.items():
            out.extend(e for e in self._awaiting_commit.get(p, ()) if e[0] < upto)
        return out

    def _forget_released(self, committed: dict[int, int]) -> None:
        for p, upto in committed.items():
            pending = self._awaiting_commit.get(p)
            if pending:
                self._awaiting_commit[p] = [e for e in pending if e[0] >= upto]

    def _evaluate(
        self,
        batch: ShardBatch,
        decoded: list[InputEvent | DeadLetter],
        loaded: LoadedBatch,
        states: dict[str, CustomerState],
    ) -> tuple[ShardResult, BatchWrite]:
        """Apply the batch to the loaded state; fills ``states`` with the customers it changed."""
        result = ShardResult()
        write = BatchWrite()
        seen: dict[str, IdempotencyRecord] = {}
        erased: set[str] = set()
        """customers the batch erased and has not seen again: their documents are deleted"""
        for i, item in enumerate(decoded):
            partition, offset, key = batch.partitions[i], batch.offsets[i], batch.keys[i]
            result.count("in:invalid" if isinstance(item, DeadLetter) else f"in:{item.type}")
            if isinstance(item, InputEvent) and item.synthetic:
                result.count(f"{SYNTHETIC_COUNT_PREFIX}in:{item.type}")
            if isinstance(item, DeadLetter):
                self._dead_letter(
                    result, item, key, batch.values[i], None, synthetic=synthetic_value(batch.values[i])
                )
                continue
            ev = item
            prior = seen.get(ev.id) or loaded.records.get(ev.id)
            if prior is not None:
                if ev.id not in seen and (prior.partition, prior.offset) == (partition, offset):
                    stored = loaded.responses.get(ev.id)
                    if isinstance(ev.data, CustomerErasureRequested):
                        self._erased_output(result, ev, key, batch.timestamps_ms, i)  # stores no response
                        result.count("replayed")
                    elif stored is None:
                        result.count("replay_without_response")
                    else:
                        self._replay(result, key, stored)
                        result.count("replayed")
                elif prior.fingerprint == ev.fingerprint:
                    result.count("duplicate")
                else:
                    dl = DeadLetter(
                        code="duplicate_conflict",
                        field="id",
                        detail=f"event id already processed with a different payload "
                        f"(first at partition {prior.partition} offset {prior.offset})",
                        source_topic=batch.topic,
                        partition=partition,
                        offset=offset,
                    )
                    self._dead_letter(
                        result, dl, key, batch.values[i], ev.id, ev.correlationid, synthetic=ev.synthetic
                    )
                continue
            if isinstance(ev.data, CustomerErasureRequested):
                self._erase(ev, loaded, states, write, erased)
                self._erased_output(result, ev, key, batch.timestamps_ms, i)
                record = IdempotencyRecord(ev.fingerprint, partition, offset)
                write.claims.append((ev.id, record, ERASED_DOCUMENT))
                seen[ev.id] = record
                result.count("processed")
                continue
            if isinstance(ev.data, DunningTimerFired) and (
                ev.customer_id in erased
                or (ev.customer_id not in states and loaded.customers[ev.customer_id][1] is None)
            ):
                # a customer without state has no open plan: a timer fired before its erasure, applied
                # after it, removes its member and writes no state (which would re-create the customer)
                data = ev.data
                write.remove_timer(
                    partition, timer_member(ev.customer_id, data.order_id, data.plan_id, data.step_index)
                )
                result.count("timer_stale")
                record = IdempotencyRecord(ev.fingerprint, partition, offset)
                write.claims.append((ev.id, record, first_response.FORMAT))  # no outputs
                seen[ev.id] = record
                result.count("processed")
                continue
            erased.discard(ev.customer_id)
            state = states.get(ev.customer_id)
            if state is None:
                version, doc = loaded.customers[ev.customer_id]
                state = self.state_cache.take(ev.customer_id, version, doc)
                if state is None:
                    state = CustomerState.decode(doc) if doc is not None else CustomerState()
                states[ev.customer_id] = state
                write.expected_versions[ev.customer_id] = version
            start = len(result.values)
            stamp_ms = batch.timestamps_ms[i] if i < len(batch.timestamps_ms) else 0
            self._applier.apply(Apply(ev, state, result, write, key, partition, now_ms=stamp_ms))
            # a synthetic output is marked, so a replay restores its ``ce_synthetic`` header
            end = len(result.values)  # ``len(result)``, without a Python call per event
            response = first_response.encode(result.topics, result.values, result.headers, start, end)
            record = IdempotencyRecord(ev.fingerprint, partition, offset)
            write.claims.append((ev.id, record, response))
            seen[ev.id] = record
            result.count("processed")
        write.customers = {cid: ERASED_DOCUMENT if cid in erased else s.encode() for cid, s in states.items()}
        return result, write

    # --- erasure (``clickcash forget``; see ``clickcash.actors.erasure``) -------------------------------

    def _erase(
        self,
        ev: InputEvent,
        loaded: LoadedBatch,
        states: dict[str, CustomerState],
        write: BatchWrite,
        erased: set[str],
    ) -> None:
        """Forget the customer's state and remove its timers; its later events start from a fresh state."""
        cid = ev.customer_id
        state = states.get(cid)
        if state is None:
            version, doc = loaded.customers[cid]
            write.expected_versions[cid] = version
            state = self.state_cache.take(cid, version, doc)
            if state is None and doc is not None:
                try:
                    state = CustomerState.decode(doc)
                except ValueError:  # unreadable (the reason it was parked, perhaps): erased all the same
                    log.warning("shard %d: erased a customer whose state could not be read", self.shard_id)
        if state is not None:
            for partition, member in erasure_timer_removals(state, cid):
                write.remove_timer(partition, member)
        # timers armed earlier in this batch: removes run before adds in the commit, so drop the adds
        write.drop_timer_adds(cid + TIMER_SEP)
        states[cid] = CustomerState()
        erased.add(cid)

    def _erased_output(
        self, result: ShardResult, ev: InputEvent, key: bytes | None, stamps_ms: list[int], i: int
    ) -> None:
        """The ``customer.erased`` output: a pure function of the command, decided at its record's time."""
        stamp_ms = stamps_ms[i] if i < len(stamps_ms) and stamps_ms[i] > 0 else 0
        when = datetime.fromtimestamp(stamp_ms / 1000, UTC) if stamp_ms else self._clock()
        value = erased_output(ev.id, ev.customer_id, when.isoformat(), synthetic=ev.synthetic)
        headers = [(SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE)] if ev.synthetic else None
        result.add(self._topics.orders, key, value, headers)
        result.count(ERASED_EVENT_TYPE)

    def _replay(self, result: ShardResult, key: bytes | None, stored: bytes) -> None:
        for topic, value, synthetic in first_response.decode(stored):
            result.add(topic, key, value, [(SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE)] if synthetic else None)

    # --- outputs ----------------------------------------------------------------------------------

    def _dead_letter(
        self,
        result: ShardResult,
        dl: DeadLetter,
        key: bytes | None,
        value: bytes | None,
        event_id: str | None,
        correlation_id: str | None = None,
        *,
        synthetic: bool = False,
    ) -> None:
        """Write the original bytes (card numbers masked) with the reason in CloudEvents binary mode.

        A dead letter always fits in one record of ``kafka.max_message_bytes``: when the original with the
        headers would not, the record carries a prefix of it and the reason its length and SHA-256
        (``truncated``). A record that could not be written would fail the transaction, and the replay
        would fail it again: the stream would stop on one bad record.
        """
        original = value or b""
        body, redacted = mask_card_numbers(original)
        update: dict[str, object] = {}
        if redacted:
            update["redacted"] = True
        if dl.field is not None and len(dl.field) > MAX_REASON_TEXT_CHARS:
            update["field"] = dl.field[:MAX_REASON_TEXT_CHARS] + "..."
        if len(dl.detail) > MAX_REASON_TEXT_CHARS:
            update["detail"] = dl.detail[:MAX_REASON_TEXT_CHARS] + "..."
        if key is not None:
            key, key_redacted = mask_card_numbers(key)
            if key_redacted:
                update["redacted"] = True
            if len(key) > MAX_DEAD_LETTER_KEY_BYTES:
                key_digest = hashlib.sha256(key).hexdigest()
                update["key_sha256"] = key_digest
                key = f"sha256:{key_digest}".encode()
        if update:
            dl = dl.model_copy(update=update)
        headers: Headers = [
            *binary_headers(
                id=output_id(f"{dl.source_topic}:{dl.partition}:{dl.offset}", "dead-letter"),
                source=OUTPUT_SOURCE,
                type=DEAD_LETTER_TYPE,
                time=self._clock().isoformat(),
            ),
            ("clickcash_source_topic", dl.source_topic.encode()),
            ("clickcash_source_partition", str(dl.partition).encode()),
            ("clickcash_source_offset", str(dl.offset).encode()),
        ]
        if key is not None:
            headers.append(("ce_partitionkey", key))
        if event_id is not None:
            headers.append(("ce_causationid", mask_card_numbers(event_id.encode())[0]))
        if synthetic:
            headers.append((SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE))
        fixed = len(key or b"") + sum(len(k) + len(v) for k, v in headers) + len("clickcash_reason")
        reason = mask_card_numbers(dl.model_dump_json().encode())[0]
        if fixed + len(reason) + len(body) > self._dead_letter_bytes:
            # of the masked bytes when card data was masked: no digest of card data leaves either
            digest = hashlib.sha256(body if redacted else original).hexdigest()

            def truncated_reason(prefix_bytes: int) -> tuple[DeadLetter, bytes]:
                note = TruncatedOriginal(
                    original_bytes=len(original), original_sha256=digest, prefix_bytes=prefix_bytes
                )
                out = dl.model_copy(update={"truncated": note})
                return out, mask_card_numbers(out.model_dump_json().encode())[0]

            # sized with the longest prefix length the note can hold: the final note is never longer
            _, probe = truncated_reason(len(body))
            body = body[: max(0, self._dead_letter_bytes - fixed - len(probe))]
            dl, reason = truncated_reason(len(body))
        headers.insert(5, ("clickcash_reason", reason))

        result.add(self._topics.dlq, key, body, headers)
        result.count(f"dead_letter.{dl.code}")
        if synthetic:
            result.count(f"{SYNTHETIC_COUNT_PREFIX}clickcash.dead_letter")
        ids = {"event_id": event_id, "correlation_id": correlation_id, "field": dl.field}
        self.dead_letter_log.warning(
            "dead letter: %s",
            dl.code.value,
            shard_id=self.shard_id,
            dead_letter_code=dl.code.value,
            source_topic=dl.source_topic,
            source_partition=dl.partition,
            source_offset=dl.offset,
            more_fields=lambda: {
                k: mask_card_numbers(v.encode())[0].decode() for k, v in ids.items() if v is not None
            },
        )  # ids only, never payload bytes; masked in case an id or field name holds a card number
