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
from typing import Any

from confluent_kafka.admin import AdminClient

from clickcash.cluster.acls import AclInputs, acl_inputs, kafka_acls, redis_acl_rules
from clickcash.cluster.local._kafka import LocalKafka
from clickcash.cluster.local._procs import pid_alive
from clickcash.cluster.local._secure import Credentials, TlsMaterial, make_tls, role_settings
from clickcash.cluster.local.acl_apply import apply_acls, create_scram_users
from clickcash.cluster.local.redis_server import LocalRedis
from clickcash.paths import cache_dir

CACHE_DIR = cache_dir()
STATE_FILE = CACHE_DIR / "services.json"


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    redis_url: str
    pids: tuple[int, ...] = ()
    secure_dir: str | None = None
    """secured stack: ``<dir>/ca.pem`` and one ``CLICKCASH_SECRETS_DIR`` per role in ``<dir>/secrets/``"""


@dataclass(frozen=True)
class SecureMaterial:
    dir: Path
    tls: TlsMaterial
    credentials: Credentials
    acl_inputs: AclInputs
    secrets_dirs: dict[str, Path]

    @classmethod
    def create(cls, directory: Path) -> SecureMaterial:
        from clickcash.config.settings import load_settings

        settings = load_settings()
        tls = make_tls(directory)
        creds = Credentials.generate(dict(settings.access.principals))
        dirs = creds.write_secrets_dirs(directory / "secrets")
        return cls(directory, tls, creds, acl_inputs(settings), dirs)


class LocalStack:
    def __init__(
        self,
        name: str = "stack",
        *,
        kafka_nodes: int = 1,
        secure: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        """``secure``: Kafka with SASL_SSL (SCRAM-SHA-512) and the StandardAuthorizer denying by default,
        redis-server with TLS and ACL users, one principal per role and the ACLs of ``clickcash acls``
        (computed from the settings of this environment: topic names, group id, key prefix)."""
        work = CACHE_DIR / "run" / f"{name}-{os.getpid()}"
        self._log = log
        self.secure = SecureMaterial.create(work / "secure") if secure else None
        tls = self.secure.tls if self.secure else None
        self.kafka = LocalKafka(CACHE_DIR, work / "kafka", nodes=kafka_nodes, tls=tls, log=log)
        if self.secure is None:
            self.redis = LocalRedis(work / "redis", log=log)
        else:
            rules = redis_acl_rules(self.secure.acl_inputs)
            creds = self.secure.credentials
            users = {creds.principals[r]: (creds.redis_passwords[r], rule) for r, rule in rules.items()}
            self.redis = LocalRedis(
                work / "redis", tls=tls, acl_users=users, admin_password=creds.redis_admin_password, log=log
            )

    def start(self) -> Endpoints:
        self.redis.start()
        try:
            self.kafka.start()
            if self.secure is not None:
                self._provision(self.secure)
        except BaseException:
            self.kafka.stop()
            self.redis.stop()
            raise
        return self.endpoints()

    def _provision(self, secure: SecureMaterial) -> None:
        admin = AdminClient(self.kafka.admin_settings().client_config())
        creds = secure.credentials
        create_scram_users(admin, {creds.principals[r]: pw for r, pw in creds.kafka_passwords.items()})
        applied = apply_acls(admin, kafka_acls(secure.acl_inputs))
        for role, path in self.role_env_files().items():
            path.write_text(self._role_env(role))
        self._log(f"secured: {len(creds.principals)} SCRAM users, {applied} ACLs; secrets in {secure.dir}")

    def role_env_files(self) -> dict[str, Path]:
        """``<secure dir>/<role>.env``: the role's non-secret settings and its ``CLICKCASH_SECRETS_DIR``,
        to source in a shell (``set -a; . <file>; set +a``)."""
        assert self.secure is not None, "not a secured stack"
        return {role: self.secure.dir / f"{role}.env" for role in self.secure.credentials.principals}

    def _role_env(self, role: str) -> str:
        lines = [f"# clickcash role {role} on the secured local stack (no secret here)"]
        for section, values in self.role_settings(role).items():
            lines += [f"CLICKCASH_{section.upper()}__{key.upper()}={value}" for key, value in values.items()]
        lines.append(f"CLICKCASH_SECRETS_DIR={self.secrets_dir(role)}")
        return "\n".join(lines) + "\n"

    def role_settings(self, role: str) -> dict[str, Any]:
        """Settings overrides of ``role`` on this secured stack; its passwords are in
        ``secrets_dir(role)`` (set ``CLICKCASH_SECRETS_DIR`` to it)."""
        assert self.secure is not None, "not a secured stack"
        return role_settings(
            role, self.secure.credentials, self.secure.tls, self.kafka.bootstrap_servers, self.redis.url
        )

    def secrets_dir(self, role: str) -> Path:
        assert self.secure is not None, "not a secured stack"
        return self.secure.secrets_dirs[role]

    def endpoints(self) -> Endpoints:
        pids = tuple(p for p in [*self.kafka.pids, self.redis.pid] if p is not None)
        secure_dir = str(self.secure.dir) if self.secure else None
        return Endpoints(self.kafka.bootstrap_servers, self.redis.url, pids, secure_dir)

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
    ep = Endpoints(raw["bootstrap_servers"], raw["redis_url"], tuple(raw["pids"]), raw.get("secure_dir"))
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
