"""The Redis store's value formats and release bookkeeping (``actors/state/layout.py``), without Redis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors.state.base import IdempotencyRecord
from clickcash.actors.state.layout import (
    PendingReleases,
    decode_record,
    encode_record,
    pack_responses,
    unpack_responses,
)


def test_a_record_names_its_batch_of_responses() -> None:
    rec = IdempotencyRecord("ab12", 3, 1042)
    raw = encode_record(rec, "0a1b2c3d4e5f.7")
    assert raw == b"ab12|3|1042|0a1b2c3d4e5f.7"
    assert decode_record(raw) == (rec, "0a1b2c3d4e5f.7")


def test_a_record_of_the_previous_layout_is_read_and_points_at_its_own_response_key() -> None:
    """Upgrades: a Redis written by the previous version holds ``<fp>|<partition>|<offset>`` records; they
    still block a re-claim and their responses (``resp:<event id>``) are still found on replay."""
    rec = IdempotencyRecord("ab12", 0, 5)
    assert decode_record(rec.encode()) == (rec, None)


@pytest.mark.parametrize("raw", [b"ab12|0", b"ab12|0|5|ref|x", b"ab12|0|5|", b"ab12|x|5|r"])
def test_anything_else_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_record(raw)


_IDS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


@given(st.dictionaries(_IDS, st.binary(max_size=200), max_size=20))
def test_a_batch_of_responses_round_trips_whatever_the_bytes(responses: dict[str, bytes]) -> None:
    assert unpack_responses(pack_responses(list(responses.items()))) == responses


def test_an_erasure_response_is_empty_and_kept_apart_from_its_neighbours() -> None:
    items = [("forget:1", b""), ("e:2", b'[["t","{\\"a\\":1}"]]'), ("e|3", b"12:34:")]
    assert unpack_responses(pack_responses(items)) == dict(items)


@pytest.mark.parametrize("blob", [b"", b"garbage", pack_responses([("e-1", b"[1,2,3]")])[:-1]])
def test_a_foreign_or_truncated_batch_is_refused_not_half_read(blob: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_responses(blob)


def test_a_batch_is_released_once_every_one_of_its_events_is() -> None:
    pending = PendingReleases()
    pending.stored("w.1", ["e-1", "e-2"])
    pending.stored("w.2", ["e-3"])
    assert len(pending) == 3 and pending.batches() == 2
    assert pending.releasable(["e-1", "never-stored"]) == []
    pending.released(["e-1", "never-stored"])
    assert len(pending) == 2 and pending.batches() == 2
    assert "e-1" not in pending and "e-2" in pending
    assert sorted(pending.releasable(["e-2", "e-3", "e-2"])) == ["w.1", "w.2"]
    pending.released(["e-2", "e-3"])
    assert len(pending) == 0 and pending.batches() == 0
    assert pending.releasable(["e-1", "e-2", "e-3"]) == []


def test_asking_what_is_releasable_changes_nothing() -> None:
    """A commit that fails must leave the bookkeeping as it was: only :meth:`released` changes it."""
    pending = PendingReleases()
    pending.stored("w.1", ["e-1"])
    assert pending.releasable(["e-1"]) == ["w.1"]
    assert pending.releasable(["e-1"]) == ["w.1"]
    assert len(pending) == 1
