"""The applier's decision instant, built from a cached whole second, is exactly what converting and
formatting the record timestamp in full gives (``EventApplier._instant``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from clickcash.actors._apply import _EXACT_SECONDS, EventApplier
from clickcash.actors.contract import OutputTopics
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import load_settings


def _applier() -> EventApplier:
    settings = load_settings()
    topics = OutputTopics("orders", "payments", "dunning", "dlq")
    return EventApplier(topics, load_domain_config(settings.domain_file), lambda: datetime.now(UTC))


def _full(ms: int) -> tuple[datetime, str]:
    now = datetime.fromtimestamp(ms / 1000, UTC)
    return now, now.isoformat()


def test_instant_matches_fromtimestamp_and_isoformat() -> None:
    applier = _applier()
    rng = random.Random(7)
    limit = _EXACT_SECONDS * 1000
    edges = [1, 999, 1000, 1001, 1_767_225_600_000, limit - 1, limit, limit + 17, 253_402_300_799_999]
    start = rng.randrange(1, limit)
    run = list(range(start, start + 3_000))  # consecutive milliseconds, as records arrive
    for ms in edges + run + [rng.randrange(1, limit) for _ in range(20_000)] + edges:
        got = applier._instant(ms)
        assert got == _full(ms), ms
        assert got[0].tzinfo is UTC
