"""``clickcash scale``: change the shard and router counts of a running app.

The command writes the desired topology to Redis and waits, showing progress, until the app's routers
(found by name in the Ray namespace) dispatch to the new shard count and the router set matches. The
supervisor of ``clickcash run`` does the work (``clickcash.cluster.app.App.reconcile``): new shards first,
every
router drains in-flight work and switches at a round boundary, removed shards and routers go last. Jump
consistent hashing moves only the customers whose shard changes: growing N -> N+1 moves about 1/(N+1).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from clickcash.cluster.ops.status import connection_options
from clickcash.config.settings import Settings
from clickcash.errors import ClickcashError, ConfigError
from clickcash.router.topology import RedisTopologyStore, Topology


def request_scale(settings: Settings, *, shards: int | None = None, routers: int | None = None) -> Topology:
    """Write the desired topology (unchanged parts kept) and return it; the supervisor applies it."""
    store = RedisTopologyStore.from_url(
        settings.redis.client_url(), settings.redis.key_prefix, settings.redis.socket_timeout_s
    )
    try:
        current = store.get()
        if current is None:
            raise ClickcashError(
                f"no app has run with redis.key_prefix {settings.redis.key_prefix!r}: start `clickcash run`"
            )
        desired = Topology(shards or current.shards, routers or current.routers)
        if desired.shards < 1 or desired.routers < 1:
            raise ConfigError(f"--shards and --routers must be at least 1, got {desired}")
        store.set(desired)
        return desired
    finally:
        store.close()


def topology_reached(settings: Settings, desired: Topology) -> tuple[bool, str]:
    """Whether the named actors show ``desired``; and a one-line progress description."""
    import ray

    from clickcash.actors.actor import shard_actor_name
    from clickcash.router.actor import router_actor_name

    ns = settings.ray.namespace

    def find(name: str) -> Any | None:
        try:
            return ray.get_actor(name, namespace=ns)
        except ValueError:
            return None

    switched = 0
    for i in range(desired.routers):
        router = find(router_actor_name(i))
        if router is None:
            continue
        try:
            stats = ray.get(router.stats.remote(), timeout=10)
        except (ray.exceptions.RayError, TimeoutError):
            continue
        if stats.get("running") and stats.get("shards") == desired.shards:
            switched += 1
    extra_router = find(router_actor_name(desired.routers)) is not None
    extra_shard = find(shard_actor_name(desired.shards)) is not None
    done = switched == desired.routers and not extra_router and not extra_shard
    text = (
        f"routers on {desired.shards} shards: {switched}/{desired.routers}"
        + (", removing routers" if extra_router else "")
        + (", removing shards" if extra_shard else "")
    )
    return done, text


def wait_for_topology(
    settings: Settings,
    desired: Topology,
    *,
    timeout_s: float = 300.0,
    log: Callable[[str], None] = print,
    between: Callable[[], None] = lambda: time.sleep(1.0),
) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    store = RedisTopologyStore.from_url(
        settings.redis.client_url(), settings.redis.key_prefix, settings.redis.socket_timeout_s
    )
    while time.monotonic() < deadline:
        wanted = store.get()
        if wanted != desired:
            store.close()
            raise ClickcashError(
                f"the supervisor did not take {desired} (the desired topology is now {wanted}): "
                "its log says why, e.g. not enough Ray CPUs"
            )
        done, text = topology_reached(settings, desired)
        if text != last:
            log(f"scale: {text}")
            last = text
        if done:
            store.close()
            return
        between()
    store.close()
    raise ClickcashError(
        f"the app did not reach {desired.shards} shards and {desired.routers} routers in {timeout_s:g} s: "
        "is its `clickcash run` supervisor running (it applies the change)?"
    )


def cmd_scale(args: argparse.Namespace) -> int:
    from clickcash.cluster.ops.status import connect

    settings = connect(args)
    desired = request_scale(settings, shards=args.shards, routers=args.routers)
    print(f"scale: asked for {desired.shards} shards and {desired.routers} routers", flush=True)
    wait_for_topology(settings, desired, timeout_s=args.timeout, log=lambda m: print(m, flush=True))
    print("scale: done", flush=True)
    return 0


def add_scale_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scale",
        help="change the shard/router counts of a running app (no loss, no duplicates, order kept)",
    )
    p.add_argument("--shards", type=int, help="new number of shard actors")
    p.add_argument("--routers", type=int, help="new number of router actors")
    connection_options(p)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the change")
    p.set_defaults(func=cmd_scale)
