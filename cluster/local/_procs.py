"""Process plumbing shared by the local Kafka and Redis provisioners.

The services run as real child processes of the test or dev session. Each one gets its own
process group so a Ctrl-C aimed at pytest does not reach the broker before we can shut it down
in order, and so that anything it forks can be cleaned up with it. Processes are only ever
signalled through the pid we recorded when we started them: other sessions (other clones, CI
jobs, a developer's own broker) may run the same binaries on this machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Ask the kernel for distinct unused ports.

    All sockets stay bound until every port is picked, so one call never returns the same port
    twice (Kafka needs two per node). There is still a small window before the service binds;
    fixed ports would be worse, since parallel sessions would collide every time.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = LOOPBACK) -> int:
    """Single-port convenience wrapper around free_ports."""
    return free_ports(1, host)[0]


def port_open(port: int, host: str = LOOPBACK, timeout_s: float = 0.5) -> bool:
    """Cheap pre-check before a protocol-level probe, to keep client libraries from logging
    connection-refused noise while a service is still booting."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def start_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    pid_path: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a service detached into its own session and process group.

    stdout/stderr go to a file rather than a pipe: a pipe nobody drains eventually blocks a
    chatty JVM. The pid file lets a human (or a later session) find a leftover process by pid
    after a hard crash of the Python side, when no atexit hook ran.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(cwd) if cwd is not None else None,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    if pid_path is not None:
        pid_path.write_text(f"{proc.pid}\n")
    return proc


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(pid: int) -> bool:
    """Exit check that leaves the child unreaped (WNOWAIT).

    While the zombie exists its pid, and so the process-group id, cannot be handed to another
    process; that is what makes the group-wide SIGKILL below safe.
    """
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def stop_processes(
    procs: Sequence[subprocess.Popen[bytes]],
    *,
    timeout_s: float = 20.0,
) -> None:
    """SIGTERM each recorded pid, then SIGKILL the process groups still there at the deadline.

    SIGTERM goes to the main pid only, because that is what triggers the service's own orderly
    shutdown (Kafka's controlled shutdown, Redis' final AOF fsync). All processes get it at
    once: a KRaft broker's controlled shutdown needs a controller quorum, so stopping the nodes
    of a cluster one after another would leave the last ones waiting for a quorum that is gone.
    The SIGKILL hits the whole group, which was created for this process alone (its pgid is its
    pid), so helper children such as a Redis AOF-rewrite fork do not outlive it. Groups are only
    signalled while their leader is unreaped; once Popen has reaped it, the number may belong to
    someone else.
    """
    live = [p for p in procs if p.returncode is None]
    for proc in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(_exited(p.pid) for p in live):
        time.sleep(0.05)
    for proc in live:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def stop_process(
    proc: subprocess.Popen[bytes] | None,
    *,
    timeout_s: float = 20.0,
    pid_path: Path | None = None,
) -> None:
    """Single-process form of stop_processes that also removes the pid file."""
    if proc is not None:
        stop_processes([proc], timeout_s=timeout_s)
    if pid_path is not None:
        with contextlib.suppress(FileNotFoundError):
            pid_path.unlink()


def kill_process(proc: subprocess.Popen[bytes] | None, *, pid_path: Path | None = None) -> None:
    """Simulate a crash: no shutdown hooks, no flush, the whole group dies at once."""
    if proc is None:
        return
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    if pid_path is not None:
        with contextlib.suppress(FileNotFoundError):
            pid_path.unlink()


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists and is not a zombie.

    Used by tests to prove a stop really happened; signal 0 alone would also report zombies.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state field follows the parenthesised command name, which may itself contain spaces.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def log_tail(*paths: Path, lines: int = 60) -> str:
    """Last lines of each log, so a startup failure explains itself in the exception text
    instead of sending someone to dig through a temporary directory that may be gone."""
    chunks: list[str] = []
    for path in paths:
        if not path.exists():
            continue
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                text = f.read().decode("utf-8", errors="replace")
        except OSError as exc:
            chunks.append(f"--- {path}: unreadable ({exc})")
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        chunks.append(f"--- last {lines} lines of {path}:\n{tail}")
    return "\n".join(chunks)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float,
    procs: Sequence[subprocess.Popen[bytes]] = (),
    logs: Sequence[Path] = (),
    interval_s: float = 0.25,
) -> None:
    """Poll `ready` until it holds, failing fast if a watched process dies.

    Without the liveness check a broker that exits on a bad config would only be noticed at
    the deadline, a minute later and with a less useful message.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        for proc in procs:
            code = proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"{what}: process {proc.pid} exited with code {code} before it was ready\n"
                    + log_tail(*logs)
                )
        try:
            if ready():
                return
        except Exception as exc:  # a probe may fail in many ways while the service boots
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last probe error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s{detail}\n" + log_tail(*logs))
        time.sleep(interval_s)
