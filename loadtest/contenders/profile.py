"""Where clickcash's time goes: its router and shards in one process, without Ray, under pyinstrument.

The router (``clickcash.router._router.Router``) runs its own loop against a shard pool that calls
:class:`clickcash.actors.shard.Shard` directly, so the profile holds the whole path of an event (consume,
dispatch,
decode and validation, Redis load and commit, the domain engines, produce, transaction commit) in one call
tree; :func:`clickcash.loadtest.contenders.results.stage_seconds` folds it into stages. What this leaves out
is Ray's
transport (pickling batches and results, the object store), which the throughput run's per-process CPU shows.
Times are wall time of one thread, so Redis and transaction commits include their waits.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from pyinstrument import Profiler

from clickcash.actors.actor import build_shard
from clickcash.actors.contract import ShardBatch, ShardResult
from clickcash.actors.shard import Shard
from clickcash.config.settings import load_settings
from clickcash.loadtest.contenders._common import (
    ContenderConfig,
    ContenderResult,
    contender_main,
    now,
    rss_mb,
    self_cpu_s,
)
from clickcash.loadtest.contenders.results import stage_seconds
from clickcash.router import Router, ShardFailedError


class InProcessShardPool:
    """The router's ``ShardPool`` over plain ``Shard`` objects: a call runs at submit time."""

    def __init__(self, shards: Sequence[Shard]) -> None:
        self._shards = list(shards)

    @property
    def size(self) -> int:
        return len(self._shards)

    def fence(self) -> None:
        """In-process shards are never restarted behind the router's back: nothing to learn."""

    def submit(self, shard: int, batch: ShardBatch) -> Any:
        try:
            return self._shards[shard].apply(batch)
        except Exception as exc:  # the router's contract: a failed call surfaces in results()
            return exc

    def wait(self, handles: Sequence[Any], timeout_s: float) -> bool:
        return True

    def results(self, handles: Sequence[Any]) -> list[ShardResult]:
        for h in handles:
            if isinstance(h, Exception):
                raise ShardFailedError(str(h)) from h
        return list(handles)


def run(cfg: ContenderConfig) -> ContenderResult:
    shards = int(cfg.options.get("shards", 4))
    settings = load_settings(
        kafka={
            "bootstrap_servers": cfg.bootstrap_servers,
            "input_topic": cfg.input_topic,
            "orders_topic": cfg.topic("orders"),
            "payments_topic": cfg.topic("payments"),
            "dunning_topic": cfg.topic("dunning"),
            "dlq_topic": cfg.topic("dlq"),
            "group_id": cfg.group_id,
            "transactional_id_prefix": cfg.group_id,
        },
        redis={"url": cfg.redis_url, "key_prefix": cfg.redis_prefix},
        pipeline={"shards": shards},
    )
    router = Router(settings, 0, InProcessShardPool([build_shard(i, settings) for i in range(shards)]))
    stop = threading.Event()
    marks: dict[str, float] = {}

    def watch() -> None:
        while not stop.is_set():
            snap = router.snapshot()
            if "first" not in marks and snap.consumed > 0:
                marks["first"] = now()
            if all(snap.committed.get(p, 0) >= end for p, end in cfg.end_offsets.items()):
                marks["last"] = now()
                stop.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, name="profile-watch", daemon=True)
    if not cfg.options.get("profile", True):
        # the same single process without the profiler: what batching alone gives, without Ray's parallelism
        watcher.start()
        router.run(stop)
        watcher.join(5)
        return ContenderResult(
            cfg.name,
            cfg.events,
            marks.get("first", now()),
            marks.get("last", now()),
            self_cpu_s(),
            rss_mb(),
            {
                "guarantee": "exactly-once (the app's router and shards in one process, no Ray)",
                "shards": shards,
            },
        )
    profiler = Profiler(interval=0.001, async_mode="disabled")
    watcher.start()
    profiler.start()
    router.run(stop)
    profiler.stop()
    watcher.join(5)
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if session is None or root is None:
        raise RuntimeError("the profiler recorded nothing")
    html_path = cfg.options.get("profile_html")
    if html_path:
        Path(html_path).write_text(profiler.output_html())
    stages = stage_seconds(cast(Any, root))
    events = cfg.events
    return ContenderResult(
        cfg.name,
        events,
        marks.get("first", now()),
        marks.get("last", now()),
        self_cpu_s(),
        rss_mb(),
        {
            "guarantee": "exactly-once (the app's router and shards in one process, no Ray)",
            "shards": shards,
            "profile_s": round(session.duration, 3),
            "stage_s": {k: round(v, 3) for k, v in stages.items()},
            "stage_us_per_event": {k: round(v / max(events, 1) * 1e6, 1) for k, v in stages.items()},
            "profile_html": html_path,
        },
    )


if __name__ == "__main__":
    sys.exit(contender_main(run, sys.argv[1:]))
