"""The verifier: do the output topics hold exactly what the input topic should have produced?

It reads the input topic from the beginning, computes the expected outputs by replaying every partition, in
offset order, through the same pure decision logic in one process with an in-memory state store (no Ray,
no Redis, no transactions, no crashes: the reference the distributed run must equal), then reads the output
topics ``read_committed`` and compares, per output topic and customer, the sequence of output ids. That one
comparison catches loss (an expected id missing), duplicates (an id twice), strays (an id not expected) and
reordering (the same ids in another order). It runs as ``clickcash verify`` against a live deployment.

Parked customers (``clickcash.router.parking``): their records from the park position on are not processed
until
an operator releases them, so the reference leaves out exactly the records the parking store holds, and
checks that every committed record of a parked customer from its park position on is held there (one
that is neither processed nor kept is lost). A dropped record is expected as a ``parked_dropped`` dead
letter instead of its outputs; a replayed one is expected as if it had never been parked; one erased with
its customer (``clickcash forget`` of a parked customer) is expected to have no output at all.

Erased customers need nothing more: the reference applies the erasure command with the same shard code
and the same keys, so it expects the ``customer.erased`` output, a fresh state after it, and a
``forged_command`` dead letter for a forged one.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from confluent_kafka import Consumer, TopicPartition

from clickcash.actors.contract import OutputTopics, ShardBatch
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import InMemoryStateStore
from clickcash.cluster.offsets import group_positions
from clickcash.cluster.outputs import OutputReader
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import Settings
from clickcash.events import TIMER_SOURCE, output_id
from clickcash.router.parking import ParkedCustomer, ParkingStore, RedisParkingStore

Stream = tuple[str, bytes | None]
"""(output topic, Kafka key)"""

_TIMER_MARK = TIMER_SOURCE.encode()


@dataclass
class VerifyReport:
    inputs: int
    timer_commands: int
    """of ``inputs``, the dunning timer commands the routers wrote to the input topic"""
    expected: int
    actual: int
    missing: int
    duplicates: int
    unexpected: int
    out_of_order_streams: int
    dead_letters_expected: int
    dead_letters_actual: int
    examples: list[str] = field(default_factory=list)
    parked_customers: int = 0
    parked_records: int = 0
    """input records held in the parking store (left out of the expected outputs)"""
    parked_unkept: int = 0
    """committed records of parked customers, from the park position on, missing from the store: lost"""
    erased_records: int = 0
    """held records erased with their customer (``clickcash forget`` of a parked customer): no output"""

    @property
    def ok(self) -> bool:
        return (
            self.missing == 0
            and self.duplicates == 0
            and self.unexpected == 0
            and self.out_of_order_streams == 0
            and self.dead_letters_expected == self.dead_letters_actual
            and self.parked_unkept == 0
        )

    def render(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        text = (
            f"verify {verdict}: inputs={self.inputs} (timer commands {self.timer_commands}) "
            f"expected outputs={self.expected} actual={self.actual} "
            f"missing={self.missing} duplicates={self.duplicates} unexpected={self.unexpected} "
            f"out-of-order streams={self.out_of_order_streams} "
            f"dead letters expected={self.dead_letters_expected} actual={self.dead_letters_actual} "
            f"parked customers={self.parked_customers} records={self.parked_records} "
            f"unkept={self.parked_unkept} erased={self.erased_records}"
        )
        if self.examples:
            text += "\n  " + "\n  ".join(self.examples[:10])
        return text


InputRecord = tuple[int, bytes | None, bytes | None, int]
"""(offset, key, value, timestamp ms) of one input record"""


def read_input(
    settings: Settings, timeout_s: float = 120, upto: dict[int, int] | None = None
) -> dict[int, list[InputRecord]]:
    """Committed records of the input topic: partition -> [(offset, key, value, timestamp ms)] in offset
    order, up to ``upto`` (exclusive, per partition) or to the end.

    Read committed, as the routers read it: timer commands from aborted transactions are not input.
    """
    topic = settings.kafka.input_topic
    c = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"clickcash-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in parts}
        if upto is not None:
            ends = {p: min(end, upto.get(p, 0)) for p, end in ends.items()}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out: dict[int, list[InputRecord]] = {p: [] for p in parts}
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for m in c.consume(5000, 0.5):
                if m.error() is not None:
                    continue
                p, o = m.partition() or 0, m.offset() or 0
                if o < ends[p]:
                    out[p].append((o, m.key(), m.value(), m.timestamp()[1]))
            # positions, not last offsets: the log may end in transaction markers (timer commands)
            for tp in c.position([TopicPartition(topic, p) for p in remaining]):
                if tp.offset >= ends[tp.partition]:
                    remaining.discard(tp.partition)
        if remaining:
            raise TimeoutError(f"could not read input partitions {sorted(remaining)} to their end")
        return out
    finally:
        c.close()


@dataclass
class ParkedView:
    """What the parking store says about the input: positions held, positions dropped."""

    customers: dict[bytes, ParkedCustomer] = field(default_factory=dict)
    held: set[tuple[int, int]] = field(default_factory=set)
    dropped: set[tuple[int, int]] = field(default_factory=set)
    erased: set[tuple[int, int]] = field(default_factory=set)
    """held records erased with their customer (``clickcash forget``): no output at all"""

    @classmethod
    def load(cls, store: ParkingStore) -> ParkedView:
        customers = store.load()
        held = {(r[0], r[1]) for c in customers for r in store.records(c)}
        return cls(customers, held, store.dropped(), store.erased())

    def unkept(self, inputs: dict[int, list[InputRecord]]) -> list[tuple[int, int]]:
        """Positions of parked customers' records that should be in the store and are not."""
        out = []
        for p, records in inputs.items():
            for o, key, _, _ in records:
                c = self.customers.get(key if key is not None else b"")
                if c is not None and c.holds(p, o) and (p, o) not in self.held:
                    out.append((p, o))
        return out


def expected_streams(
    settings: Settings,
    inputs: dict[int, list[InputRecord]],
    explain: dict[str, str] | None = None,
    parked: ParkedView | None = None,
) -> dict[Stream, list[str]]:
    """Output ids per (topic, key) as one sequential, failure-free run would produce them; ``explain``
    (when given) receives, per output id, its type and the input position that causes it.

    Exact, not approximate: the shard decides at each record's timestamp, and so does this reference, so
    a rule that depends on time (quiet hours, caps counted over a window) decides here as it did there."""
    k, p = settings.kafka, settings.pipeline
    shard = Shard(
        0,
        OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic),
        load_domain_config(settings.domain_file),
        InMemoryStateStore(p.idempotency_retention_s, p.replay_response_ttl_s),
        max_event_bytes=p.max_event_bytes,
        clock=lambda: datetime.now(UTC),
        max_message_bytes=k.max_message_bytes,
        timer_mac=settings.security.timer_mac(),
        erasure_mac=settings.security.erasure_mac(),
    )
    streams: dict[Stream, list[str]] = defaultdict(list)
    for partition in sorted(inputs):
        records = inputs[partition]
        if parked is not None and (parked.held or parked.dropped or parked.erased):
            kept = []
            for r in records:
                pos = (partition, r[0])
                if pos in parked.dropped:
                    oid = output_id(f"{k.input_topic}:{partition}:{r[0]}", "dead-letter")
                    streams[(k.dlq_topic, r[1])].append(oid)
                    if explain is not None:
                        explain[oid] = f"dropped parked record, partition {partition} offset {r[0]}"
                elif pos not in parked.held and pos not in parked.erased:
                    kept.append(r)
            records = kept
        for start in range(0, len(records), 5000):
            chunk = records[start : start + 5000]
            batch = ShardBatch(
                k.input_topic,
                partitions=[partition] * len(chunk),
                offsets=[r[0] for r in chunk],
                keys=[r[1] for r in chunk],
                values=[r[2] for r in chunk],
                timestamps_ms=[r[3] for r in chunk],
            )
            result = shard.apply(batch)
            for topic, key, value, headers in zip(
                result.topics, result.keys, result.values, result.headers, strict=True
            ):
                oid = _id_of(value, headers)
                streams[(topic, key)].append(oid)
                if explain is not None:
                    explain[oid] = _describe(value, headers)
    return streams


def _describe(value: bytes, headers: list[tuple[str, bytes]] | None) -> str:
    h = dict(headers or ())
    if "clickcash_source_partition" in h:
        return (
            f"dead letter of partition {h['clickcash_source_partition'].decode()} "
            f"offset {h['clickcash_source_offset'].decode()}"
        )
    body = orjson.loads(value)
    return f"{body['type']} caused by input {body.get('causationid')} (key {body.get('partitionkey')})"


def _is_timer_command(value: bytes | None) -> bool:
    if not value or _TIMER_MARK not in value:
        return False
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("source") == TIMER_SOURCE


def _id_of(value: bytes, headers: list[tuple[str, bytes]] | None) -> str:
    if headers:
        for name, v in headers:
            if name == "ce_id":
                return v.decode()
    return str(orjson.loads(value)["id"])


def verify(
    settings: Settings,
    *,
    settle_s: float = 3.0,
    timeout_s: float = 300,
    log: Callable[[str], None] = print,
) -> VerifyReport:
    """Compare the committed outputs with the expected ones (call once the input is fully processed)."""
    # Only what the group has committed: the routers keep appending dunning timer commands to the input,
    # and one written in the last transaction before a stop is input the app has not consumed yet.
    positions = group_positions(settings)
    inputs = read_input(settings, upto=positions)
    n_inputs = sum(len(v) for v in inputs.values())
    n_timers = sum(1 for records in inputs.values() for _, _, v, _ in records if _is_timer_command(v))
    log(f"verify: read {n_inputs:,} input records; computing expected outputs ...")
    store = RedisParkingStore.from_url(
        settings.redis.client_url(), settings.redis.key_prefix, settings.redis.socket_timeout_s
    )
    try:
        parked = ParkedView.load(store)
    finally:
        store.close()
    unkept = parked.unkept(inputs)
    explain: dict[str, str] = {}
    expected = expected_streams(settings, inputs, explain, parked)
    n_expected = sum(len(v) for v in expected.values())
    log(f"verify: {n_expected:,} outputs expected; reading output topics (read_committed) ...")
    reader = OutputReader(settings)
    try:
        reader.read_until(lambda recs: len(recs) >= n_expected, timeout_s=timeout_s, idle_s=10.0)
        reader.read_until(lambda _: False, timeout_s=settle_s, idle_s=settle_s)
        records = list(reader.records)
    finally:
        reader.close()
    actual: dict[Stream, list[str]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        actual[(r.topic, r.key)].append(r.id)

    expected_ids = Counter(i for ids in expected.values() for i in ids)
    actual_ids = Counter(r.id for r in records)
    missing = [i for i in expected_ids if i not in actual_ids]
    unexpected = [i for i in actual_ids if i not in expected_ids]
    shown = set(unexpected[:3])
    seen = {
        r.id: f"{r.type} caused by input {r.causationid} (key {r.key!r})" for r in records if r.id in shown
    }
    duplicates = [i for i, n in actual_ids.items() if n > expected_ids.get(i, 0) and i in expected_ids]
    out_of_order = []
    for stream, ids in expected.items():
        got = [i for i in dict.fromkeys(actual.get(stream, [])) if i in expected_ids]
        want = list(dict.fromkeys(ids))
        if stream[1] is None:  # keyless dead letters have no partition affinity, hence no order
            continue
        if [i for i in got if i in set(want)] != [i for i in want if i in set(got)]:
            out_of_order.append(stream)
    dlq = settings.kafka.dlq_topic
    examples = (
        [f"missing {i}: {explain.get(i, '?')}" for i in missing[:5]]
        + [f"duplicate {i}" for i in duplicates[:3]]
        + [f"unexpected {i}: {seen[i]}" for i in unexpected[:3]]
        + [f"out of order: topic {t} key {k!r}" for t, k in out_of_order[:3]]
        + [
            f"parked customer's record neither processed nor parked: partition {p} offset {o}"
            for p, o in unkept[:3]
        ]
    )
    return VerifyReport(
        inputs=n_inputs,
        timer_commands=n_timers,
        expected=n_expected,
        actual=len(records),
        missing=len(missing),
        duplicates=len(duplicates),
        unexpected=len(unexpected),
        out_of_order_streams=len(out_of_order),
        dead_letters_expected=sum(len(v) for (t, _), v in expected.items() if t == dlq),
        dead_letters_actual=sum(1 for r in records if r.topic == dlq),
        examples=examples,
        parked_customers=len(parked.customers),
        parked_records=len(parked.held),
        parked_unkept=len(unkept),
        erased_records=len(parked.erased),
    )
