"""Live circuit-breaker state per PSP, for the metrics and ``clickcash status``.

The shards route on shared PSP outcome counters in Redis (:mod:`clickcash.actors.engines.psp_stats`); a PSP's
breaker in a
segment is open when :func:`clickcash.actors.engines.psp_routing.breaker_open` says so for that segment's
counters. The driver
reads the same counters and judges them with the same function, so the gauge shows the state routing acts on
now, not an echo of recent routing decisions.

The bucket arithmetic and the parsing of counters are the stats book's
(:class:`clickcash.actors.engines.psp_stats.PspStatsBook`), so the gauge and routing cannot disagree on which
buckets a window
covers. The keys to read are computed, not scanned: PSP x eligible segment (the product of its configured
countries, currencies and networks) x the buckets that can still hold a breaker open x (attempts, technical
failures). That is bounded by configuration (about 2,000 keys with the shipped domain.toml) and costs one MGET
however many idempotency keys the database holds, where a SCAN would walk the whole keyspace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from itertools import product
from typing import Any

import redis

from clickcash.actors import keyspace
from clickcash.actors.engines.psp_routing import breaker_open
from clickcash.actors.engines.psp_stats import PspStatsBook, counter_key, segment_of
from clickcash.config.domain import Psp, RoutingPolicy

log = logging.getLogger(__name__)

_READ = ("a", "t")
"""attempts and technical failures: all the breaker judges"""


def breaker_keys(psps: Sequence[Psp], policy: RoutingPolicy, now_ms: int) -> list[tuple[str, str, int, str]]:
    """(psp, segment, bucket start, field) of every counter that can hold a breaker open at ``now_ms``.

    A window that ends with the bucket starting at ``end`` holds the breaker until ``end + bucket_ms +
    cooldown_ms`` and covers buckets after ``end - window_ms``: older buckets cannot matter.
    """
    b = policy.bucket_ms
    oldest_needed = now_ms - b - policy.breaker.cooldown_ms - policy.breaker.window_ms
    book = PspStatsBook(policy, list(psps))
    starts = [s for s in book.bucket_starts(now_ms) if s > oldest_needed - b]
    return [
        (p.name, segment_of(network, currency, country), start, what)
        for p in psps
        for network, currency, country in product(p.networks, p.currencies, p.countries)
        for start in starts
        for what in _READ
    ]


def open_breakers(
    psps: Sequence[Psp], policy: RoutingPolicy, counters: Mapping[tuple[str, str, int, str], int], now_ms: int
) -> dict[str, bool]:
    """PSP name -> whether its breaker is open in any segment, from counters keyed as :func:`breaker_keys`
    (missing counters count as 0). Pure."""
    book = PspStatsBook(policy, list(psps))
    # approvals are not read: the breaker judges attempts and technical failures only
    book.absorb({counter_key(*k): int(n) for k, n in counters.items() if n}, now_ms)
    out = {p.name: False for p in psps}
    for segment in book.segments():
        for psp, stats in book.stats_for(segment).items():
            if out.get(psp) is False:
                out[psp] = breaker_open(stats, now_ms, policy)
    return out


class BreakerProbe:
    """Reads the counters with one MGET at most every ``interval_s`` and keeps the last answer; a failed
    read keeps the previous state and is logged once per failure streak."""

    def __init__(
        self,
        client: Any,
        key_prefix: str,
        psps: Sequence[Psp],
        policy: RoutingPolicy,
        *,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._psps = list(psps)
        self._policy = policy
        self._interval_s = interval_s
        self._clock = clock
        self._read_at = float("-inf")
        self._failing = False
        self.state: dict[str, bool] = {p.name: False for p in self._psps}

    @property
    def psps(self) -> list[str]:
        return [p.name for p in self._psps]

    def open(self) -> list[str]:
        """PSPs whose breaker is open now (re-read when the last read is older than ``interval_s``)."""
        now = self._clock()
        if now - self._read_at >= self._interval_s:
            self._read_at = now
            self._read(int(now * 1000))
        return sorted(p for p, is_open in self.state.items() if is_open)

    def _read(self, now_ms: int) -> None:
        keys = breaker_keys(self._psps, self._policy, now_ms)
        try:
            names = [keyspace.below(self._prefix, counter_key(*k)) for k in keys]
            values = self._client.mget(names) if keys else []
        except (redis.RedisError, OSError) as exc:
            if not self._failing:
                log.warning("breaker state unknown for now (PSP stats not readable: %s)", exc)
            self._failing = True
            return
        self._failing = False
        counters = {k: int(v) for k, v in zip(keys, values, strict=True) if v is not None}
        self.state = open_breakers(self._psps, self._policy, counters, now_ms)

    def close(self) -> None:
        self._client.close()


def breaker_probe(settings: Any) -> BreakerProbe:
    """A probe on the app's Redis and domain config (``settings``:
    :class:`clickcash.config.settings.Settings`)."""
    from clickcash.config.domain import load_domain_config

    r = settings.redis
    domain = load_domain_config(settings.domain_file)
    client = redis.Redis.from_url(
        r.client_url(), socket_timeout=r.socket_timeout_s, socket_connect_timeout=r.socket_timeout_s
    )
    return BreakerProbe(client, r.key_prefix, list(domain.psps), domain.routing)
