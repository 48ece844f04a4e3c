"""Starting or joining Ray with the auth mode chosen deliberately, never by Ray's default."""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from pathlib import Path

import ray
from ray._raylet import Config  # type: ignore[attr-defined]

from clickcash.config.settings import Settings
from clickcash.paths import cache_dir

_CACHE_DIR = cache_dir()


_LOCAL_ADDRESS_FILE = _CACHE_DIR / "run" / "local-ray-address"


def publish_local_address() -> None:
    """Record the address of the local Ray instance this process started, so operator commands run with
    ``--local`` (``clickcash scale``) can join it; a machine may hold other Ray instances, so ``auto`` is
    not reliable here."""
    _LOCAL_ADDRESS_FILE.parent.mkdir(parents=True, exist_ok=True)
    _LOCAL_ADDRESS_FILE.write_text(ray.get_runtime_context().gcs_address)


def local_address() -> str | None:
    """The address recorded by :func:`publish_local_address`, if that instance is still up."""
    try:
        return _LOCAL_ADDRESS_FILE.read_text().strip() or None
    except FileNotFoundError:
        return None


def forget_local_address() -> None:
    _LOCAL_ADDRESS_FILE.unlink(missing_ok=True)


def ray_node_env(settings: Settings) -> dict[str, str]:
    """Environment for ``ray start`` nodes that the app will join: the inline limit that
    ``ray.max_inline_object_bytes`` gives a local instance (a joined cluster reads it from its nodes)."""
    n = settings.ray.max_inline_object_bytes
    return {"RAY_max_direct_call_object_size": str(n)} if n else {}


def local_token_env() -> dict[str, str]:
    """Environment for processes (``ray start`` nodes) that must share the local token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(_local_token())}


def _local_token() -> Path:
    path = _CACHE_DIR / "ray" / "auth_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


RAY_DEFAULT_WORKER_NICENESS = 15


def colocated_niceness() -> dict[str, int]:
    """``ray`` settings for an app that shares its cores with its load generator, output reader, broker and
    Redis (``demo``, ``bench``, ``compare``): routers and shards at niceness 0 unless
    ``CLICKCASH_RAY__WORKER_NICENESS`` is set. Those neighbours all run at niceness 0, and at Ray's default of
    15 the app's workers get a few per cent of a core each contended one is also wanted by them (CFS weights
    36 against 1,024), which shows as the app's latency (docs/performance-latency.md)."""
    return {} if "CLICKCASH_RAY__WORKER_NICENESS" in os.environ else {"worker_niceness": 0}


RAY_CLIENT_ATTEMPTS = 3
"""connections tried when a Ray Client server fails to start for this client (see :func:`init_ray`)"""


def init_ray(settings: Settings, *, default_num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Join ``ray.address`` or start a local instance with an explicit CPU count.

    Ray 2.60 reads the auth mode from ``RAY_AUTH_MODE`` only, so it is set here from ``ray.auth_mode``
    before ``ray.init``; workers inherit it. In ``token`` mode Ray does not create a token when the mode is
    set explicitly, so unless ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH`` names one, the token of the local
    cache folder is used (generated on first use, mode 0600): right for local instances and local clusters
    (:mod:`clickcash.cluster.local._ray_nodes`); a remote cluster needs its own token in one of those
    variables.

    ``log_to_driver=False`` keeps the actors' log lines off this process's console (for commands whose output
    a person reads; :mod:`clickcash.cluster.observability.app_logs` collects them into a file instead).
    """
    if ray.is_initialized():
        return
    os.environ["RAY_AUTH_MODE"] = settings.ray.auth_mode
    if (
        settings.ray.auth_mode == "token"
        and "RAY_AUTH_TOKEN" not in os.environ
        and "RAY_AUTH_TOKEN_PATH" not in os.environ
    ):
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(_local_token())
    # `import ray` already cached its config from the environment; re-read it, as Ray's own
    # token setup does, so the driver agrees with the processes it is about to start.
    Config.initialize("")
    # the job's workers (routers and shards) start at this niceness; Ray's own default is 15
    runtime_env = (
        {"env_vars": {"RAY_worker_niceness": str(settings.ray.worker_niceness)}}
        if settings.ray.worker_niceness != RAY_DEFAULT_WORKER_NICENESS
        else None
    )
    if settings.ray.address:
        for attempt in range(1, RAY_CLIENT_ATTEMPTS + 1):
            try:
                ray.init(
                    address=settings.ray.address,
                    namespace=settings.ray.namespace,
                    logging_level=logging.WARNING,
                    runtime_env=runtime_env,
                )
                return
            except ConnectionAbortedError as exc:
                # Ray Client only: the cluster starts a server process per client, and here that process
                # sometimes segfaults at start-up (grpc's event_engine thread; the first client after
                # `ray start`). The client sees "Initialization failure from server"; connecting again works.
                if attempt == RAY_CLIENT_ATTEMPTS:
                    raise
                logging.getLogger(__name__).warning(
                    "Ray Client server failed to start for this client (%s); connecting again (%d/%d)",
                    str(exc).splitlines()[0],
                    attempt + 1,
                    RAY_CLIENT_ATTEMPTS,
                )
                ray.shutdown()
                time.sleep(2.0)
    needed = math.ceil(settings.pipeline.required_cpus())
    num_cpus = settings.ray.num_cpus or max(default_num_cpus or os.cpu_count() or 2, needed)
    inline = settings.ray.max_inline_object_bytes
    ray.init(
        address="local",  # a new instance, never a stale /tmp/ray/ray_current_cluster
        num_cpus=num_cpus,
        namespace=settings.ray.namespace,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=log_to_driver,
        runtime_env=runtime_env,
        # every process of the instance (driver, raylet, workers) reads it: shard batches and results up
        # to this size go inside the call (see ``ray.max_inline_object_bytes``)
        _system_config={"max_direct_call_object_size": inline} if inline else None,
    )
