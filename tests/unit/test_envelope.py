"""Every writer of CloudEvents goes through ``clickcash.envelope``: the builders agree with each other, keep
the fixed attribute order byte for byte, and write events the shards' decoder accepts."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors._decode import InputEvent, decode_record
from clickcash.envelope import (
    SPEC_VERSION,
    binary_headers,
    structured_event,
    structured_event_after,
    structured_head,
    structured_tail,
)
from clickcash.events import OrderAccepted
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
from clickcash.loadtest.traffic.psp_sim import _envelope as psp_sim_envelope
from clickcash.router._timers import DueTimer

_ATTRS = ("specversion", "id", "source", "type", "time")


def test_bytes_data_and_value_data_give_the_same_bytes() -> None:
    data = OrderAccepted(order_id="o-1", customer_id="c-1", total_cents=100, currency="EUR", country="DE")
    kw: dict[str, object] = {
        "id": "e-1",
        "source": "s",
        "type": "order.accepted",
        "time": "2026-03-02T09:30:00+00:00",
        "partitionkey": "c-1",
        "datacontenttype": "application/json",
        "extensions": {"causationid": "in-1", "correlationid": None, "campaignid": "c"},
    }
    spliced = structured_event(data=data.__pydantic_serializer__.to_json(data), **kw)  # type: ignore[arg-type]
    dumped = structured_event(data=data.model_dump(mode="json"), **kw)  # type: ignore[arg-type]
    assert spliced == dumped
    assert spliced == orjson.dumps({**structured_head(**kw), "data": data.model_dump(mode="json")})  # type: ignore[arg-type]


def test_attribute_order_is_fixed_and_extensions_keep_the_callers_order() -> None:
    value = structured_event(
        id="e",
        source="s",
        type="t",
        time="now",
        partitionkey="k",
        datacontenttype="application/json",
        extensions={"b": 1, "a": None},
        data={"x": 1},
    )
    assert list(orjson.loads(value)) == [*_ATTRS, "datacontenttype", "partitionkey", "b", "a", "data"]
    without = structured_event(id="e", source="s", type="t", time="now", partitionkey="k", data=None)
    assert list(orjson.loads(without)) == [*_ATTRS, "partitionkey", "data"]


def test_timer_command_layout_is_unchanged() -> None:
    """The bytes of a timer command, as they were built by hand before the builder existed."""
    timer = DueTimer(partition=0, member="c-1\x1fo-1\x1fp-1\x1f2", due_ms=1_700_000_000_000)
    key, value = timer.command()
    event = orjson.loads(value)
    expected = {
        "specversion": "1.0",
        "id": "timer:p-1:2",
        "source": event["source"],
        "type": event["type"],
        "time": datetime.fromtimestamp(1_700_000_000, UTC).isoformat(),
        "partitionkey": "c-1",
        "data": event["data"],
    }
    assert key == b"c-1"
    assert value == orjson.dumps(expected)


@pytest.mark.parametrize("campaign", ["spring", None])
def test_psp_simulator_layout_is_unchanged(campaign: str | None) -> None:
    value = psp_sim_envelope("e-9", "payment.authorized", "c-9", {"order_id": "o"}, campaign)
    event = orjson.loads(value)
    expected = {
        "specversion": "1.0",
        "id": "e-9",
        "source": "loadtest/psp-sim",
        "type": "payment.authorized",
        "time": event["time"],
        "partitionkey": "c-9",
        "correlationid": "e-9-corr",
        "campaignid": campaign,
        "synthetic": True,
        "data": {"order_id": "o"},
    }
    assert value == orjson.dumps(expected)


def test_generated_events_carry_the_builders_layout_and_decode() -> None:
    gen = CampaignGenerator(CampaignMix(customers=20), seed=3, run_id="env")
    decoded = 0
    for ev in gen.events(200):
        try:
            body = orjson.loads(ev.value)
        except orjson.JSONDecodeError:
            continue  # the mix's deliberately malformed events
        if not isinstance(body, dict) or body.get("specversion") != SPEC_VERSION or "data" not in body:
            continue
        if not str(body.get("source", "")).startswith("loadtest/campaign"):
            continue
        keys = list(body)
        assert keys[:5] == list(_ATTRS)
        assert keys[-1] == "data"
        out = decode_record("in", 0, 0, ev.key, ev.value, 1 << 20)
        if isinstance(out, InputEvent):
            decoded += 1
    assert decoded > 100


def test_binary_headers_order() -> None:
    headers = binary_headers(id="i", source="clickcash", type="clickcash.dead_letter", time="t")
    assert [h for h, _ in headers] == ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"]
    assert headers[0] == ("ce_specversion", b"1.0")


_texts = st.text(st.characters(codec="utf-8"), max_size=12)


@given(
    _texts,
    _texts,
    _texts,
    _texts,
    _texts,
    st.none() | _texts,
    st.dictionaries(
        _texts.filter(lambda k: k not in (*_ATTRS, "datacontenttype", "partitionkey", "data")),
        st.none() | _texts | st.booleans(),
        max_size=4,
    ),
    st.binary(max_size=3).map(lambda b: orjson.dumps(b.hex())),
)
def test_an_event_from_a_shared_tail_is_the_builders_bytes(
    id_: str,
    source: str,
    type_: str,
    time: str,
    key: str,
    content_type: str | None,
    extensions: dict[str, object],
    data: bytes,
) -> None:
    """The shard encodes the attributes from ``time`` on once for all outputs of an input."""
    tail = structured_tail(time=time, partitionkey=key, datacontenttype=content_type, extensions=extensions)
    whole = structured_event(
        id=id_,
        source=source,
        type=type_,
        time=time,
        partitionkey=key,
        datacontenttype=content_type,
        extensions=extensions,
        data=data,
    )
    assert structured_event_after(id=id_, source=source, type=type_, tail=tail, data=data) == whole
