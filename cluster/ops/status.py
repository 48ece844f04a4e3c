"""``clickcash status`` and ``clickcash stop``: operate a running app from any machine that reaches its Ray.

Both join the cluster as a short-lived driver (``--address`` or ``ray.address``, default ``auto``) and find
the app by name in ``ray.namespace``: the ``clickcash-control`` actor of the ``clickcash run`` driver, or
else the ``router-N``/``shard-N`` actors themselves.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

import orjson

from clickcash.errors import ClickcashError, ServiceError

CLEAR_SCREEN = "\x1b[H\x1b[2J"


def connect(args: argparse.Namespace) -> Any:
    """Join the app's Ray cluster as a short-lived driver; returns the settings to find the app with.

    The address is ``--address``, else ``ray.address``, else (with ``--local``) the local instance
    ``clickcash run --local`` published, else ``auto``. ``--local`` also takes Redis from the services of
    ``clickcash services start``.
    """
    from clickcash.cluster.local.stack import running_services
    from clickcash.cluster.ray_runtime import init_ray, local_address
    from clickcash.config.settings import load_settings

    overrides: dict[str, Any] = {}
    local = getattr(args, "local", False)
    if local:
        endpoints = running_services()
        if endpoints is None:
            raise ClickcashError("no local services running: start them with `clickcash services start`")
        overrides["redis"] = {"url": endpoints.redis_url}
    address = args.address or load_settings().ray.address or (local_address() if local else None) or "auto"
    ray_overrides: dict[str, Any] = {"address": address}
    if getattr(args, "namespace", None):
        ray_overrides["namespace"] = args.namespace
    settings = load_settings(ray=ray_overrides, **overrides)
    try:
        init_ray(settings)
    except ConnectionError as exc:
        raise ClickcashError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    return settings


def _find_app(settings: Any) -> tuple[Any, list[tuple[int, Any]], list[tuple[int, Any]]]:
    from clickcash.actors.actor import shard_actor_name
    from clickcash.cluster.control import CONTROL_ACTOR_NAME, find_actor, named_actors
    from clickcash.router.actor import router_actor_name

    ns = settings.ray.namespace
    control = find_actor(CONTROL_ACTOR_NAME, ns)
    routers = named_actors(ns, router_actor_name(0).removesuffix("0"))
    shards = named_actors(ns, shard_actor_name(0).removesuffix("0"))
    return control, routers, shards


class _StatusSource:
    """The run driver's published status, or (no driver) a monitor of the actors found by name."""

    def __init__(self, settings: Any) -> None:
        import ray

        self._ray = ray
        self.settings = settings
        self.control, routers, shards = _find_app(settings)
        if self.control is None and not routers:
            raise ServiceError(
                "ray",
                f"no clickcash app in Ray namespace {settings.ray.namespace!r} "
                "(is `clickcash run` running there? --namespace / CLICKCASH_RAY__NAMESPACE)",
            )
        self._monitor = None
        if self.control is None:
            from clickcash.cluster.observability.monitor import Monitor

            self._monitor = Monitor(settings, routers, shards, serve=False, control=False)

    def read(self) -> dict[str, Any]:
        if self.control is not None:
            return dict(self._ray.get(self.control.status.remote(), timeout=30))
        assert self._monitor is not None
        status = self._monitor.poll_once(timeout_s=5.0)
        return {**status, "source": "actors polled by name (no `clickcash run` driver publishing)"}


def cmd_status(args: argparse.Namespace) -> int:
    settings = connect(args)
    source = _StatusSource(settings)
    from clickcash.cluster.observability.status_view import render

    if not args.watch:
        status = source.read()
        if source.control is None:  # rates need two polls
            time.sleep(args.interval)
            status = source.read()
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode() if args.json else render(status))
        return 0 if status.get("healthy") else 1
    tty = sys.stdout.isatty()
    try:
        while True:
            status = source.read()
            view = render(status)
            stamp = time.strftime("%H:%M:%S")
            if tty:
                sys.stdout.write(
                    f"{CLEAR_SCREEN}{view}\n\n{stamp}  refreshing every {args.interval:g} s, Ctrl-C quits"
                )
            else:
                sys.stdout.write(f"--- {stamp}\n{view}\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        print()
        return 0


def cmd_stop(args: argparse.Namespace) -> int:
    import ray

    from clickcash.cluster.control import named_actors

    settings = connect(args)
    control, routers, shards = _find_app(settings)
    ns = settings.ray.namespace
    if control is not None:
        ray.get(control.request_stop.remote(f"clickcash stop from {socket.gethostname()}"), timeout=30)
        print(f"stop requested; the `clickcash run` driver is draining and committing (namespace {ns}) ...")
    elif routers and args.force:
        print(f"no `clickcash run` driver in namespace {ns}: stopping {len(routers)} router(s) by name")
        for _, r in routers:
            r.stop.remote()
        _wait(
            lambda: not any(s.get("running") for s in ray.get([r.stats.remote() for _, r in routers])), args
        )
        for _, a in [*routers, *shards]:
            ray.kill(a, no_restart=True)
    elif routers:
        raise ClickcashError(
            f"routers run in namespace {ns} without a `clickcash run` driver to stop them; "
            "--force stops them by name (drain, then remove)"
        )
    else:
        raise ServiceError("ray", f"no clickcash app in Ray namespace {ns!r}")
    router_prefix = "router-"
    _wait(lambda: not named_actors(ns, router_prefix), args)
    print("stopped: every router drained, committed and left; the app's actors are gone")
    return 0


def _wait(done: Any, args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    while not done():
        if time.monotonic() > deadline:
            raise ClickcashError(f"the app did not stop within {args.timeout:g} s")
        time.sleep(0.5)


def connection_options(p: argparse.ArgumentParser) -> None:
    """The options :func:`connect` reads, shared by ``status``, ``stop`` and ``scale``."""
    p.add_argument(
        "--address", help="Ray address (auto, ray://head:10001, host:6379); default ray.address or auto"
    )
    p.add_argument("--namespace", help="the app's Ray namespace (default: ray.namespace)")
    p.add_argument(
        "--local",
        action="store_true",
        help="the app of `clickcash run --local` on this machine (its Ray, the `clickcash services` Redis)",
    )


def add_ops_parser(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser(
        "status",
        help="live view of a running app: per-shard and per-partition rates, lag, in-flight batches, stalls",
    )
    connection_options(st)
    st.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    st.add_argument("--json", action="store_true", help="print the status as JSON (one-shot)")
    st.set_defaults(func=cmd_status)
    sp = sub.add_parser("stop", help="ask the app's `clickcash run` driver to drain, commit and stop")
    connection_options(sp)
    sp.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the app to be gone")
    sp.add_argument("--force", action="store_true", help="without a driver: stop and remove actors by name")
    sp.set_defaults(func=cmd_stop)
