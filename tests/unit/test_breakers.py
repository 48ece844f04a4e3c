"""Live breaker state from the shared PSP stats counters: the pure evaluation and the probe's one MGET."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from clickcash.actors.engines.psp_routing import SegmentStats, breaker_open
from clickcash.actors.engines.psp_stats import counter_key, segment_of
from clickcash.cluster.observability.breakers import BreakerProbe, breaker_keys, open_breakers
from clickcash.config.domain import DomainConfig

NOW_MS = 1_772_443_800_000 + 30_000
SEG = segment_of("visa", "USD", "US")


def _failures(
    domain: DomainConfig, psp: str, n: int, at_ms: int = NOW_MS
) -> dict[tuple[str, str, int, str], int]:
    start = at_ms - at_ms % domain.routing.bucket_ms
    return {(psp, SEG, start, "a"): n, (psp, SEG, start, "t"): n}


def test_breaker_keys_are_bounded_by_config_and_cover_what_routing_reads(domain: DomainConfig) -> None:
    keys = breaker_keys(domain.psps, domain.routing, NOW_MS)
    assert len(keys) == len(set(keys))
    assert {k[0] for k in keys} == {p.name for p in domain.psps}
    assert {k[3] for k in keys} == {"a", "t"}
    starts = sorted({k[2] for k in keys})
    policy = domain.routing
    assert len(starts) <= policy.max_buckets
    assert starts[-1] == NOW_MS - NOW_MS % policy.bucket_ms
    # the oldest bucket that could still hold a breaker open is read
    b = policy.breaker
    assert starts[0] <= NOW_MS - policy.bucket_ms - b.cooldown_ms - b.window_ms


def test_failures_open_the_psps_breaker_and_only_its(domain: DomainConfig) -> None:
    n = domain.routing.breaker.min_failures
    state = open_breakers(domain.psps, domain.routing, _failures(domain, "adyen", n), NOW_MS)
    assert state == {p.name: p.name == "adyen" for p in domain.psps}
    below = open_breakers(domain.psps, domain.routing, _failures(domain, "adyen", n - 1), NOW_MS)
    assert not any(below.values())


def test_the_evaluation_agrees_with_routing(domain: DomainConfig) -> None:
    policy = domain.routing
    counters = _failures(domain, "stripe", policy.breaker.min_failures)
    start = NOW_MS - NOW_MS % policy.bucket_ms
    stats = SegmentStats(((start, policy.breaker.min_failures, 0, policy.breaker.min_failures),))
    later = NOW_MS + policy.bucket_ms + policy.breaker.cooldown_ms
    for now in (NOW_MS, NOW_MS + policy.bucket_ms, later):
        assert open_breakers(domain.psps, policy, counters, now)["stripe"] == breaker_open(stats, now, policy)
    assert open_breakers(domain.psps, policy, counters, later)["stripe"] is False  # cooled down


def test_an_unknown_psp_in_the_counters_is_ignored(domain: DomainConfig) -> None:
    state = open_breakers(domain.psps, domain.routing, _failures(domain, "not-configured", 100), NOW_MS)
    assert set(state) == {p.name for p in domain.psps}


class FakeRedis:
    def __init__(self, values: dict[str, int]) -> None:
        self.values = values
        self.calls = 0
        self.fail = False

    def mget(self, keys: Sequence[str]) -> list[Any]:
        self.calls += 1
        if self.fail:
            raise redis.ConnectionError("down")
        return [str(self.values[k]).encode() if k in self.values else None for k in keys]

    def close(self) -> None:
        pass


def test_probe_reads_once_per_interval_and_keeps_state_when_redis_fails(domain: DomainConfig) -> None:
    n = domain.routing.breaker.min_failures
    stored = {f"cc:{counter_key(*k)}": v for k, v in _failures(domain, "braintree", n).items()}
    client = FakeRedis(stored)
    now = [NOW_MS / 1000]
    probe = BreakerProbe(client, "cc", domain.psps, domain.routing, interval_s=5.0, clock=lambda: now[0])
    assert probe.open() == ["braintree"]
    assert probe.open() == ["braintree"]
    assert client.calls == 1
    client.fail = True
    now[0] += 5
    assert probe.open() == ["braintree"]  # last known state
    client.fail = False
    client.values = {}
    now[0] += 5
    assert probe.open() == []
    assert client.calls == 3
