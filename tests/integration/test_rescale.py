"""Live rescaling on real Kafka, Redis and Ray: 4 -> 8 -> 3 shards mid-stream, then the verifier.

The scale requests go through what ``clickcash scale`` does (the desired topology in Redis, progress read
from the actors by name); the app's supervisor applies them while the input keeps arriving.
"""

from __future__ import annotations

import threading
import time

from clickcash.cluster.app import App
from clickcash.cluster.ops.scaling import request_scale, wait_for_topology
from clickcash.cluster.verify import verify
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
from clickcash.router.topology import Topology
from tests.integration._harness import SettingsFactory, produce, running_app, wait_for_drain

EVENTS = 30_000
ARRIVAL_PER_S = 1_000
"""the input after the first third arrives at this pace (~20 s), so both rescales happen while input is still
arriving however fast the pipeline drains it (a pipeline that read the whole input before its first rescale
finished sent the new shards nothing new)"""


def _say(msg: str) -> None:
    print(f"[rescale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _consumed(app: App) -> int:
    return sum(int(s.get("consumed", 0)) for s in app.router_stats())


def _progress(app: App) -> str:
    """Where each actor is, for a failure message: a stuck call, a stuck commit or an idle consumer."""
    router_keys = (
        "consumed", "produced", "transactions", "aborts", "rewinds", "committed", "shards",
        "inflight_rounds", "inflight_by_shard", "oldest_inflight_age_s", "running",
    )  # fmt: skip
    routers = [{k: s.get(k) for k in router_keys} for s in app.router_stats()]
    shard_keys = ("shard", "pid", "node", "events", "batches", "unavailable")
    shards = [{k: s.get(k) for k in shard_keys} for s in app.shard_stats()]
    return f"routers {routers}; shards {shards}"


def _supervise_until(app: App, done: object, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.supervise(0.2)
        if callable(done) and done():
            return
    raise AssertionError(f"condition not reached while supervising: {_progress(app)}")


def test_scale_4_to_8_to_3_shards_under_load_loses_duplicates_and_reorders_nothing(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        partitions=4,
        pipeline={"shards": 4, "max_inflight_batches_per_shard": 4},
        # rounds of 500 under a backlog too: the rescales happen while rounds are in flight and input waits
        kafka={"consume_batch_max": 500, "consume_backlog_batch_max": 500},
    )
    gen = CampaignGenerator(
        CampaignMix(customers=1_500, duplicate_rate=0.02, malformed_rate=0.01), seed=77, run_id="rs"
    )
    records = [(e.key, e.value) for e in gen.events(EVENTS)]
    third = EVENTS // 3
    produce(settings, records[:third])
    with running_app(settings) as app:
        producer = threading.Thread(
            target=produce, args=(settings, records[third:]), kwargs={"per_s": ARRIVAL_PER_S}
        )
        producer.start()
        _supervise_until(app, lambda: _consumed(app) >= EVENTS * 0.15)

        desired = request_scale(settings, shards=8)
        _say(f"scale to 8 shards at {_consumed(app):,} consumed")
        wait_for_topology(settings, desired, timeout_s=180, log=_say, between=lambda: app.supervise(0.2))
        assert app.topology == Topology(8, 1)
        start = _consumed(app)
        _supervise_until(
            app,
            lambda: (
                _consumed(app) >= start + 3_000
                and all(s["totals"].get("processed", 0) > 0 for s in app.shard_stats()[4:])
            ),
        )
        _say("the four new shards are processing their customers")

        desired = request_scale(settings, shards=3)
        _say(f"scale to 3 shards at {_consumed(app):,} consumed")
        wait_for_topology(settings, desired, timeout_s=180, log=_say, between=lambda: app.supervise(0.2))
        assert app.topology == Topology(3, 1)
        producer.join()
        wait_for_drain(settings, app, timeout_s=300)
        stats = app.router_stats()[0]
        _say(
            f"router: aborts {stats['aborts']} rewinds {stats['rewinds']} "
            f"transactions {stats['transactions']}"
        )
        assert stats["shards"] == 3
        assert app.restarts == 0, "a rescale must not need a router restart"
    report = verify(settings, log=_say)
    _say(report.render())
    assert report.inputs - report.timer_commands == EVENTS
    assert report.ok, report.render()
