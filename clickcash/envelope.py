"""The one builder of CloudEvents 1.0 envelopes that clickcash and its tools write to Kafka.

Structured mode (the JSON events of the output topics, the timer commands, the load test's input events):
:func:`structured_event` lays the attributes out in one fixed order, ``specversion, id, source, type, time,
[datacontenttype], partitionkey, <extensions in the caller's order>, data``, so an event's bytes depend only
on its values. Output ids are derived from input ids and replays must write byte-identical records, which
is why the order is fixed here rather than at every call site.

Binary mode (the dead letters, whose value is the original record's bytes): :func:`binary_headers` gives
the ``ce_`` headers in the same order.

Imports nothing of the project: every layer, from the shards to the load-test tools, may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

SPEC_VERSION = "1.0"
DEAD_LETTER_TYPE = "clickcash.dead_letter"
"""``ce_type`` of every dead letter, written by the shards and by the router for dropped parked records"""

Headers = list[tuple[str, bytes]]


def structured_head(
    *,
    id: str,
    source: str,
    type: str,
    time: str,
    partitionkey: str,
    datacontenttype: str | None = None,
    extensions: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The envelope's attributes without ``data``, in the fixed order. An extension whose value is None
    is written as ``null``; leave it out of ``extensions`` to leave it out of the event."""
    head: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": id,
        "source": source,
        "type": type,
        "time": time,
    }
    if datacontenttype is not None:
        head["datacontenttype"] = datacontenttype
    head["partitionkey"] = partitionkey
    if extensions:
        head.update(extensions)
    return head


def structured_event(
    *,
    id: str,
    source: str,
    type: str,
    time: str,
    partitionkey: str,
    data: object,
    datacontenttype: str | None = None,
    extensions: Mapping[str, object] | None = None,
) -> bytes:
    """One structured-mode CloudEvent as compact JSON bytes, ``data`` last.

    ``data`` is either already-encoded JSON (``bytes``, e.g. a pydantic model's ``to_json``: spliced in
    as is, without a round trip through a dict) or a JSON-serializable value encoded with orjson. Both give
    the same bytes for the same value, since orjson writes no whitespace."""
    head = orjson.dumps(
        structured_head(
            id=id,
            source=source,
            type=type,
            time=time,
            partitionkey=partitionkey,
            datacontenttype=datacontenttype,
            extensions=extensions,
        )
    )
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return b"".join((head[:-1], b',"data":', body, b"}"))


def structured_tail(
    *,
    time: str,
    partitionkey: str,
    datacontenttype: str | None = None,
    extensions: Mapping[str, object] | None = None,
) -> bytes:
    """The attributes after ``type`` (``time`` to the last extension) as JSON members, each preceded by a
    comma: what the outputs of one input share. With :func:`structured_event_after` it gives exactly the
    bytes of :func:`structured_event`, while several outputs of one input encode these attributes once
    (extensions never reuse an attribute's name)."""
    head: dict[str, Any] = {"time": time}
    if datacontenttype is not None:
        head["datacontenttype"] = datacontenttype
    head["partitionkey"] = partitionkey
    if extensions:
        head.update(extensions)
    return b"," + orjson.dumps(head)[1:-1]


_SPEC_VERSION_MEMBER = b'{"specversion":' + orjson.dumps(SPEC_VERSION) + b',"id":'


_SOURCE_TYPE_MAX = 256
_source_type_members: dict[tuple[str, str], bytes] = {}
"""(source, type) -> their encoded members: an emitter writes a handful of pairs, once per output"""


def structured_event_after(*, id: str, source: str, type: str, tail: bytes, data: bytes) -> bytes:
    """One structured-mode CloudEvent from its ``id``, ``source``, ``type``, a :func:`structured_tail` and
    ``data`` already encoded as JSON: the bytes :func:`structured_event` writes for the same values."""
    members = _source_type_members.get((source, type))
    if members is None:
        if len(_source_type_members) >= _SOURCE_TYPE_MAX:  # a bound, should a caller vary them freely
            _source_type_members.clear()
        members = b"".join((b',"source":', orjson.dumps(source), b',"type":', orjson.dumps(type)))
        _source_type_members[(source, type)] = members
    return b"".join((_SPEC_VERSION_MEMBER, orjson.dumps(id), members, tail, b',"data":', data, b"}"))


def binary_headers(*, id: str, source: str, type: str, time: str) -> Headers:
    """The required ``ce_`` headers of a binary-mode CloudEvent (the value is the payload itself), in the
    fixed order; the caller appends its own headers after them."""
    return [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", type.encode()),
        ("ce_time", time.encode()),
    ]
