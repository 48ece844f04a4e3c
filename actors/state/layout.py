"""How the Redis store lays out idempotency records and first responses: the values' formats, and which
batches' responses can go. Pure: no Redis, no settings (the store in ``redis.py`` does the I/O).

One key per event, one key per batch. An event's idempotency record (``idem:<event id>``) holds its
fingerprint, position and a reference to the key that holds the first responses of the whole shard batch
that claimed it (``resps:<batch ref>``, see :func:`clickcash.actors.keyspace.batch_responses`). A batch's
commit therefore writes one key per event plus one for all its responses, and releasing those responses
once their offsets are committed is one ``UNLINK`` per batch instead of one per event. A response is read
only when an event is replayed at the offset of its first sighting, which is rare (after a failed
transaction), so reading a batch's responses whole costs nothing in the steady state.

The previous layout stored ``idem:<event id>`` as ``<fingerprint>|<partition>|<offset>`` and each response
under its own ``resp:<event id>``. Both are still read: a record without a reference points at its own
``resp:<event id>`` (:func:`decode_record` returns ``None`` for the reference), so a Redis written by the
previous version keeps replaying the stored first responses it holds until they are released or expire.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from clickcash.actors.state.base import IdempotencyRecord

BATCH_FORMAT = b"R1\n"
"""first bytes of a batch's responses value: the format's version, so a later format can tell them apart"""


def encode_record(record: IdempotencyRecord, batch_ref: str) -> bytes:
    """``<fingerprint>|<partition>|<offset>|<batch ref>``: the record and where its response is stored."""
    return f"{record.fingerprint}|{record.partition}|{record.offset}|{batch_ref}".encode()


def decode_record(raw: bytes) -> tuple[IdempotencyRecord, str | None]:
    """The record and the reference of its batch's responses; ``None`` for a record of the previous layout
    (three fields: its response, if any, is ``resp:<event id>``). ValueError for anything else."""
    parts = raw.decode().split("|")
    if len(parts) == 4:
        fp, p, o, ref = parts
        if not ref:
            raise ValueError("idempotency record with an empty batch reference")
        return IdempotencyRecord(fp, int(p), int(o)), ref
    if len(parts) == 3:
        fp, p, o = parts
        return IdempotencyRecord(fp, int(p), int(o)), None
    raise ValueError(f"not an idempotency record ({len(parts)} fields)")


def pack_responses(responses: Sequence[tuple[str, bytes]]) -> bytes:
    """One value for a batch's first responses: the format tag, then per event
    ``<id bytes>:<response bytes>:`` lengths followed by the id and the response, verbatim (any bytes)."""
    parts = [BATCH_FORMAT]
    for eid, response in responses:
        raw_id = eid.encode()
        parts.append(b"%d:%d:" % (len(raw_id), len(response)))
        parts.append(raw_id)
        parts.append(response)
    return b"".join(parts)


def unpack_responses(blob: bytes) -> dict[str, bytes]:
    """Event id -> first response of a value written by :func:`pack_responses`; ValueError when it is not
    one (a truncated or foreign value is refused, never half read)."""
    if not blob.startswith(BATCH_FORMAT):
        raise ValueError("not a batch of first responses (unknown format)")
    out: dict[str, bytes] = {}
    i = len(BATCH_FORMAT)
    n = len(blob)
    while i < n:
        a = blob.index(b":", i)
        b = blob.index(b":", a + 1)
        id_len, resp_len = int(blob[i:a]), int(blob[a + 1 : b])
        start = b + 1
        end = start + id_len + resp_len
        if id_len < 0 or resp_len < 0 or end > n:
            raise ValueError("batch of first responses is truncated")
        out[blob[start : start + id_len].decode()] = blob[start + id_len : end]
        i = end
    return out


class PendingReleases:
    """The batches whose first responses are stored and not yet released, and which of their events are
    still waiting for their offsets to commit.

    The shard releases responses by event id (``BatchWrite.release_responses``); a batch's key can go once
    every event it holds is released. :meth:`releasable` only reads, so a commit that fails changes
    nothing; :meth:`stored` and :meth:`released` record what a successful commit did. This bookkeeping is
    in memory: after a restart, the batches a previous instance left behind expire after
    ``pipeline.replay_response_ttl_s``, as before.
    """

    def __init__(self) -> None:
        self._batch_of: dict[str, str] = {}
        """event id -> batch ref, for events whose responses are stored and not released"""
        self._waiting: dict[str, int] = {}
        """batch ref -> events of the batch not released yet"""

    def __len__(self) -> int:
        """Events whose responses are stored and not released."""
        return len(self._batch_of)

    def __contains__(self, event_id: object) -> bool:
        """Whether ``event_id``'s response is stored by this writer and not released."""
        return event_id in self._batch_of

    def batches(self) -> int:
        return len(self._waiting)

    def releasable(self, event_ids: Iterable[str]) -> list[str]:
        """The batches whose every waiting event is among ``event_ids`` (unknown ids are ignored)."""
        released: dict[str, int] = {}
        for eid in set(event_ids):
            ref = self._batch_of.get(eid)
            if ref is not None:
                released[ref] = released.get(ref, 0) + 1
        return [ref for ref, k in released.items() if k == self._waiting[ref]]

    def stored(self, batch_ref: str, event_ids: Sequence[str]) -> None:
        """A commit stored the responses of ``event_ids`` under ``batch_ref``."""
        if not event_ids:
            return
        for eid in event_ids:
            self._batch_of[eid] = batch_ref
        self._waiting[batch_ref] = self._waiting.get(batch_ref, 0) + len(set(event_ids))

    def released(self, event_ids: Iterable[str]) -> None:
        """A commit released ``event_ids`` (and deleted the batches :meth:`releasable` named)."""
        for eid in set(event_ids):
            ref = self._batch_of.pop(eid, None)
            if ref is None:
                continue
            left = self._waiting[ref] - 1
            if left:
                self._waiting[ref] = left
            else:
                del self._waiting[ref]
