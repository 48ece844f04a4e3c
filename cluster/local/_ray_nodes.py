"""A real multi-node Ray cluster on one machine: ``ray start --head`` plus ``ray start --address`` nodes.

For the integration and chaos tests (shards spread over two nodes; a worker node SIGKILLed mid-stream) and
for trying a cluster deployment locally. Each node is a ``ray start --block`` child in its own process
group; its processes (raylet, agents, workers) are found through the process tree and stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from clickcash.cluster.local._procs import free_port


@dataclass
class _RayNode:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    known_pids: set[int] = field(default_factory=set)


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


class LocalRayCluster:
    def __init__(
        self,
        work_dir: Path,
        *,
        head_cpus: int = 2,
        worker_cpus: tuple[int, ...] = (2,),
        env: dict[str, str] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self._work_dir = work_dir
        self._env = {**os.environ, **(env or {})}
        self._log = log
        self._port = 0
        self._head_cpus = head_cpus
        self._worker_cpus = worker_cpus
        self.nodes: list[_RayNode] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    def start(self, timeout_s: float = 90.0) -> None:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        self._port = free_port()
        common = ["--node-ip-address=127.0.0.1", "--block", "--disable-usage-stats"]
        head_args = ["start", "--head", f"--port={self._port}", f"--num-cpus={self._head_cpus}"]
        head = _RayNode(
            "head", [*head_args, "--include-dashboard=false", *common], self._work_dir / "head.log"
        )
        self.nodes = [head] + [
            _RayNode(
                f"worker-{i}",
                ["start", f"--address={self.address}", f"--num-cpus={cpus}", *common],
                self._work_dir / f"worker-{i}.log",
            )
            for i, cpus in enumerate(self._worker_cpus, start=1)
        ]
        started = time.monotonic()
        try:
            self._launch(head)
            self._wait_nodes(1, timeout_s)
            for node in self.nodes[1:]:
                self._launch(node)
            self._wait_nodes(len(self.nodes), timeout_s)
        except BaseException:
            self.stop()
            raise
        took = time.monotonic() - started
        self._log(f"Ray cluster with {len(self.nodes)} nodes at {self.address} in {took:.0f} s")

    def kill_node(self, index: int) -> list[int]:
        """SIGKILL a node and every process it started (raylet, agents, its workers): a machine dying."""
        node = self.nodes[index]
        pids = self._tree(node)
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        if node.proc is not None:
            node.proc.wait()
            node.proc = None
        return sorted(pids)

    def restart_node(self, index: int, timeout_s: float = 90.0) -> None:
        node = self.nodes[index]
        if node.proc is not None:
            raise RuntimeError(f"ray node {node.name} is running")
        self._launch(node)
        self._wait_nodes(len(self.nodes), timeout_s)

    def stop(self) -> None:
        """SIGTERM each node's process group, then SIGKILL whatever of its tree is left."""
        trees = {n.name: self._tree(n) for n in self.nodes}
        for n in reversed(self.nodes):
            if n.proc is not None and n.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(n.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        all_pids = set().union(*trees.values()) if trees else set()
        while time.monotonic() < deadline and any(psutil.pid_exists(p) and _alive(p) for p in all_pids):
            time.sleep(0.2)
        for pid in all_pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
        for n in self.nodes:
            if n.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.proc.wait(5)
                n.proc = None

    def _launch(self, node: _RayNode) -> None:
        out = node.log_path.open("ab")
        node.proc = subprocess.Popen(
            [_ray_cli(), *node.args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
        )
        out.close()

    def _tree(self, node: _RayNode) -> set[int]:
        """The node's processes: its `ray start` process, descendants, and any seen before (reparented)."""
        if node.proc is None:
            return set()
        pids = {node.proc.pid}
        with contextlib.suppress(psutil.NoSuchProcess):
            pids |= {c.pid for c in psutil.Process(node.proc.pid).children(recursive=True)}
        node.known_pids |= pids
        return {p for p in node.known_pids if _alive(p)}

    def refresh(self) -> None:
        """Remember every node's current processes (workers started since), so a kill finds them all."""
        for n in self.nodes:
            self._tree(n)

    def _wait_nodes(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for n in self.nodes:
                if n.proc is not None and n.proc.poll() is not None:
                    raise RuntimeError(f"ray node {n.name} exited: {n.log_path.read_text()[-3000:]}")
            status = subprocess.run(
                [_ray_cli(), "status", f"--address={self.address}"],
                capture_output=True,
                text=True,
                env=self._env,
                timeout=60,
                check=False,
            )
            if status.returncode == 0 and status.stdout.count("node_") >= count:
                return
            time.sleep(1.0)
        raise RuntimeError(f"ray cluster did not reach {count} nodes in {timeout_s:.0f} s")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
