"""The router actor's shell, constructed as a plain object (no Ray): what it does before any service."""

from __future__ import annotations

import pytest

from clickcash.config.settings import load_settings
from clickcash.router.actor import RouterActor


def test_a_stop_that_arrives_before_the_run_ends_the_run_at_once() -> None:
    """An app stopped while it is still starting: the stop reaches the actor before ``run`` does. Here
    ``run`` would first read the topology from Redis, which the unit guard refuses, so returning proves
    that it touched no service."""
    actor = RouterActor(3, load_settings())
    actor.stop()
    final = actor.run()
    assert final["router_index"] == 3
    assert final["consumed"] == 0
    assert actor.stats()["running"] is False


def test_without_a_stop_the_run_goes_to_its_services() -> None:
    actor = RouterActor(3, load_settings())
    with pytest.raises(RuntimeError, match=r"redis\.Redis\.from_url\(\) called"):
        actor.run()
