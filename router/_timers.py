"""Firing due dunning timers: the router turns each into a ``dunning.timer_fired`` event on the input topic.

Timers are members of a per-partition sorted set (``clickcash.actors.state.base.timer_key``) scored by due
time. The router
that owns a partition polls its sets (one pipelined round trip for all owned partitions) and produces a
command event per due member inside its open transaction, keyed by the customer so it lands in the
customer's partition behind the events already there. The shard removes the member when it applies the
command, so a member stays until handled: a router that dies before committing re-fires it later, and the
event id ``timer:<plan_id>:<step>`` makes any re-fire a duplicate that produces nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import redis

from clickcash.actors.keyspace import TIMER_SEP
from clickcash.actors.state.base import timer_key
from clickcash.envelope import structured_event
from clickcash.errors import map_exceptions
from clickcash.events import TIMER_EVENT_TYPE, TIMER_SOURCE
from clickcash.timer_mac import LOCAL_STACK_TIMER_MAC, TimerMac


@dataclass(frozen=True, slots=True)
class DueTimer:
    partition: int
    member: str
    due_ms: int
    signer: TimerMac = field(default=LOCAL_STACK_TIMER_MAC, compare=False, repr=False)
    """signs the command (``security.timer_command_keys``): the shard acts only on a signed command"""

    @property
    def customer(self) -> str:
        return self.member.split(TIMER_SEP, 1)[0]

    def command(self) -> tuple[bytes, bytes]:
        """(Kafka key, CloudEvent value) of the command that fires this timer, signed."""
        customer_id, order_id, plan_id, step = self.member.split(TIMER_SEP)
        event_id = f"timer:{plan_id}:{step}"
        mac = self.signer.sign(
            event_id=event_id,
            customer_id=customer_id,
            order_id=order_id,
            plan_id=plan_id,
            step_index=int(step),
            due_ms=self.due_ms,
        )
        event = structured_event(
            id=event_id,
            source=TIMER_SOURCE,
            type=TIMER_EVENT_TYPE,
            time=datetime.fromtimestamp(self.due_ms / 1000, UTC).isoformat(),
            partitionkey=customer_id,
            data={
                "customer_id": customer_id,
                "order_id": order_id,
                "plan_id": plan_id,
                "step_index": int(step),
                "due_ms": self.due_ms,
                "mac": mac,
            },
        )
        return customer_id.encode(), event


class TimerIndex(Protocol):
    def due(self, partitions: Sequence[int], now_ms: int, limit: int) -> list[DueTimer]: ...


class RedisTimerIndex:
    def __init__(self, client: redis.Redis, key_prefix: str) -> None:
        self._r = client
        self._p = key_prefix

    @classmethod
    def from_url(cls, url: str, key_prefix: str, timeout_s: float = 5.0) -> RedisTimerIndex:
        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s), key_prefix)

    def due(self, partitions: Sequence[int], now_ms: int, limit: int) -> list[DueTimer]:
        if not partitions:
            return []
        with map_exceptions("redis", redis.RedisError):
            pipe = self._r.pipeline(transaction=False)
            for p in partitions:
                pipe.zrangebyscore(timer_key(self._p, p), "-inf", now_ms, start=0, num=limit, withscores=True)
            answers = pipe.execute()
        out = []
        for p, members in zip(partitions, answers, strict=True):
            for member, score in members:
                out.append(DueTimer(p, member.decode(), int(score)))
        return out


class TimerPump:
    """Decides when to poll and which due timers to (re)fire; the router produces what it returns."""

    def __init__(
        self,
        index: TimerIndex,
        interval_s: float,
        refire_after_s: float = 30.0,
        limit: int = 1000,
        signer: TimerMac = LOCAL_STACK_TIMER_MAC,
    ):
        self._index = index
        self._signer = signer
        self._interval_s = interval_s
        self._refire_after_s = refire_after_s
        self._limit = limit
        self._last_poll = 0.0
        self._fired: dict[str, float] = {}

    def poll(self, partitions: Sequence[int], now_s: float | None = None) -> list[DueTimer]:
        now_s = time.monotonic() if now_s is None else now_s
        if now_s - self._last_poll < self._interval_s:
            return []
        self._last_poll = now_s
        due = self._index.due(partitions, int(time.time() * 1000), self._limit)
        fresh = []
        for t in due:
            fired_at = self._fired.get(t.member)
            if fired_at is None or now_s - fired_at >= self._refire_after_s:
                self._fired[t.member] = now_s
                fresh.append(DueTimer(t.partition, t.member, t.due_ms, self._signer))
        if len(self._fired) > 10 * self._limit:
            cutoff = now_s - self._refire_after_s
            self._fired = {m: at for m, at in self._fired.items() if at >= cutoff}
        return fresh
