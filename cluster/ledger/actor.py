"""The campaign ledger as a Ray actor beside the routers, started and supervised by ``cluster/app.py``.

Threaded (``max_concurrency=3``) only so that ``stop`` and ``stats`` can be called while ``run`` loops; the
Kafka work happens on the ``run`` thread. Ray restarts a dead actor (``max_restarts=-1``) and the app calls
``run`` again, which restores from the committed snapshots.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import ray

from clickcash.cluster.ledger.loop import LedgerLoop
from clickcash.cluster.ledger.metrics import top_campaigns
from clickcash.config.settings import Settings
from clickcash.logs import configure_logging


def ledger_actor_name() -> str:
    return "clickcash-campaign-ledger"


class LedgerActor:
    def __init__(self, settings: Settings) -> None:
        configure_logging(settings.monitoring.log_format, settings.monitoring.log_level)
        self._settings = settings
        self._loop = LedgerLoop(settings)
        self._stop = threading.Event()
        self._run_lock = threading.Lock()
        self._running = False
        self._runs = 0

    def run(self) -> dict[str, Any]:
        """Fold and publish until :meth:`stop`; raises on a Kafka failure (the app calls ``run`` again).

        One run at a time: a call Ray delivered twice (``may or may not have been executed`` after a
        restart) waits for the other instead of fencing its producer."""
        with self._run_lock:
            self._running = True
            self._runs += 1
            try:
                self._loop.run(self._stop.is_set)
            finally:
                self._running = False
        return self.stats()

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        s = self._loop.stats
        return {
            "ledger": 0,
            "pid": os.getpid(),
            "run": self._runs,
            "running": self._running,
            "transactions": s.transactions,
            "events_read": s.events_read,
            "events_counted": s.events_counted,
            "snapshots": s.snapshots,
            "campaigns": len(s.campaigns),
            "top": top_campaigns(s.campaigns, self._settings.ledger.metrics_top_campaigns),
        }


def start_ledger_actor(settings: Settings) -> Any:
    cls = ray.remote(LedgerActor)
    return cls.options(
        name=ledger_actor_name(),
        namespace=settings.ray.namespace,
        num_cpus=settings.ledger.num_cpus,
        max_restarts=-1,
        max_task_retries=0,
        max_concurrency=3,
    ).remote(settings)
