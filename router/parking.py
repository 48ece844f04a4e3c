"""The parking store: customers whose records cannot be processed, and those records, kept in order.

A customer is *parked* when one of its records keeps failing for a reason that is not bad input (an engine
exception, a stored state that cannot be decoded, a failure that survived the retries; see
``clickcash.router._failures``). From that record on, every record of the customer is kept here instead of
being
processed, in offset order, while every other customer flows; the router commits their offsets as usual.
An operator lists, inspects, replays (after a fix) or drops them with ``clickcash parked``.

Redis, not a Kafka topic, because the router must know at every round which customers are parked (one
hash read at start and at each partition assignment), and the operator must list, read and delete one
customer's records; a topic would be read from the beginning for each of these. Exactly-once holds
without a shared transaction: every write is idempotent. A record is a hash field named by its partition
and offset, so a round aborted after its records were kept and then replayed writes the same fields
again; the park position is set once (``HSETNX``); a release deletes the records only after the router
committed their outputs.

Keys (``<prefix>`` is ``redis.key_prefix``):

* ``<prefix>:parked`` hash: customer key -> JSON ``{partition, offset, reason, parked_at_ms}``, where
  the customer was parked (records of that partition before that offset are not parked);
* ``<prefix>:parked:r:<customer key>`` hash: ``<partition>:<offset>`` (zero padded) -> ``<timestamp
  ms>|<original value>``: the kept records; the key of each is the customer key;
* ``<prefix>:parked:requests`` hash: customer key -> ``replay`` or ``drop``, for the owning router;
* ``<prefix>:parked:outcomes`` hash: customer key -> the last request's outcome, for the operator;
* ``<prefix>:parked:dropped`` set: ``<partition>:<offset>`` of every dropped record, for the verifier;
* ``<prefix>:parked:erased`` set: ``<partition>:<offset>`` of every held record erased with its customer
  (a ``clickcash forget`` of a parked customer), for the verifier;
* ``<prefix>:paused`` set: the paused campaign ids (``clickcash pause``); a customer with a record of a
  paused campaign is parked with reason ``campaign paused: <id>`` (see ``clickcash.router._pause``).

Nothing expires: a parked customer waits for an operator. Records hold the input as it was written to
the input topic (card numbers included if the input held any: they are dead-lettered when replayed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
import redis

from clickcash.actors import keyspace
from clickcash.envelope import DEAD_LETTER_TYPE, binary_headers
from clickcash.errors import map_exceptions
from clickcash.events import (
    OUTPUT_SOURCE,
    SYNTHETIC_HEADER,
    SYNTHETIC_HEADER_VALUE,
    DeadLetter,
    DeadLetterCode,
    mask_card_numbers,
    output_id,
    says_synthetic,
)
from clickcash.router._dispatch import RawRecord

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class ParkedCustomer:
    customer: bytes
    partition: int
    offset: int
    """the first parked record: the customer's records of ``partition`` from this offset on are parked"""
    reason: str
    parked_at_ms: int

    def holds(self, partition: int, offset: int) -> bool:
        """Whether a record of this customer at (partition, offset) belongs in the store: at or after
        the park position. A record of another partition (the topic gained partitions) is parked too."""
        return partition != self.partition or offset >= self.offset


class ParkingStore(Protocol):
    def load(self) -> dict[bytes, ParkedCustomer]: ...

    def park(self, customer: ParkedCustomer) -> ParkedCustomer:
        """Record the park position, unless the customer is already parked; returns the stored one."""
        ...

    def keep(self, records: Iterable[RawRecord]) -> None:
        """Store records of parked customers (idempotent); one round trip however many."""
        ...

    def records(self, customer: bytes) -> list[RawRecord]:
        """The customer's kept records, in (partition, offset) order."""
        ...

    def request(self, customer: bytes, action: str) -> None: ...

    def requests(self) -> dict[bytes, str]: ...

    def outcome(self, customer: bytes, text: str) -> None: ...

    def outcomes(self) -> dict[bytes, str]: ...

    def forget_outcome(self, customer: bytes) -> None: ...

    def release(
        self, customer: bytes, dropped: Iterable[RawRecord] = (), erased: Iterable[RawRecord] = ()
    ) -> None:
        """Forget the customer's park position, records and request (after a replay or drop committed);
        ``dropped``: the records that went to the dead-letter topic instead, ``erased``: the records erased
        with the customer (no output at all), both remembered by position for the verifier."""
        ...

    def dropped(self) -> set[tuple[int, int]]:
        """Positions of every record an operator dropped."""
        ...

    def erased(self) -> set[tuple[int, int]]:
        """Positions of every held record erased with its customer (``clickcash forget``)."""
        ...

    def paused(self) -> frozenset[str]:
        """The paused campaigns."""
        ...

    def set_paused(self, campaign: str, paused: bool) -> bool:
        """Pause or resume a campaign; whether that changed anything."""
        ...


def _field(partition: int, offset: int) -> bytes:
    return f"{partition:05d}:{offset:020d}".encode()


class RedisParkingStore:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r = client
        self._index = keyspace.parked_index(prefix)
        self._records_prefix = keyspace.parked_records_prefix(prefix).encode()
        self._requests = keyspace.parked_requests(prefix)
        self._outcomes = keyspace.parked_outcomes(prefix)
        self._dropped = keyspace.parked_dropped(prefix)
        self._erased = keyspace.parked_erased(prefix)
        self._paused = keyspace.paused_campaigns(prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str, socket_timeout_s: float) -> RedisParkingStore:
        client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        return cls(client, prefix)

    def close(self) -> None:
        self._r.close()

    def _records_key(self, customer: bytes) -> bytes:
        return self._records_prefix + customer

    def load(self) -> dict[bytes, ParkedCustomer]:
        with map_exceptions("redis", redis.RedisError):
            raw = cast(Mapping[bytes, bytes], self._r.hgetall(self._index))
        return {c: _decode_parked(c, v) for c, v in raw.items()}

    def park(self, customer: ParkedCustomer) -> ParkedCustomer:
        doc = orjson.dumps(
            {
                "partition": customer.partition,
                "offset": customer.offset,
                "reason": customer.reason,
                "parked_at_ms": customer.parked_at_ms,
            }
        )
        with map_exceptions("redis", redis.RedisError):
            pipe = self._r.pipeline(transaction=True)
            pipe.hsetnx(self._index, customer.customer, doc)
            pipe.hget(self._index, customer.customer)
            _, stored = pipe.execute()
        return _decode_parked(customer.customer, cast(bytes, stored))

    def keep(self, records: Iterable[RawRecord]) -> None:
        by_customer: dict[bytes, dict[bytes, bytes]] = {}
        for partition, offset, key, value, ts in records:
            if key is None:
                continue
            by_customer.setdefault(key, {})[_field(partition, offset)] = f"{ts}|".encode() + (value or b"")
        if not by_customer:
            return
        with map_exceptions("redis", redis.RedisError):
            pipe = self._r.pipeline(transaction=False)
            for customer, fields in by_customer.items():
                pipe.hset(self._records_key(customer), mapping=cast(Any, fields))
            pipe.execute()

    def records(self, customer: bytes) -> list[RawRecord]:
        with map_exceptions("redis", redis.RedisError):
            raw = cast(Mapping[bytes, bytes], self._r.hgetall(self._records_key(customer)))
        out: list[RawRecord] = []
        for name in sorted(raw):
            p, o = name.split(b":")
            ts, _, value = raw[name].partition(b"|")
            out.append((int(p), int(o), customer, value, int(ts)))
        return out

    def request(self, customer: bytes, action: str) -> None:
        with map_exceptions("redis", redis.RedisError):
            self._r.hset(self._requests, customer, action)

    def requests(self) -> dict[bytes, str]:
        with map_exceptions("redis", redis.RedisError):
            raw = cast(Mapping[bytes, bytes], self._r.hgetall(self._requests))
        return {c: a.decode() for c, a in raw.items()}

    def outcome(self, customer: bytes, text: str) -> None:
        with map_exceptions("redis", redis.RedisError):
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(self._outcomes, customer, text)
            pipe.hdel(self._requests, customer)
            pipe.execute()

    def outcomes(self) -> dict[bytes, str]:
        with map_exceptions("redis", redis.RedisError):
            raw = cast(Mapping[bytes, bytes], self._r.hgetall(self._outcomes))
        return {c: t.decode() for c, t in raw.items()}

    def forget_outcome(self, customer: bytes) -> None:
        with map_exceptions("redis", redis.RedisError):
            self._r.hdel(self._outcomes, customer)

    def release(
        self, customer: bytes, dropped: Iterable[RawRecord] = (), erased: Iterable[RawRecord] = ()
    ) -> None:
        positions = [_field(r[0], r[1]) for r in dropped]
        gone = [_field(r[0], r[1]) for r in erased]
        with map_exceptions("redis", redis.RedisError):
            pipe = self._r.pipeline(transaction=True)
            if positions:
                pipe.sadd(self._dropped, *positions)
            if gone:
                pipe.sadd(self._erased, *gone)
            pipe.delete(self._records_key(customer))
            pipe.hdel(self._index, customer)
            pipe.hdel(self._requests, customer)
            pipe.execute()

    def dropped(self) -> set[tuple[int, int]]:
        with map_exceptions("redis", redis.RedisError):
            raw = cast(set[bytes], self._r.smembers(self._dropped))
        return {(int(p), int(o)) for p, o in (m.split(b":") for m in raw)}

    def erased(self) -> set[tuple[int, int]]:
        with map_exceptions("redis", redis.RedisError):
            raw = cast(set[bytes], self._r.smembers(self._erased))
        return {(int(p), int(o)) for p, o in (m.split(b":") for m in raw)}

    def paused(self) -> frozenset[str]:
        with map_exceptions("redis", redis.RedisError):
            raw = cast(set[bytes], self._r.smembers(self._paused))
        return frozenset(m.decode(errors="replace") for m in raw)

    def set_paused(self, campaign: str, paused: bool) -> bool:
        with map_exceptions("redis", redis.RedisError):
            if paused:
                return bool(self._r.sadd(self._paused, campaign))
            return bool(self._r.srem(self._paused, campaign))


def _decode_parked(customer: bytes, doc: bytes) -> ParkedCustomer:
    d = orjson.loads(doc)
    return ParkedCustomer(
        customer, int(d["partition"]), int(d["offset"]), str(d["reason"]), int(d["parked_at_ms"])
    )


class InMemoryParkingStore:
    """The same contract in a process (unit tests of the router and of the CLI's logic)."""

    def __init__(self) -> None:
        self.index: dict[bytes, ParkedCustomer] = {}
        self.kept: dict[bytes, dict[tuple[int, int], RawRecord]] = {}
        self._requests: dict[bytes, str] = {}
        self._outcomes: dict[bytes, str] = {}
        self.dropped_positions: set[tuple[int, int]] = set()
        self.erased_positions: set[tuple[int, int]] = set()
        self.paused_campaigns: set[str] = set()

    def load(self) -> dict[bytes, ParkedCustomer]:
        return dict(self.index)

    def park(self, customer: ParkedCustomer) -> ParkedCustomer:
        return self.index.setdefault(customer.customer, customer)

    def keep(self, records: Iterable[RawRecord]) -> None:
        for r in records:
            if r[2] is not None:
                self.kept.setdefault(r[2], {})[(r[0], r[1])] = r

    def records(self, customer: bytes) -> list[RawRecord]:
        return [r for _, r in sorted(self.kept.get(customer, {}).items())]

    def request(self, customer: bytes, action: str) -> None:
        self._requests[customer] = action

    def requests(self) -> dict[bytes, str]:
        return dict(self._requests)

    def outcome(self, customer: bytes, text: str) -> None:
        self._outcomes[customer] = text
        self._requests.pop(customer, None)

    def outcomes(self) -> dict[bytes, str]:
        return dict(self._outcomes)

    def forget_outcome(self, customer: bytes) -> None:
        self._outcomes.pop(customer, None)

    def release(
        self, customer: bytes, dropped: Iterable[RawRecord] = (), erased: Iterable[RawRecord] = ()
    ) -> None:
        self.dropped_positions.update((r[0], r[1]) for r in dropped)
        self.erased_positions.update((r[0], r[1]) for r in erased)
        self.kept.pop(customer, None)
        self.index.pop(customer, None)
        self._requests.pop(customer, None)

    def dropped(self) -> set[tuple[int, int]]:
        return set(self.dropped_positions)

    def erased(self) -> set[tuple[int, int]]:
        return set(self.erased_positions)

    def paused(self) -> frozenset[str]:
        return frozenset(self.paused_campaigns)

    def set_paused(self, campaign: str, paused: bool) -> bool:
        changed = (campaign in self.paused_campaigns) != paused
        if paused:
            self.paused_campaigns.add(campaign)
        else:
            self.paused_campaigns.discard(campaign)
        return changed


def dropped_dead_letter(
    source_topic: str, record: RawRecord, detail: str, time_text: str
) -> tuple[bytes | None, bytes, Headers]:
    """The dead letter of a parked record an operator dropped: (key, value, headers), in the shards' dead
    letter form (original bytes with card numbers masked, the reason in ``clickcash_reason``, the
    ``ce_synthetic`` header when the record says it is synthetic), its id derived from the record's
    position like every dead letter's."""
    partition, offset, key, value, _ = record
    body, redacted = mask_card_numbers(value or b"")
    dl = DeadLetter(
        code=DeadLetterCode.PARKED_DROPPED,
        detail=detail,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        redacted=redacted,
    )
    headers: Headers = [
        *binary_headers(
            id=output_id(f"{source_topic}:{partition}:{offset}", "dead-letter"),
            source=OUTPUT_SOURCE,
            type=DEAD_LETTER_TYPE,
            time=time_text,
        ),
        ("clickcash_reason", mask_card_numbers(dl.model_dump_json().encode())[0]),
        ("clickcash_source_topic", source_topic.encode()),
        ("clickcash_source_partition", str(partition).encode()),
        ("clickcash_source_offset", str(offset).encode()),
    ]
    if key is not None:
        headers.append(("ce_partitionkey", key))
    if says_synthetic(value):
        headers.append((SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE))
    return key, body, headers
