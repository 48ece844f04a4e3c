"""A real Apache Kafka broker (KRaft mode) for tests and local runs, built from Maven jars.

There is no Docker on the project's machines and PyPI has no Kafka broker; Kafka-compatible
brokers differ from Kafka precisely where this app is sensitive (group joins, lag,
transactions). Maven Central does carry the broker's jars, so we fetch them once into a cache
and run `kafka.Kafka` directly with the system JVM.
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient

from clickcash.cluster.local._procs import (
    LOOPBACK,
    free_ports,
    kill_process,
    log_tail,
    port_open,
    start_process,
    stop_processes,
    wait_until,
)
from clickcash.cluster.local._secure import BROKER_CN, TlsMaterial
from clickcash.config.settings import KafkaSecuritySettings

KAFKA_VERSION = "4.1.1"

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "kafka-jars" / "pom.xml"
_LOG4J2_CONFIG = _HERE / "log4j2.properties"
_MANIFEST = ".complete"
_STOP_TIMEOUT_S = 20.0
_BROKER_JVM_OPTS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    # C1 only: this broker lives for a demo, a benchmark or a test session, and C2 kept compiling for all
    # of it. In `clickcash compare` runs of 100,000 events on 2 cores, the C2 compiler threads used 0.3-0.8
    # of a core throughout (3 minutes), beside 0.25-0.5 for the requests themselves. Without them the
    # broker's CPU per event fell by about half flat out and by 15-20 % at a paced rate, it is ready ~1 s
    # sooner, and the passthrough loop, which leans on the broker most, ran no slower (docs/benchmark.md).
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    # Kafka stops logging itself; log4j's own hook only adds a warning to stdout.log.
    "-Dlog4j2.shutdownHookEnabled=false",
)
# The storage tool runs for a second; C1 only and a small heap make that second shorter.
_LISTENER_KEYS = (
    "listeners=",
    "advertised.listeners=",
    "controller.listener.names=",
    "inter.broker.listener.name=",
    "listener.security.protocol.map=",
)
_TOOL_JVM_OPTS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def _libs_complete(libs: Path) -> bool:
    try:
        names = (libs / _MANIFEST).read_text().split()
    except OSError:
        return False
    return bool(names) and all((libs / name).is_file() for name in names)


def fetch_kafka_jars(cache_dir: Path, *, log: Callable[[str], None] = print) -> Path:
    """Make the broker's runtime classpath available, touching the network only once.

    The copy lands in a temporary directory and is renamed into place together with a
    manifest, so an interrupted download is never mistaken for a complete one. A file lock
    keeps parallel sessions (pytest-xdist workers, two terminals) from fetching concurrently.
    """
    cache_dir = cache_dir.resolve()
    base = cache_dir / f"kafka-{KAFKA_VERSION}"
    libs = base / "libs"
    if _libs_complete(libs):
        return libs
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _libs_complete(libs):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(
                "Maven (`mvn`) is not on PATH; it is needed once to fetch the Kafka broker jars "
                f"into {base} (apt-get install maven)"
            )
        tmp = base / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"Fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs} ...")
        started = time.monotonic()
        result = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-Dstyle.color=never",
                "-f",
                str(_POM),
                f"-Dmaven.repo.local={cache_dir / 'm2'}",
                f"-Dkafka.version={KAFKA_VERSION}",
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ],
            cwd=base,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            output = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
            raise RuntimeError(
                f"mvn could not fetch Kafka {KAFKA_VERSION} (exit {result.returncode}):\n{output}"
            )
        jars = sorted(p.name for p in tmp.glob("*.jar"))
        for needed in (f"kafka_2.13-{KAFKA_VERSION}.jar", "log4j-slf4j-impl"):
            if not any(name.startswith(needed) for name in jars):
                raise RuntimeError(f"mvn finished but {needed}* is missing from {tmp}")
        (tmp / _MANIFEST).write_text("\n".join(jars) + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        os.replace(tmp, libs)
        log(f"Fetched {len(jars)} jars in {time.monotonic() - started:.1f} s")
    return libs


def java_binary() -> str:
    """JAVA_HOME wins over PATH, as with Kafka's own scripts."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("Java 17+ is needed to run the Kafka broker (apt-get install openjdk-17-jre)")
    return java


def _random_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid().toString(), without paying a JVM start for it.
    # A leading '-' would be parsed as a command-line option by the storage tool.
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class _Node:
    index: int
    port: int
    controller_port: int
    dir: Path
    internal_port: int = 0
    """mutual-TLS inter-broker listener (secured stack only)"""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def props_path(self) -> Path:
        return self.dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def server_log(self) -> Path:
        return self.dir / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.dir / "stdout.log"

    @property
    def pid_path(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def logs(self) -> tuple[Path, Path]:
        return (self.stdout_log, self.server_log)


class LocalKafka:
    """One or more combined broker+controller KRaft nodes on loopback.

    With three nodes the replication settings mirror what production needs for the
    transactional, exactly-once paths (RF 3, min ISR 2), and a killed node is fenced within a
    few seconds, so failover tests do not have to sleep through Kafka's default 9 s.
    """

    def __init__(
        self,
        cache_dir: Path,
        work_dir: Path,
        *,
        nodes: int = 1,
        tls: TlsMaterial | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        """With ``tls``, the nodes are secured: clients reach a SASL_SSL (SCRAM-SHA-512) listener, the
        brokers talk to each other and to the controllers over mutual TLS as their one super user, and
        the StandardAuthorizer denies whatever no ACL allows (see docs/security.md)."""
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self._cache_dir = Path(cache_dir)
        self._work_dir = Path(work_dir).resolve()
        self._node_count = nodes
        self._tls = tls
        self._log = log
        self._nodes: list[_Node] = []
        self._classpath: str | None = None
        self._cluster_id: str | None = None
        self._owner_pid = os.getpid()
        self._atexit_registered = False

    # -- public API -------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        if not self._nodes:
            raise RuntimeError("LocalKafka is not started")
        return ",".join(f"{LOOPBACK}:{node.port}" for node in self._nodes)

    @property
    def pids(self) -> list[int]:
        """Pids of the nodes currently running (a killed or crashed node is left out)."""
        return [n.proc.pid for n in self._nodes if n.proc is not None and n.proc.poll() is None]

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    @property
    def nodes(self) -> int:
        return self._node_count

    @property
    def secured(self) -> bool:
        return self._tls is not None

    def admin_settings(self) -> KafkaSecuritySettings:
        """How the stack itself administers the nodes: plain on an unsecured stack; on a secured one, the
        brokers' super user over the mutual-TLS internal listener (creating users and ACLs)."""
        if self._tls is None:
            return KafkaSecuritySettings(bootstrap_servers=self.bootstrap_servers)
        return KafkaSecuritySettings(
            bootstrap_servers=",".join(f"{LOOPBACK}:{n.internal_port}" for n in self._nodes),
            security_protocol="SSL",
            ssl_ca_location=self._tls.ca_cert,
            ssl_certificate_location=self._tls.server_cert,
            ssl_key_location=self._tls.server_key,
        )

    def node_log(self, index: int) -> Path:
        """Where to look when a chaos test needs to know what a broker did."""
        return self._node(index).server_log

    def start(self, timeout_s: float = 90.0) -> None:
        """Provision a fresh cluster: new cluster id, empty log dirs, new ports.

        Every start begins from scratch so a test never inherits topics, offsets or
        transactional state from an earlier run; restart_node is the way to keep data.
        """
        if any(n.proc is not None for n in self._nodes):
            raise RuntimeError("LocalKafka is already started")
        started = time.monotonic()
        libs = fetch_kafka_jars(self._cache_dir, log=self._log)
        self._classpath = f"{libs}/*"
        self._cluster_id = _random_cluster_id()
        ports = free_ports(3 * self._node_count)
        self._nodes = [
            _Node(
                index=i,
                port=ports[3 * i],
                controller_port=ports[3 * i + 1],
                dir=self._work_dir / f"node-{i + 1}",
                internal_port=ports[3 * i + 2] if self._tls is not None else 0,
            )
            for i in range(self._node_count)
        ]
        for node in self._nodes:
            shutil.rmtree(node.dir, ignore_errors=True)
            node.dir.mkdir(parents=True)
            node.props_path.write_text(self._properties(node))
        self._format_all()
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True
        try:
            for node in self._nodes:
                self._launch(node)
            remaining = timeout_s - (time.monotonic() - started)
            self._wait_ready(self._nodes, max(remaining, 1.0))
        except BaseException:
            self.stop()
            raise
        self._log(
            f"Kafka {KAFKA_VERSION} ({self._node_count} node(s)) ready at "
            f"{self.bootstrap_servers} in {time.monotonic() - started:.1f} s"
        )

    def stop(self) -> None:
        """Controlled shutdown of every node, SIGKILL for those that hang."""
        nodes = [n for n in self._nodes if n.proc is not None]
        stop_processes([n.proc for n in nodes if n.proc is not None], timeout_s=_STOP_TIMEOUT_S)
        for node in nodes:
            node.proc = None
            node.pid_path.unlink(missing_ok=True)

    def kill_node(self, index: int) -> None:
        """Crash one node (SIGKILL, no controlled shutdown); index is 0-based, node.id is
        index + 1."""
        node = self._node(index)
        kill_process(node.proc, pid_path=node.pid_path)
        node.proc = None

    def restart_node(self, index: int, timeout_s: float = 90.0) -> None:
        """Bring a node back on its old log dir and ports, as a crashed broker would restart.

        No reformat: the node must recover its own log and rejoin with the same cluster id.
        A node that is still running is shut down cleanly first.
        """
        node = self._node(index)
        if node.proc is not None:
            stop_processes([node.proc], timeout_s=_STOP_TIMEOUT_S)
            node.proc = None
        started = time.monotonic()
        try:
            self._launch(node)
            self._wait_ready([node], timeout_s)
        except BaseException:
            kill_process(node.proc, pid_path=node.pid_path)
            node.proc = None
            raise
        self._log(f"Kafka node {node.node_id} back in {time.monotonic() - started:.1f} s")

    def __enter__(self) -> LocalKafka:
        if not self.pids:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------

    def _node(self, index: int) -> _Node:
        if not self._nodes:
            raise RuntimeError("LocalKafka is not started")
        if not 0 <= index < len(self._nodes):
            raise IndexError(f"node index {index} out of range 0..{len(self._nodes) - 1}")
        return self._nodes[index]

    def _stop_at_exit(self) -> None:
        # A forked child inherits the atexit hook but not the brokers.
        if os.getpid() == self._owner_pid:
            self.stop()

    def _properties(self, node: _Node) -> str:
        n = self._node_count
        replication = min(n, 3)
        min_isr = 2 if n >= 3 else 1
        voters = ",".join(f"{m.node_id}@{LOOPBACK}:{m.controller_port}" for m in self._nodes)
        lines = [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{LOOPBACK}:{node.port},CONTROLLER://{LOOPBACK}:{node.controller_port}",
            f"advertised.listeners=PLAINTEXT://{LOOPBACK}:{node.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={node.data_dir}",
            "num.partitions=1",
            f"default.replication.factor={replication}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replication}",
            "offsets.topic.num.partitions=3",
            f"transaction.state.log.replication.factor={replication}",
            f"transaction.state.log.min.isr={min_isr}",
            # 50 partitions by default; creating them slows the first transactional producer.
            "transaction.state.log.num.partitions=3",
            f"share.coordinator.state.topic.replication.factor={replication}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "num.network.threads=2",
            "num.io.threads=2",
            "log.cleaner.dedupe.buffer.size=16777216",
        ]
        if self._tls is not None:
            lines = [ln for ln in lines if not ln.startswith(_LISTENER_KEYS)] + self._secure_properties(node)
        # Fence a killed node after 3 s instead of 9 s so failover tests stay short. This also
        # matters with one node: a restarted broker cannot re-register (DUPLICATE_BROKER_
        # REGISTRATION) until its previous incarnation's session has expired.
        lines += ["broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=500"]
        return "\n".join(lines) + "\n"

    def _secure_properties(self, node: _Node) -> list[str]:
        assert self._tls is not None
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return [
            f"listeners=SASL_SSL://{LOOPBACK}:{node.port},INTERNAL://{LOOPBACK}:{node.internal_port},"
            f"CONTROLLER://{LOOPBACK}:{node.controller_port}",
            f"advertised.listeners=SASL_SSL://{LOOPBACK}:{node.port},INTERNAL://{LOOPBACK}:{node.internal_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map=CONTROLLER:SSL,INTERNAL:SSL,SASL_SSL:SASL_SSL",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self._tls.server_keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self._tls.ca_cert}",
            "ssl.endpoint.identification.algorithm=https",
            "listener.name.internal.ssl.client.auth=required",
            "listener.name.controller.ssl.client.auth=required",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:CN={BROKER_CN}",
        ]

    def _java_cmd(self, jvm_opts: tuple[str, ...], node: _Node, main: str) -> list[str]:
        assert self._classpath is not None
        return [
            java_binary(),
            *jvm_opts,
            f"-Dlog4j2.configurationFile={_LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={node.dir}",
            "-cp",
            self._classpath,
            main,
        ]

    def _format_all(self) -> None:
        """Format all nodes concurrently: each format is a JVM start, and they are independent."""
        assert self._cluster_id is not None
        procs: list[tuple[_Node, subprocess.Popen[bytes], Path]] = []
        for node in self._nodes:
            out = node.dir / "format.log"
            cmd = self._java_cmd(_TOOL_JVM_OPTS, node, "kafka.tools.StorageTool")
            cmd += ["format", "-t", self._cluster_id, "-c", str(node.props_path)]
            procs.append((node, start_process(cmd, log_path=out), out))
        failures = []
        for node, proc, out in procs:
            try:
                code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                kill_process(proc)
                code = -9
            if code != 0:
                failures.append(f"node {node.node_id} (exit {code}):\n{log_tail(out, *node.logs)}")
        if failures:
            raise RuntimeError("Kafka storage format failed for " + "\n".join(failures))

    def _launch(self, node: _Node) -> None:
        cmd = [*self._java_cmd(_BROKER_JVM_OPTS, node, "kafka.Kafka"), str(node.props_path)]
        node.proc = start_process(cmd, log_path=node.stdout_log, pid_path=node.pid_path)

    def _wait_ready(self, nodes: list[_Node], timeout_s: float) -> None:
        """Each node must answer a metadata request itself and list every running broker.

        Asking each node directly (a fresh client bootstrapped on that node alone) avoids
        being fooled by another broker's stale view, in which a just-killed node still
        counts as up until it is fenced.
        """
        pending = list(nodes)

        def all_ready() -> bool:
            expected = {n.node_id for n in self._nodes if n.proc is not None}
            while pending:
                if not self._node_answers(pending[0], expected):
                    return False
                pending.pop(0)
            return True

        procs = [n.proc for n in nodes if n.proc is not None]
        logs = [path for n in nodes for path in n.logs]
        wait_until(
            all_ready,
            what=f"Kafka node(s) {[n.node_id for n in nodes]}",
            timeout_s=timeout_s,
            procs=procs,
            logs=logs,
            interval_s=0.5,
        )

    def _node_answers(self, node: _Node, expected: set[int]) -> bool:
        # The client port only opens once the controller has admitted the broker.
        if not port_open(node.port):
            return False
        port = node.internal_port if self._tls is not None else node.port
        probe = self.admin_settings().model_copy(update={"bootstrap_servers": f"{LOOPBACK}:{port}"})
        admin = AdminClient(
            {
                **probe.client_config(),
                # Connection errors are expected while nodes boot or after a kill.
                "log_level": 2,
            }
        )
        md = admin.list_topics(timeout=2)
        return md.orig_broker_id == node.node_id and expected <= set(md.brokers)
