"""A shard's stored first response to one event: the outputs it produced, replayed byte for byte when the
event is replayed at the offset of its first sighting. Pure: no store, no Kafka.

Format ``F1``: the tag, then per output ``<topic> <0|1> <value length>\\n`` and the value's bytes verbatim;
``1`` marks a synthetic output (its replay gets the ``ce_synthetic`` header back). Topic names never hold a
space or a newline (Kafka allows ``[a-zA-Z0-9._-]``). Every output's value is copied once, where the previous
format, JSON ``[[topic, value text(, 1)], ...]``, decoded each value to text and escaped every quote in it,
and a replay parsed it back. Responses in the previous format (stored by an earlier version, kept at most
``pipeline.replay_response_ttl_s``) are still read: JSON never starts with the tag.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from clickcash.actors.contract import Headers

FORMAT = b"F1"


def encode(
    topics: Sequence[str], values: Sequence[bytes], headers: Sequence[Headers | None], start: int, end: int
) -> bytes:
    """The response holding outputs ``start`` to ``end`` (excluded) of a result's columns; an output with
    headers is marked synthetic (the only header an event's own outputs carry)."""
    if start == end:
        return FORMAT
    parts = [FORMAT]
    append = parts.append
    for j in range(start, end):
        value = values[j]
        mark = 1 if headers[j] else 0
        head = _heads.get((topics[j], mark))
        if head is None:
            if len(_heads) >= _HEADS_MAX:
                _heads.clear()
            head = _heads[(topics[j], mark)] = b"%b %d " % (topics[j].encode(), mark)
        append(head + b"%d\n" % len(value))
        append(value)
    return b"".join(parts)


_HEADS_MAX = 64
_heads: dict[tuple[str, int], bytes] = {}
"""(topic, synthetic mark) -> the start of an output's line, ``<topic> <0|1> ``: a shard writes to four
topics, and every event's response encoded the topic name again"""


def decode(raw: bytes) -> list[tuple[str, bytes, bool]]:
    """(topic, value, synthetic) of every output of a stored response, in either format; ValueError when
    it is neither (a truncated response is refused, never half replayed)."""
    if not raw.startswith(FORMAT):
        return [(topic, value.encode(), bool(mark)) for topic, value, *mark in orjson.loads(raw)]
    out: list[tuple[str, bytes, bool]] = []
    i, n = len(FORMAT), len(raw)
    while i < n:
        eol = raw.index(b"\n", i)
        topic, mark, length = raw[i:eol].split(b" ")
        start = eol + 1
        end = start + int(length)
        if end > n or mark not in (b"0", b"1"):
            raise ValueError("stored first response is truncated or malformed")
        out.append((topic.decode(), raw[start:end], mark == b"1"))
        i = end
    return out
