"""The campaign pause switch's decisions (clickcash.router._pause) and its store/CLI logic on the in-memory
store."""

from __future__ import annotations

import pytest

from clickcash.cluster.ops.parked import list_lines, paused_lines, set_paused
from clickcash.errors import ClickcashError
from clickcash.router._pause import (
    campaign_of,
    held_counts,
    new_holds,
    pause_reason,
    paused_campaign,
    releases,
)
from clickcash.router.parking import InMemoryParkingStore, ParkedCustomer


def _value(campaign: str | None, data: str = '{"x": 1}') -> bytes:
    camp = f', "campaignid": "{campaign}"' if campaign is not None else ""
    return f'{{"id": "e1", "type": "order.placed"{camp}, "data": {data}}}'.encode()


def test_campaign_of_reads_the_attribute_without_decoding() -> None:
    assert campaign_of(_value("spring-24")) == "spring-24"
    assert campaign_of(b'{"campaignid":"c1","data":{}}') == "c1"
    assert campaign_of(_value(None)) is None
    assert campaign_of(b"") is None
    assert campaign_of(None) is None
    assert campaign_of(b'{"campaignid": null}') is None
    assert campaign_of(b"\xff\xfe not json") is None


def test_first_record_of_a_paused_campaign_parks_its_customer() -> None:
    records = [
        (0, 10, b"alice", _value("other"), 1),
        (0, 11, b"alice", _value("paused"), 2),
        (0, 12, b"alice", _value("paused"), 3),
        (0, 13, b"bob", _value("other"), 4),
        (1, 5, b"carol", _value("paused"), 5),
        (1, 6, None, _value("paused"), 6),
    ]
    holds = new_holds(records, {}, frozenset({"paused"}), 99)
    by = {h.customer: h for h in holds}
    assert set(by) == {b"alice", b"carol"}
    assert (by[b"alice"].partition, by[b"alice"].offset) == (0, 11)
    assert by[b"alice"].reason == pause_reason("paused")
    assert (by[b"carol"].partition, by[b"carol"].offset) == (1, 5)
    assert new_holds(records, {}, frozenset(), 99) == []


def test_an_already_held_customer_is_not_parked_again() -> None:
    parked = {b"alice": ParkedCustomer(b"alice", 0, 3, "engine failed", 1)}
    records = [(0, 11, b"alice", _value("paused"), 2)]
    assert new_holds(records, parked, frozenset({"paused"}), 99) == []


def test_resume_releases_only_held_customers_of_resumed_campaigns_on_owned_partitions() -> None:
    parked = {
        b"a": ParkedCustomer(b"a", 0, 1, pause_reason("x"), 1),
        b"b": ParkedCustomer(b"b", 0, 1, pause_reason("y"), 1),
        b"c": ParkedCustomer(b"c", 1, 1, pause_reason("x"), 1),
        b"d": ParkedCustomer(b"d", 0, 1, "engine failed", 1),
    }
    assert releases(parked, frozenset({"y"}), {0}) == {b"a": "replay"}
    assert releases(parked, frozenset({"x", "y"}), {0, 1}) == {}
    assert held_counts(parked, {0}) == {"parked": 1, "paused": 2}
    assert paused_campaign("engine failed") is None
    assert paused_campaign(pause_reason("x")) == "x"


def test_store_and_cli_pause_resume_and_list() -> None:
    store = InMemoryParkingStore()
    assert paused_lines(store) == []
    assert "paused" in set_paused(store, "spring", True)
    assert "already" in set_paused(store, "spring", True)
    assert store.paused() == frozenset({"spring"})
    store.park(ParkedCustomer(b"alice", 0, 4, pause_reason("spring"), 1))
    lines = list_lines(store)
    assert "  spring: 1 customer(s) held" in lines
    assert "resumed" in set_paused(store, "spring", False)
    assert store.paused() == frozenset()
    assert any("being released" in line for line in list_lines(store))
    with pytest.raises(ClickcashError, match="campaign"):
        set_paused(store, 'bad"id', True)


def test_status_shows_held_customers_per_reason() -> None:
    from clickcash.cluster.observability.status_view import build_status, render

    routers = [
        {"router": 0, "consumed": 1, "held_customers": {"paused": 2, "parked": 0}},
        {"router": 1, "consumed": 1, "held_customers": {"paused": 1, "parked": 1}},
    ]
    status = build_status(
        at_s=1.0,
        routers=routers,
        shards=[],
        partitions=[],
        stalls=[],
        breakers_open=[],
        router_restarts=0,
        meta={},
    )
    assert status["held_customers"] == {"paused": 3, "parked": 1}
    assert "held customers: 3 paused (a campaign), 1 parked (a failure)" in render(status)
    quiet = {**status, "held_customers": {"paused": 0, "parked": 0}}
    assert "held customers" not in render(quiet)
