"""The shard's view of PSP success-rate stats: shared counters in the state store, cached per shard.

Every shard routes with the same evidence: authorization outcomes are counted per PSP x segment x time
bucket in plain integer counters in the store (attempts, approvals, technical failures), incremented by
the batch's atomic commit (so an outcome counts once, even when its batch is replayed) and read back with
the batch's single load round trip. A shard refreshes a segment's counters at most every ``refresh_ms``
and adds its own outcomes to its cache at once, so the rates it routes on lag the other shards' outcomes
by at most ``refresh_ms`` (plus a batch). Only segments in use are refreshed: a batch's orders' segments
when stale, and segments a retry routed on when they were stale or never loaded (a retry's order is only
known after the load, so it routes on the cache, or the prior, and its segment comes with the next batch).
Refreshing every cached segment each ``refresh_ms`` instead read thousands of counters per second per shard
whatever the traffic. A refresh reads only the ``REFRESHED_BUCKETS`` newest buckets, where outcomes are
still being counted; older buckets are final and stay cached from the segment's first, full load.

Pure: no store, no clock; ``now_ms`` is an input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from clickcash.actors import keyspace
from clickcash.actors.engines.psp_routing import RouteRequest, SegmentStats, eligible
from clickcash.config.domain import Psp, RoutingPolicy

_FIELDS = ("a", "o", "t")
"""attempts, approvals (ok), technical failures"""
_BUCKET_KEYS_MAX = 4_096
"""bound of the counter-key memo (cleared when full: it only saves formatting, never changes a key)"""
REFRESHED_BUCKETS = 2
"""the current bucket and the one before it (an outcome decided at a bucket's end by a shard whose clock is a
little behind still lands in it)"""


def segment_of(network: str, currency: str, country: str) -> str:
    """The segment of :attr:`RouteRequest.segment` for an order without a separate issuer country."""
    return f"{network}|{currency}|{country}"


def counter_key(psp: str, segment: str, bucket_start_ms: int, what: str) -> str:
    """Store key (below the store's prefix) of one counter: ``psp:<psp>|<segment>|<bucket>|<a|o|t>``."""
    return keyspace.psp_counter_suffix(psp, segment, bucket_start_ms, what)


@dataclass
class PspStatsBook:
    policy: RoutingPolicy
    psps: list[Psp]
    refresh_ms: int = 1_000
    _stats: dict[str, dict[str, SegmentStats]] = field(default_factory=dict)
    """segment -> PSP -> stats: routing reads one segment per decision"""
    _loaded_at_ms: dict[str, int] = field(default_factory=dict)
    _wanted: set[str] = field(default_factory=set)
    _bucket_keys: dict[tuple[str, str, int], tuple[str, ...]] = field(default_factory=dict)
    """(psp, segment, bucket start) -> its three counter keys: every outcome of a bucket writes the same"""

    @property
    def counter_ttl_ms(self) -> int:
        """Counters outlive the window they can be read in by one bucket, then expire on their own."""
        return self.policy.bucket_ms * (self.policy.max_buckets + 1)

    def bucket_starts(self, now_ms: int) -> list[int]:
        """Starts of the ``max_buckets`` buckets that can be read at ``now_ms``, oldest first."""
        b = self.policy.bucket_ms
        newest = now_ms - now_ms % b
        return [newest - i * b for i in range(self.policy.max_buckets - 1, -1, -1)]

    def _psps_for(self, segment: str) -> list[str]:
        network, currency, country = segment.split("|")
        request = RouteRequest(country, currency, network, 0)
        return [p.name for p in self.psps if eligible(p, request)]

    def _stale(self, segment: str, now_ms: int) -> bool:
        return now_ms - self._loaded_at_ms.get(segment, -(2**62)) >= self.refresh_ms

    def keys_to_load(self, segments: Iterable[str], now_ms: int) -> list[str]:
        """Counter keys to read with this batch: the batch's segments older than ``refresh_ms`` and the
        segments retries wanted, for their eligible PSPs and live buckets."""
        due = {s for s in segments if self._stale(s, now_ms)}
        due |= self._wanted
        starts = self.bucket_starts(now_ms)
        newest = starts[-REFRESHED_BUCKETS:]
        return [
            counter_key(psp, segment, start, what)
            for segment in sorted(due)
            for psp in self._psps_for(segment)
            for start in (newest if segment in self._loaded_at_ms else starts)
            for what in _FIELDS
        ]

    def absorb(self, counters: Mapping[str, int], now_ms: int) -> None:
        """Replace the cached buckets that were loaded (``counters`` holds every requested key, missing
        ones as 0), keep the older cached ones still in the window. One commit script writes a bucket's
        three counters and one read returns them, so a bucket is never torn."""
        found = _parse(counters)
        cutoff = self.bucket_starts(now_ms)[0]
        for (psp, segment), buckets in found.items():
            cached = self._stats.get(segment, {}).get(psp, SegmentStats())
            by_start = {b[0]: (b[1], b[2], b[3]) for b in cached.buckets if b[0] >= cutoff}
            for start, (a, o, t) in buckets.items():
                by_start[start] = (a, o, t)
            live = tuple((start, *by_start[start]) for start in sorted(by_start) if by_start[start][0] > 0)
            self._stats.setdefault(segment, {})[psp] = SegmentStats(live)
        for segment in {segment for _, segment in found}:
            self._loaded_at_ms[segment] = now_ms
            self._wanted.discard(segment)

    def segments(self) -> list[str]:
        """The segments with cached stats."""
        return sorted(self._stats)

    def stats_for(self, segment: str, now_ms: int | None = None) -> Mapping[str, SegmentStats]:
        """PSP name -> stats in ``segment`` for :func:`route_payment`; asks for the segment next batch
        when it was never loaded, or (given ``now_ms``) is older than ``refresh_ms``."""
        if segment not in self._loaded_at_ms or (now_ms is not None and self._stale(segment, now_ms)):
            self._wanted.add(segment)
        return self._stats.get(segment, {})

    def record(
        self, psp: str, segment: str, now_ms: int, *, approved: bool, technical: bool
    ) -> dict[str, int]:
        """The counter increments of one authorization outcome, to commit with the batch."""
        start = now_ms - now_ms % self.policy.bucket_ms
        keys = self._bucket_keys.get((psp, segment, start))
        if keys is None:
            if len(self._bucket_keys) >= _BUCKET_KEYS_MAX:
                self._bucket_keys.clear()
            keys = self._bucket_keys[(psp, segment, start)] = tuple(
                counter_key(psp, segment, start, what) for what in _FIELDS
            )
        increments = {keys[0]: 1}
        if approved:
            increments[keys[1]] = 1
        if technical:
            increments[keys[2]] = 1
        return increments

    def committed(self, increments: Mapping[str, int], now_ms: int) -> None:
        """Add this shard's committed increments to its cache, so its next decisions see its own outcomes
        without waiting for a refresh (called only after the commit succeeded: a retried batch must not
        count twice)."""
        cutoff = self.bucket_starts(now_ms)[0]
        for (psp, segment), buckets in _parse(increments).items():
            current = self._stats.get(segment, {}).get(psp, SegmentStats())
            by_start = {b[0]: list(b[1:]) for b in current.buckets}
            for start, (a, o, t) in buckets.items():
                have = by_start.setdefault(start, [0, 0, 0])
                have[0], have[1], have[2] = have[0] + a, have[1] + o, have[2] + t
            self._stats.setdefault(segment, {})[psp] = SegmentStats(
                tuple((k, v[0], v[1], v[2]) for k, v in sorted(by_start.items()) if k >= cutoff)
            )


def _parse(counters: Mapping[str, int]) -> dict[tuple[str, str], dict[int, list[int]]]:
    """(psp, segment) -> bucket start -> [attempts, approvals, technical failures]"""
    found: dict[tuple[str, str], dict[int, list[int]]] = {}
    for key, value in counters.items():
        if not key.startswith("psp:"):
            continue
        psp, network, currency, country, start, what = key[4:].split("|")
        buckets = found.setdefault((psp, f"{network}|{currency}|{country}"), {})
        buckets.setdefault(int(start), [0, 0, 0])[_FIELDS.index(what)] += int(value)
    return found
