"""The router's bookkeeping decisions (``clickcash.router._decisions``): state in, decision out, time as
input."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

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
from clickcash.router._dispatch import RawRecord

BEGINNING = -2


@dataclass(frozen=True)
class _Parked:
    partition: int
    offset: int

    def holds(self, partition: int, offset: int) -> bool:
        return partition != self.partition or offset >= self.offset


def _rec(p: int, o: int, key: bytes | None = b"c", ts: int = 1) -> RawRecord:
    return (p, o, key, b"v", ts)


def test_only_partitions_that_delivered_since_the_seek_have_positions_of_our_own() -> None:
    assert partitions_known_ours({0, 1, 2}, {2, 1, 7}) == [1, 2]
    assert partitions_known_ours({0}, set()) == []


def test_positions_past_the_tracked_offsets_are_committed_when_idle() -> None:
    # partition 0 ends in a transaction marker: position 11, last processed record 9 (tracked as 10)
    assert positions_ahead({0: 11, 1: 5, 2: -1001}, {0: 10, 1: 5}) == {0: 11}
    assert positions_ahead({3: 0}, {}) == {3: 0}, "an untracked partition with a position is ahead"


def test_a_commit_forgets_the_records_it_covered() -> None:
    records = [_rec(0, 4), _rec(0, 5), _rec(1, 0)]
    assert still_uncommitted(records, {0: 5}) == [_rec(0, 5), _rec(1, 0)]
    assert still_uncommitted(records, {0: 6, 1: 1}) == []


def test_revoked_partitions_records_are_dropped() -> None:
    assert without_partitions([_rec(0, 1), _rec(1, 1), _rec(2, 1)], [1, 2]) == [_rec(0, 1)]


def test_waiting_counts_the_backlog_past_the_positions() -> None:
    assert waiting_records({0: 10, 1: 3, 2: -1001, 3: 8}, {0: 25, 1: 3, 2: 99}) == 15


def test_parked_customers_records_from_the_park_position_are_kept() -> None:
    parked = {b"bad": _Parked(0, 5), b"": _Parked(1, 0)}
    records = [
        _rec(0, 4, b"bad"),
        _rec(0, 5, b"ok"),
        _rec(0, 6, b"bad"),
        _rec(1, 2, None),
        _rec(2, 1, b"bad"),
    ]
    kept, flowing = split_parked(records, parked)
    assert kept == [_rec(0, 6, b"bad"), _rec(1, 2, None), _rec(2, 1, b"bad")]
    assert flowing == [_rec(0, 4, b"bad"), _rec(0, 5, b"ok")]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1000), st.integers(-1, 5)), max_size=50))
def test_round_marks_are_the_last_offset_per_partition(rows: list[tuple[int, int, int]]) -> None:
    records = [_rec(p, o, ts=ts) for p, o, ts in rows]
    last, stamps = round_marks(records)
    assert last == {p: max(o for q, o, _ in rows if q == p) for p in {r[0] for r in rows}}
    assert stamps == [ts for _, _, ts in rows if ts > 0]


def test_a_rewind_seeks_to_the_committed_offset_or_the_beginning() -> None:
    assert rewind_targets([(0, 42), (1, -1001), (2, 0)], BEGINNING) == {0: 42, 1: BEGINNING, 2: 0}


def test_an_idle_router_looks_for_positions_once_per_interval_and_never_with_an_open_transaction() -> None:
    assert idle_check_due(now_s=10.0, last_checked_s=9.5, interval_s=0.1, txn_open=False)
    assert not idle_check_due(now_s=10.0, last_checked_s=9.95, interval_s=0.1, txn_open=False)
    assert not idle_check_due(now_s=100.0, last_checked_s=0.0, interval_s=0.1, txn_open=True)


def test_a_position_that_moved_since_the_rewind_without_a_delivery_is_ours() -> None:
    # partition 0 ends in a transaction marker: the fetch after the rewind skipped it (3 -> 4 reported as
    # -1001 right after the seek, 4 later); partition 1 still reports what it read at the seek
    at_seek = {0: -1001, 1: 9, 2: 5}
    now = {0: 4, 1: 9, 2: -1001}
    assert partitions_known_ours({0, 1, 2}, set(), now, at_seek) == [0]
    assert partitions_known_ours({1, 2}, set(), now, at_seek) == []  # not owned
    assert partitions_known_ours({0, 1, 2}, {1}, now, at_seek) == [0, 1]
    # not rewound since its assignment: only a delivery makes it ours
    assert partitions_known_ours({3}, set(), {3: 12}, at_seek) == []
