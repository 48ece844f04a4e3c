"""When the router commits its open transaction, and how long it may block waiting for input.

Latency and batching pull opposite ways. A transaction costs a commit round trip to the broker
(``send_offsets_to_transaction`` and ``commit_transaction``, ~12-17 ms on a local broker) whatever it holds,
so under load one transaction should carry many rounds; but every output in an open transaction waits for
its commit before a reader sees it. The rule here:

- With no backlog (the last consume returned less than a full batch, less than a full batch is known to
  wait past the consumer's position, and the router is not holding back for rounds in flight), an open
  transaction commits at once: its outputs are produced, nothing is waiting to
  join it, and a customer's decision should not sit out a timer. Rounds already dispatched keep running on
  the shards while the commit's round trip is in progress, so commit and shard work overlap.
- With a backlog, the transaction stays open up to ``commit_interval_s`` so that it carries many rounds;
  the interval bounds batching under load, it is not the latency floor.

Waiting (adaptive batching): with nothing in flight the router blocks for its first record up to
``idle_wait_s`` (it wakes on the record, not at the end of the wait). With rounds in flight and no backlog
it consumes nothing and waits on the oldest round, which wakes it the moment the shards answer: what
arrived meanwhile then goes out as one round. Consuming a few records every millisecond instead made rounds
of a handful of events, and a Ray call costs ~110 µs per event at 10 events a call against ~10 at 500,
which under load cost more throughput than it saved latency. With a backlog the router keeps consuming
while rounds are in flight (up to the in-flight limit), looking for finished shard calls every
``inflight_poll_s``; at the limit it waits on the oldest round. No wait runs past the moment the open
transaction is due.

Round size (adaptive too): a round takes at most ``batch_max`` records, and at most ``backlog_batch_max``
while a backlog waits (:meth:`Cadence.round_max`). Flat out, a round of 2,000 records over 4 shards made
shard calls of ~500 events; the per-call costs (Ray's submission and object store, the router's and the
shard's per-round work) then still made up a large share of the router's and Ray's CPU per event.

Pure: inputs are times (seconds, one monotonic clock) and counts; no Kafka or Ray here.
"""

from __future__ import annotations

from dataclasses import dataclass

FULL_WAIT_S = 1.0
"""longest single wait on the oldest round while the in-flight limit is reached (then the loop runs again)"""


@dataclass(frozen=True, slots=True)
class Decision:
    commit: bool
    """commit the open transaction now"""
    wait_s: float
    """how long the next blocking call (consume, or the wait on the oldest round) may block"""
    take: bool
    """consume input now; otherwise wait on the oldest round in flight"""
    backlog: bool
    """input is waiting or the in-flight limit is reached: batching wins over latency"""


@dataclass(frozen=True, slots=True)
class Cadence:
    commit_interval_s: float
    """the oldest an open transaction gets while a backlog is waiting"""
    idle_wait_s: float
    """longest wait for a first record with nothing in flight"""
    inflight_poll_s: float
    """longest wait for input while rounds are in flight: how often their results are looked for"""
    batch_max: int
    """records one consume returns at most; a full batch means more are waiting"""
    max_inflight: int
    """rounds in flight at most; at the limit the router consumes nothing until the oldest is done"""
    backlog_batch_max: int = 0
    """records one consume may return while a backlog waits (0: ``batch_max``); at least ``batch_max``"""

    def __post_init__(self) -> None:
        if min(self.commit_interval_s, self.idle_wait_s, self.inflight_poll_s) <= 0:
            raise ValueError("commit_interval_s, idle_wait_s and inflight_poll_s must be positive")
        if self.batch_max < 1 or self.max_inflight < 1:
            raise ValueError("batch_max and max_inflight must be at least 1")
        if self.backlog_batch_max and self.backlog_batch_max < self.batch_max:
            raise ValueError("backlog_batch_max must be 0 or at least batch_max")

    def round_max(self, backlog: bool) -> int:
        """Records the next round may take: ``batch_max`` while input arrives no faster than rounds
        finish, ``backlog_batch_max`` while a backlog waits. A shard call's cost is mostly per call (Ray's
        submission, the object store, the shard's Redis round trips), so under a backlog larger rounds cost
        less CPU per event; without one, a round takes what is queued anyway, and the smaller cap keeps a
        burst from making one long round the next events wait behind."""
        return max(self.backlog_batch_max, self.batch_max) if backlog else self.batch_max

    def backlog(self, last_consumed: int, inflight: int, waiting: int = 0) -> bool:
        return last_consumed >= self.batch_max or waiting >= self.batch_max or inflight >= self.max_inflight

    def decide(
        self,
        now: float,
        *,
        txn_open: bool,
        txn_started: float,
        inflight: int,
        last_consumed: int,
        waiting: int = 0,
    ) -> Decision:
        """What to do at ``now``: commit or not, and how long the next wait may last.

        ``txn_started`` is when the open transaction began (ignored when none is open); ``inflight`` the
        rounds dispatched and not finished; ``last_consumed`` the records the last consume returned;
        ``waiting`` the records known to be past the consumer's position (fetched or not).
        """
        backlog = self.backlog(last_consumed, inflight, waiting)
        until_due = float("inf")
        if txn_open:
            until_due = txn_started + self.commit_interval_s - now
            if until_due <= 0 or not backlog:
                # what is queued goes to the shards before the commit: their work overlaps its round trip
                return Decision(True, 0.0, inflight < self.max_inflight, backlog)
        if inflight >= self.max_inflight or (inflight and not backlog):
            return Decision(False, min(FULL_WAIT_S, until_due), False, backlog)
        wait_s = self.inflight_poll_s if inflight else self.idle_wait_s
        return Decision(False, min(wait_s, until_due), True, backlog)
