"""Rescale plans: what starts, switches and stops, in which order."""

from __future__ import annotations

import pytest

from clickcash.router.topology import Topology, plan_rescale


def test_growing_starts_shards_then_switches_routers() -> None:
    plan = plan_rescale(Topology(4, 1), Topology(8, 1))
    assert plan.start_shards == (4, 5, 6, 7)
    assert plan.switch_routers_to == 8
    assert plan.stop_shards == ()
    assert not plan.start_routers and not plan.stop_routers


def test_shrinking_switches_routers_before_stopping_shards() -> None:
    plan = plan_rescale(Topology(8, 2), Topology(3, 1))
    assert plan.start_shards == ()
    assert plan.switch_routers_to == 3
    assert plan.stop_shards == (3, 4, 5, 6, 7)
    assert plan.stop_routers == (1,)


def test_same_topology_is_an_empty_plan() -> None:
    assert plan_rescale(Topology(4, 1), Topology(4, 1)).empty
    routers_only = plan_rescale(Topology(4, 1), Topology(4, 3))
    assert routers_only.switch_routers_to is None and routers_only.start_routers == (1, 2)


@pytest.mark.parametrize("desired", [Topology(0, 1), Topology(2, 0)])
def test_a_topology_needs_a_shard_and_a_router(desired: Topology) -> None:
    with pytest.raises(ValueError, match="at least one shard and one router"):
        plan_rescale(Topology(4, 1), desired)
