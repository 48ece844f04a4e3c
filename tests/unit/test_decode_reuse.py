"""``decode_record`` as the ledger calls it (value already parsed, no fingerprint): the shards' verdict."""

from __future__ import annotations

import dataclasses

import orjson

from clickcash.actors import InputEvent, decode_record
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix


def test_a_parsed_value_and_no_fingerprint_change_no_verdict() -> None:
    gen = CampaignGenerator(CampaignMix(customers=50, duplicate_rate=0.05, malformed_rate=0.1), seed=11)
    records = [(e.key, e.value) for e in gen.events(1500)]
    placed = orjson.loads(next(v for _, v in records if b'"order.placed"' in v))
    records += [
        (b"another", orjson.dumps(placed)),
        (None, orjson.dumps(placed)),
        (
            placed["partitionkey"].encode(),
            orjson.dumps({**placed, "data": {**placed["data"], "total_cents": -1}}),
        ),
        (placed["partitionkey"].encode(), orjson.dumps({**placed, "padding": "x" * 2000})),
    ]
    events = 0
    for offset, (key, value) in enumerate(records):
        shard = decode_record("in", 1, offset, key, value, 2048)
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(parsed, dict):
            continue
        ledger = decode_record("in", 1, offset, key, value, 2048, parsed=parsed, with_fingerprint=False)
        if isinstance(shard, InputEvent):
            assert isinstance(ledger, InputEvent) and shard.fingerprint and ledger.fingerprint == ""
            assert dataclasses.replace(ledger, fingerprint=shard.fingerprint) == shard
            events += 1
        else:
            assert ledger == shard
    assert 1000 < events < len(records) - 100
