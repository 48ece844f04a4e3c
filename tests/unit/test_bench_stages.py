"""``clickcash bench --stages``: the breakdown covers the batch path and leaves the code as it found it."""

from __future__ import annotations

import gc

import clickcash.actors._apply as apply_mod
import clickcash.actors.shard as shard_mod
from clickcash.actors.state.base import CustomerState, InMemoryStateStore
from clickcash.loadtest.contenders.stages import STAGE_ORDER, measure


def test_stages_cover_the_batch_path_and_are_unwrapped_afterwards() -> None:
    originals = (
        shard_mod.decode_record,
        shard_mod.first_response,
        apply_mod.check_order,
        apply_mod.route_payment,
        apply_mod.plan_dunning,
        apply_mod.EventApplier.emit,
        CustomerState.__dict__["decode"],
        CustomerState.__dict__["encode"],
    )
    threshold = gc.get_threshold()
    store = InMemoryStateStore()
    report = measure(store, warmup=600, events=1_500, batch_size=100, customers=40, seed=3, rounds=3)
    assert report.events == 1_500
    assert report.rounds == 3
    assert set(report.stages_us) == set(STAGE_ORDER)
    for stage in ("decode + validate + fingerprint", "check_order", "output encoding (emit)", "state encode"):
        assert report.stages_us[stage] > 0, stage
    assert report.cache_hit_ratio > 0.5, "40 hot customers come back batch after batch"
    assert report.redis_server_us is None
    assert "total (Shard.apply)" in report.render()
    assert store.customers, "the events went through the shard into the store"
    assert originals == (
        shard_mod.decode_record,
        shard_mod.first_response,
        apply_mod.check_order,
        apply_mod.route_payment,
        apply_mod.plan_dunning,
        apply_mod.EventApplier.emit,
        CustomerState.__dict__["decode"],
        CustomerState.__dict__["encode"],
    )
    assert gc.get_threshold() == threshold
