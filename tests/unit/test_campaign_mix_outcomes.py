"""What the named mixes do to the guardrails: the campaign mix is mostly accepted, the abuse mix mostly not.

The generated traffic runs through one shard with the shipped rules and the in-memory store, as the
deployed shards would see it (no services: the shard's apply path is pure given its store).
"""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from clickcash.actors.shard import Shard
from clickcash.actors.state.base import InMemoryStateStore
from clickcash.config.domain import DomainConfig
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix, loadtest_mix
from tests.unit.conftest import build_shard_batch
from tests.unit.test_shard import TOPICS, TickingClock

EVENTS = 20_000


def _decisions(mix: CampaignMix, domain: DomainConfig) -> Counter[str]:
    gen = CampaignGenerator(mix, seed=3, run_id="mix")
    shard = Shard(0, TOPICS, domain, InMemoryStateStore(clock=lambda: 1_000.0), clock=TickingClock())
    out: Counter[str] = Counter()
    for start in range(0, EVENTS, 500):
        events = [gen.next_event() for _ in range(500)]
        result = shard.apply(
            build_shard_batch([(0, start + i, e.key, e.value) for i, e in enumerate(events)])
        )
        for topic, value in zip(result.topics, result.values, strict=True):
            if topic == TOPICS.orders:
                out[orjson.loads(value)["type"]] += 1
    return out


@pytest.mark.parametrize(
    "mix",
    [loadtest_mix(customers=10_000), CampaignMix(customers=20_000, zipf_s=0.7)],
    ids=["loadtest", "demo"],
)
def test_the_campaign_mix_rejects_under_ten_percent_of_orders(mix: CampaignMix, domain: DomainConfig) -> None:
    got = _decisions(mix, domain)
    decided = got["order.accepted"] + got["order.rejected"]
    assert decided > EVENTS // 3
    assert 0 < got["order.rejected"] < 0.10 * decided, got


def test_the_abuse_mix_rejects_most_orders(domain: DomainConfig) -> None:
    got = _decisions(loadtest_mix("abuse", customers=10_000), domain)
    assert got["order.rejected"] > got["order.accepted"], got
