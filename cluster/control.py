"""The control actor: where ``clickcash status`` and ``clickcash stop`` meet the ``clickcash run`` driver.

Routers and shards belong to the driver that started them (they are not detached: if the driver dies, its
app goes with it rather than running unsupervised). Another machine therefore cannot stop them by killing
actors: the supervisor would restart a router it did not stop. Instead the driver keeps a small named actor
(``clickcash-control`` in the app's namespace) to which it publishes its status each poll, and which
carries a stop request back; the driver then drains, commits and removes the app itself.
"""

from __future__ import annotations

import time
from typing import Any

import ray

CONTROL_ACTOR_NAME = "clickcash-control"


class ControlActor:
    def __init__(self) -> None:
        self._status: dict[str, Any] = {}
        self._stop_reason: str | None = None

    def publish(self, status: dict[str, Any]) -> bool:
        """Store the driver's latest status; returns True once a stop was requested."""
        self._status = status
        return self._stop_reason is not None

    def status(self) -> dict[str, Any]:
        return {**self._status, "stop_requested": self._stop_reason}

    def request_stop(self, reason: str) -> None:
        self._stop_reason = f"{reason} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"


def start_control_actor(namespace: str) -> Any:
    """The control actor of this driver's app (it dies with the driver, like the app)."""
    cls = ray.remote(ControlActor)
    return cls.options(name=CONTROL_ACTOR_NAME, namespace=namespace, num_cpus=0, max_restarts=0).remote()


def find_actor(name: str, namespace: str) -> Any | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def named_actors(namespace: str, prefix: str) -> list[tuple[int, Any]]:
    """(index, handle) of the live actors named ``<prefix><index>`` in the namespace, by index."""
    found = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != namespace:
            continue
        name = str(entry.get("name", ""))
        suffix = name.removeprefix(prefix)
        if name.startswith(prefix) and suffix.isdigit():
            handle = find_actor(name, namespace)
            if handle is not None:
                found.append((int(suffix), handle))
    return sorted(found, key=lambda t: t[0])
