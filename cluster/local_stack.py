"""The embedded local stack: a real single-node Kafka and a real redis-server under ``.cache/``.

Used by the demo, the benchmark, ``clickcash services`` and the test fixtures. Either it owns the processes
(stopped on exit, by pid), or it is detached: the pids and endpoints go to ``.cache/services.json`` so a
later ``clickcash run --local`` can use them and ``clickcash services stop`` can stop them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster._kafka import LocalKafka
from cluster._procs import pid_alive
from cluster._redis import LocalRedis

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("CLICKCASH_CACHE_DIR", REPO_ROOT / ".cache"))
STATE_FILE = CACHE_DIR / "services.json"


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    redis_url: str
    pids: tuple[int, ...] = ()


class LocalStack:
    def __init__(
        self, name: str = "stack", *, kafka_nodes: int = 1, log: Callable[[str], None] = print
    ) -> None:
        work = CACHE_DIR / "run" / f"{name}-{os.getpid()}"
        self.kafka = LocalKafka(CACHE_DIR, work / "kafka", nodes=kafka_nodes, log=log)
        self.redis = LocalRedis(work / "redis", log=log)
        self._log = log

    def start(self) -> Endpoints:
        self.redis.start()
        try:
            self.kafka.start()
        except BaseException:
            self.redis.stop()
            raise
        return self.endpoints()

    def endpoints(self) -> Endpoints:
        pids = tuple(p for p in [*self.kafka.pids, self.redis.pid] if p is not None)
        return Endpoints(self.kafka.bootstrap_servers, self.redis.url, pids)

    def stop(self) -> None:
        self.kafka.stop()
        self.redis.stop()

    def detach(self) -> Endpoints:
        """Leave the services running after this process exits and record them for later commands."""
        atexit.unregister(self.kafka._stop_at_exit)
        atexit.unregister(self.redis._stop_at_exit)
        ep = self.endpoints()
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(asdict(ep)))
        return ep


def running_services() -> Endpoints | None:
    """The detached services recorded in the state file, if all of them are still alive."""
    try:
        raw = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    ep = Endpoints(raw["bootstrap_servers"], raw["redis_url"], tuple(raw["pids"]))
    if not ep.pids or not all(pid_alive(p) for p in ep.pids):
        return None
    return ep


def stop_services(timeout_s: float = 30.0, log: Callable[[str], None] = print) -> bool:
    """Stop the detached services by their recorded pids (SIGTERM, then SIGKILL of their groups)."""
    try:
        raw = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return False
    pids = [p for p in raw.get("pids", []) if pid_alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    STATE_FILE.unlink(missing_ok=True)
    log(f"stopped {len(pids)} service process(es): {pids}")
    return True
