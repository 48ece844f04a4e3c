"""The app's own log records (routers', shards' and the driver's JSON lines) kept in a file, off the console.

``clickcash demo`` and ``clickcash loadtest --with-app`` print progress and a report for a person; the app's
records (dead-letter warnings above all: the demo sends malformed records on purpose) would interleave with
it, prefixed by Ray with each actor's pid. So those commands start Ray with ``log_to_driver=False``, point the
driver's own logging at a file, copy the Ray workers' JSON records into the same file when the run ends, and
print the file's path with the warnings and errors counted by message.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from clickcash.logs import JsonFormatter


@dataclass
class LogSummary:
    lines: int = 0
    by_level: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    """warning and error records by message kind (the message up to its first colon or digit)"""

    def render(self, path: Path) -> str:
        problems = self.by_level["WARNING"] + self.by_level["ERROR"] + self.by_level["CRITICAL"]
        head = f"app log: {path} ({self.lines:,} records, {problems:,} warnings or errors)"
        if not self.warnings:
            return head
        kinds = ", ".join(f"{kind} x{n:,}" for kind, n in self.warnings.most_common(8))
        return f"{head}: {kinds}"


def message_kind(msg: str, logger: str = "") -> str:
    """What a message is about, without its variable part: ``dead letter: not_utf8`` -> ``dead letter``;
    librdkafka's lines (``GETPID [thrd:main]: ...``) by their facility: ``librdkafka GETPID``."""
    if logger == "librdkafka":
        return f"librdkafka {(msg.split() or ['?'])[0]}"
    head = msg.split(":", 1)[0]
    words = [w for w in head.split() if not any(c.isdigit() for c in w)]
    return " ".join(words[:8]) or "(empty)"


def summarise(lines: Iterable[str]) -> LogSummary:
    """Count the JSON records among ``lines`` (others are skipped: Ray's own lines in its worker logs)."""
    out = LogSummary()
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or "level" not in rec or "msg" not in rec:
            continue
        out.lines += 1
        level = str(rec["level"])
        out.by_level[level] += 1
        if level in ("WARNING", "ERROR", "CRITICAL"):
            out.warnings[message_kind(str(rec["msg"]), str(rec.get("logger", "")))] += 1
    return out


class AppLog:
    """One run's app log file; :meth:`capture_driver` at start, :meth:`finish` before Ray shuts down."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handler: logging.Handler | None = None
        self._saved: list[logging.Handler] = []

    def capture_driver(self) -> None:
        """Send this process's log records to the file (JSON) instead of the console."""
        root = logging.getLogger()
        self._saved = list(root.handlers)
        for h in self._saved:
            root.removeHandler(h)
        self._handler = logging.FileHandler(self.path, encoding="utf-8")
        self._handler.setFormatter(JsonFormatter())
        root.addHandler(self._handler)

    def finish(self) -> LogSummary:
        """Append the Ray workers' JSON records (call while Ray is up) and give the file's summary."""
        root = logging.getLogger()
        if self._handler is not None:
            root.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
            for h in self._saved:
                root.addHandler(h)
        logs_dir = _ray_logs_dir()
        if logs_dir is not None:
            with self.path.open("a", encoding="utf-8") as out:
                for f in sorted(logs_dir.glob("worker-*.err")) + sorted(logs_dir.glob("worker-*.out")):
                    try:
                        text = f.read_text(encoding="utf-8", errors="replace")
                    except OSError:
                        continue
                    out.writelines(line + "\n" for line in text.splitlines() if line.startswith("{"))
        try:
            return summarise(self.path.read_text(encoding="utf-8", errors="replace").splitlines())
        except OSError:
            return LogSummary()


def _ray_logs_dir() -> Path | None:
    """The local Ray session's log folder, while this process runs a local Ray; else None."""
    import ray

    if not ray.is_initialized():
        return None
    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(node, "_global_node", None)
    get = getattr(node, "get_logs_dir_path", None)
    if get is None:
        return None
    path = Path(get())
    return path if path.is_dir() else None
