"""A shard's stored first responses (``actors/_first_response.py``): framed outputs, and the previous JSON
format still replayed the same."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickcash.actors import _first_response as first_response
from clickcash.actors.contract import Headers, OutputTopics, ShardBatch
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import InMemoryStateStore
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import load_settings
from clickcash.loadtest.traffic.campaign import CampaignGenerator, loadtest_mix

_TOPICS = st.sampled_from(["clickcash.orders", "clickcash.payments", "clickcash.dunning", "a-b_c.1"])
_OUTPUT = st.tuples(_TOPICS, st.binary(max_size=400), st.booleans())
_SYNTHETIC: Headers = [("ce_synthetic", b"true")]


def _columns(outputs: list[tuple[str, bytes, bool]]) -> tuple[list[str], list[bytes], list[Headers | None]]:
    return (
        [t for t, _, _ in outputs],
        [v for _, v, _ in outputs],
        [_SYNTHETIC if s else None for _, _, s in outputs],
    )


@given(st.lists(_OUTPUT, max_size=6), st.lists(_OUTPUT, max_size=3))
def test_the_outputs_of_one_event_come_back_byte_for_byte(
    before: list[tuple[str, bytes, bool]], outputs: list[tuple[str, bytes, bool]]
) -> None:
    topics, values, headers = _columns(before + outputs)
    raw = first_response.encode(topics, values, headers, len(before), len(before) + len(outputs))
    assert first_response.decode(raw) == outputs


@given(st.lists(st.tuples(_TOPICS, st.text(max_size=200), st.booleans()), max_size=4))
def test_a_response_of_the_previous_format_is_still_read(outputs: list[tuple[str, str, bool]]) -> None:
    """The JSON an earlier version stored: a third member marks a synthetic output."""
    legacy = orjson.dumps([[t, v, 1] if s else [t, v] for t, v, s in outputs])
    assert first_response.decode(legacy) == [(t, v.encode(), s) for t, v, s in outputs]


def test_no_outputs_in_either_format() -> None:
    assert first_response.decode(first_response.FORMAT) == []
    assert first_response.decode(b"[]") == []


@pytest.mark.parametrize(
    "raw",
    [b"F1clickcash.orders 0 10\n12345", b"F1clickcash.orders 2 1\nx", b"F1clickcash.orders 0\nx", b"F1x"],
)
def test_a_truncated_or_malformed_response_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        first_response.decode(raw)


def test_a_shard_replays_responses_stored_in_the_previous_format_byte_for_byte() -> None:
    """An upgrade meets first responses an earlier version stored as JSON: the replay gives the very
    outputs, topics, keys, values and synthetic headers, of the first run."""
    settings = load_settings()
    k = settings.kafka
    topics = OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic)
    store = InMemoryStateStore()
    clock = datetime(2026, 1, 1, tzinfo=UTC)
    shard = Shard(0, topics, load_domain_config(settings.domain_file), store, clock=lambda: clock)
    gen = CampaignGenerator(loadtest_mix(customers=30), seed=5, run_id="legacy")
    batch = ShardBatch("clickcash.events")
    for i, ev in enumerate(gen.events(300)):
        batch.partitions.append(0)
        batch.offsets.append(i)
        batch.keys.append(ev.key)
        # every generated event is synthetic: every other one is made a real one
        batch.values.append(ev.value.replace(b',"synthetic":true', b"") if i % 2 else ev.value)
        batch.timestamps_ms.append(1_767_225_600_000 + i)
    first = shard.apply(batch)
    assert any(first.headers) and not all(first.headers), "synthetic and real outputs both replayed"
    for eid, (expires, raw) in list(store._responses.items()):
        legacy = orjson.dumps(
            [[t, v.decode(), 1] if s else [t, v.decode()] for t, v, s in first_response.decode(raw)]
        )
        store._responses[eid] = (expires, legacy)
    again = Shard(0, topics, load_domain_config(settings.domain_file), store, clock=lambda: clock).apply(
        batch
    )
    assert again.counts.get("replayed", 0) > 200
    assert (again.topics, again.keys, again.values, again.headers) == (
        first.topics,
        first.keys,
        first.values,
        first.headers,
    )
