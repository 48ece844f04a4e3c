"""A real redis-server for tests and local runs.

The app's idempotency and cash-ledger state lives in Redis, so the tests run against the real
server with the persistence settings we recommend for production, and can restart it to prove
what survives.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis

from clickcash.cluster.local._procs import LOOPBACK, free_port, start_process, stop_process, wait_until
from clickcash.cluster.local._secure import REDIS_ADMIN, TlsMaterial

_STOP_TIMEOUT_S = 20.0


def redis_server_binary() -> str:
    """Locate the server up front so a missing package reads as a setup problem, not as an
    obscure FileNotFoundError from subprocess."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH; install it with `apt-get install redis-server`")
    return binary


class LocalRedis:
    """A redis-server child process on loopback, with its data in work_dir.

    With appendonly (the default) it uses AOF + `appendfsync everysec`: at most about one
    second of writes is lost on a crash, which is the trade-off we recommend for production.
    RDB snapshots are off either way, so a background save never competes with the tests.
    maxmemory-policy noeviction makes memory pressure fail writes loudly instead of silently
    dropping idempotency keys.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        appendonly: bool = True,
        tls: TlsMaterial | None = None,
        acl_users: dict[str, tuple[str, str]] | None = None,
        admin_password: str | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        """With ``tls``: TLS only (no plain port), the ``default`` user off, and ``acl_users`` (user ->
        (password, ACL rules)) plus the stack's own admin user (``admin_password``)."""
        if tls is not None and admin_password is None:
            raise ValueError("a TLS redis-server needs admin_password (its default user is off)")
        self._tls = tls
        self._acl_users = dict(acl_users or {})
        self._admin_password = admin_password
        self._work_dir = Path(work_dir).resolve()
        self._appendonly = appendonly
        self._log = log
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._atexit_registered = False

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("LocalRedis is not started")
        scheme = "rediss" if self._tls is not None else "redis"
        return f"{scheme}://{LOOPBACK}:{self._port}/0"

    def admin_client(self, timeout_s: float = 1.0) -> redis.Redis:
        """A client of the stack itself (readiness, flushes); on a TLS server, its admin user."""
        if self._port is None:
            raise RuntimeError("LocalRedis is not started")
        if self._tls is None:
            return redis.Redis(host=LOOPBACK, port=self._port, socket_timeout=timeout_s)
        return redis.Redis(
            host=LOOPBACK,
            port=self._port,
            socket_timeout=timeout_s,
            ssl=True,
            ssl_ca_certs=str(self._tls.ca_cert),
            username=REDIS_ADMIN,
            password=self._admin_password,
        )

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self._work_dir / "redis.log"

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the server; the port is picked once and kept, so restart() is seen by clients
        as the same server coming back."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("LocalRedis is already started")
        started = time.monotonic()
        binary = redis_server_binary()
        self._work_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port()
        conf = self._work_dir / "redis.conf"
        conf.touch(mode=0o600)  # holds the ACL users' passwords on a secured server
        conf.write_text(self._config(self._port))
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True
        self._proc = start_process(
            [binary, str(conf)],
            log_path=self._work_dir / "stdout.log",
            pid_path=self._work_dir / "redis-server.pid",
            cwd=self._work_dir,
        )
        client = self.admin_client()
        try:
            # PING answers LOADING (an error) until the AOF is replayed, so success here
            # means the data is back too.
            wait_until(
                lambda: bool(client.ping()),
                what=f"redis-server on port {self._port}",
                timeout_s=timeout_s,
                procs=[self._proc],
                logs=[self._work_dir / "stdout.log", self.log_path],
                interval_s=0.05,
            )
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()
        self._log(f"redis-server ready at {self.url} in {time.monotonic() - started:.1f} s")

    def stop(self) -> None:
        """SIGTERM makes redis-server run SHUTDOWN (final AOF fsync); SIGKILL only if it hangs."""
        proc, self._proc = self._proc, None
        stop_process(proc, timeout_s=_STOP_TIMEOUT_S, pid_path=self._work_dir / "redis-server.pid")

    def restart(self, timeout_s: float = 20.0) -> None:
        """Same port, same dir: the data comes back from the AOF, as after a server reboot."""
        self.stop()
        self.start(timeout_s)

    def __enter__(self) -> LocalRedis:
        if self.pid is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stop_at_exit(self) -> None:
        # A forked child inherits the atexit hook but not the server.
        if os.getpid() == self._owner_pid:
            self.stop()

    def _listener_lines(self, port: int) -> list[str]:
        if self._tls is None:
            return [f"port {port}"]
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {self._tls.server_cert}",
            f"tls-key-file {self._tls.server_key}",
            f"tls-ca-cert-file {self._tls.ca_cert}",
            "tls-auth-clients optional",
            'tls-protocols "TLSv1.2 TLSv1.3"',
        ]

    def _config(self, port: int) -> str:
        lines = [
            f"bind {LOOPBACK}",
            *self._listener_lines(port),
            "protected-mode yes",
            "daemonize no",
            f'dir "{self._work_dir}"',
            f'logfile "{self.log_path}"',
            "loglevel notice",
            'save ""',
            "maxmemory-policy noeviction",
            "databases 16",
        ]
        if self._tls is not None:
            assert self._admin_password is not None
            lines += ["user default off", f"user {REDIS_ADMIN} on >{self._admin_password} ~* &* +@all"]
            lines += [f"user {name} {rules} >{pw}" for name, (pw, rules) in self._acl_users.items()]
        if self._appendonly:
            lines += ["appendonly yes", "appendfsync everysec"]
        else:
            lines += ["appendonly no"]
        return "\n".join(lines) + "\n"
