"""Helpers shared by the failure-handling, pause/resume, forget and chaos tests: a workload with
duplicates and malformed records, an ordinary customer to fault, the shipped domain without PSP breakers,
the parking store of a run, and the progress printer."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from clickcash.config.settings import Settings
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
from clickcash.router.parking import RedisParkingStore


def say(msg: str) -> None:
    print(f"[failures {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def workload(
    seed: int, events: int, customers: int, run_prefix: str = "f"
) -> list[tuple[bytes | None, bytes]]:
    """The campaign mix with 2 % duplicates and 1 % malformed records; ids start ``<run_prefix><seed>``."""
    gen = CampaignGenerator(
        CampaignMix(customers=customers, duplicate_rate=0.02, malformed_rate=0.01),
        seed=seed,
        run_id=f"{run_prefix}{seed}",
    )
    return [(e.key, e.value) for e in gen.events(events)]


def parking_store(settings: Settings) -> RedisParkingStore:
    r = settings.redis
    return RedisParkingStore.from_url(r.url.get_secret_value(), r.key_prefix, r.socket_timeout_s)


def domain_without_breakers(tmp_path: Path) -> Path:
    """The shipped domain with PSP breakers that never trip.

    A breaker trips on the technical failures of every customer in a time window, so whether an order is
    accepted depends on how far the other shards have got when it is decided. While the router isolates a
    record, the shards of the failing round wait and the others run ahead, and the verifier's sequential
    reference sees that shared evidence in another order: other customers' accept/reject decisions could
    differ for that reason alone. This test is about the per-customer guarantees of parking."""
    text = (Path(__file__).resolve().parents[2] / "config" / "domain.toml").read_text()
    text = re.sub(r"(?m)^min_failures = \d+", "min_failures = 1000000000", text)
    text = re.sub(r"(?m)^min_attempts = \d+", "min_attempts = 1000000000", text)
    assert text.count("1000000000") == 2, "the breaker section of config/domain.toml changed"
    path = tmp_path / "domain.toml"
    path.write_text(text)
    return path


def faulty_customer(records: list[tuple[bytes | None, bytes]]) -> str:
    """An ordinary customer (a few events, the first of them well into the stream, so some rounds pass
    before its first record). Not one of the campaign's few heavy customers: leaving a fifth of the
    traffic unprocessed would change the shared PSP success rates every other customer is routed on,
    and with them decisions the verifier's sequential reference makes from rates it sees sooner."""
    counts = Counter(k for k, _ in records if k)
    first: dict[bytes, int] = {}
    for i, (k, _) in enumerate(records):
        if k:
            first.setdefault(k, i)
    median = sorted(counts.values())[len(counts) // 2]
    ordinary = [k for k, n in counts.items() if 4 <= n <= max(12, median) and first[k] > len(records) // 10]
    return max(ordinary, key=lambda k: (counts[k], k)).decode()
