"""The router's bookkeeping decisions, as pure functions: state in, decision out, time as an input.

``clickcash.router._cadence`` decides when to commit and how long to wait, ``clickcash.router._failures`` what
to do after a
failed round; the functions here decide the rest of what the router's loop needs: which consumer positions
may be committed with no round in flight, which records a commit covered, how much input waits at the
broker, which records of a round belong to parked customers, where a rewind seeks to, and when an idle
router looks for positions to commit. No Kafka, Ray or Redis here; ``clickcash.router._router`` does the I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from clickcash.router._dispatch import RawRecord


class HoldsRecords(Protocol):
    """A parked customer's park position (``clickcash.router.parking.ParkedCustomer``)."""

    def holds(self, partition: int, offset: int) -> bool: ...


def partitions_known_ours(
    assigned: Collection[int],
    delivered_since_seek: Collection[int],
    positions: Mapping[int, int] | None = None,
    positions_at_seek: Mapping[int, int] | None = None,
) -> list[int]:
    """Owned partitions whose consumer position is this router's own.

    librdkafka may report a position from before the last rewind or assignment until the consumer has
    fetched again, and committing that would skip the replay. A position is the router's own once the
    partition delivered a record since that seek, or, after a rewind or a first assignment, once the
    reported position moved away from what it read right then (``positions_at_seek``): the consumer
    moved it itself.
    The second case is a log that ends in a transaction marker (timer commands are written
    transactionally): the fetch skips the marker and moves the position without delivering anything, and
    without it the partition's lag would stay at 1 until its next record arrives."""
    moved: set[int] = set()
    if positions is not None and positions_at_seek is not None:
        moved = {
            p
            for p, pos in positions.items()
            if pos >= 0 and p in positions_at_seek and pos != positions_at_seek[p]
        }
    return sorted(set(assigned) & (set(delivered_since_seek) | moved))


def positions_ahead(positions: Mapping[int, int], tracked: Mapping[int, int]) -> dict[int, int]:
    """Consumer positions past what the offset tracker holds (committed or pending), to commit when no
    round is in flight: a partition's log can end in a transaction marker (the routers write timer
    commands transactionally), which the position moves past and the last processed offset never does.
    Negative positions (none yet) are left out."""
    return {p: pos for p, pos in positions.items() if pos >= 0 and pos > tracked.get(p, -1)}


def still_uncommitted(records: Sequence[RawRecord], committed: Mapping[int, int]) -> list[RawRecord]:
    """The records at or past their partition's committed offset: those a commit did not cover."""
    return [r for r in records if r[1] >= committed.get(r[0], 0)]


def without_partitions(records: Sequence[RawRecord], partitions: Collection[int]) -> list[RawRecord]:
    """The records not of ``partitions`` (revoked or lost: another router reads them again)."""
    gone = set(partitions)
    return [r for r in records if r[0] not in gone]


def waiting_records(positions: Mapping[int, int], highs: Mapping[int, int]) -> int:
    """Records past the consumer's positions up to the partitions' ends (high watermarks): a backlog the
    local queue may not show yet. Partitions without a position or a known end count nothing."""
    return sum(highs[p] - pos for p, pos in positions.items() if pos >= 0 and p in highs and highs[p] > pos)


def split_parked(
    records: Iterable[RawRecord], parked: Mapping[bytes, HoldsRecords]
) -> tuple[list[RawRecord], list[RawRecord]]:
    """(kept, flowing): the records of parked customers at or past their park position go to the parking
    store, in order; all others flow to the shards. A record without a key is the customer ``b""``."""
    kept: list[RawRecord] = []
    flowing: list[RawRecord] = []
    for r in records:
        c = parked.get(r[2] if r[2] is not None else b"")
        if c is not None and c.holds(r[0], r[1]):
            kept.append(r)
        else:
            flowing.append(r)
    return kept, flowing


def round_marks(records: Iterable[RawRecord]) -> tuple[dict[int, int], list[int]]:
    """(last offset per partition, positive Kafka timestamps) of a round's records: what its commit covers
    and what its end-to-end latency is observed on."""
    last: dict[int, int] = {}
    stamps_ms: list[int] = []
    for p, o, _, _, ts in records:
        if o > last.get(p, -1):
            last[p] = o
        if ts > 0:
            stamps_ms.append(ts)
    return last, stamps_ms


def rewind_targets(committed: Iterable[tuple[int, int]], beginning: int) -> dict[int, int]:
    """Where each partition's consumer seeks after an aborted round: its committed offset, or
    ``beginning`` (the client's OFFSET_BEGINNING) where the group has committed nothing (negative)."""
    return {p: (o if o >= 0 else beginning) for p, o in committed}


def idle_check_due(now_s: float, last_checked_s: float, interval_s: float, txn_open: bool) -> bool:
    """Whether an idle router (nothing in flight) looks for positions to commit now: at most once per
    commit interval, and never while a transaction is open (its commit will carry them)."""
    return not txn_open and now_s - last_checked_s >= interval_s
