"""What the processes of one load-test run share: the run file in the report folder, and its file names."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clickcash.config.settings import Settings, load_settings

RUN_FILE = "run.json"
RUN_INFO_FILE = "run_info.json"
"""written by the Locust shape (master): when the shape started (t0) and ended"""
STATUS_FILE = "status.json"
"""written every second by the monitor, read by ``clickcash loadtest`` for its progress lines"""
STOP_FILE = "stop"
"""created by ``clickcash loadtest`` when the load has ended: the monitor drains, summarises and exits"""
LOCUST_TOTALS_FILE = "locust_totals.json"
"""Locust's final request and failure counts (written by the locustfile at exit)"""
SUMMARY_FILE = "summary.json"
TIMELINE_FILE = "timeline.csv"
KIND_HEADER = "loadtest-kind"
"""Kafka header on every generated input: its generator kind (event type, 'duplicate' or 'malformed')"""


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    kafka: dict[str, Any]
    """non-secret Kafka settings overrides (bootstrap servers, topics, group id); secrets stay in the
    environment, which the run's processes inherit"""
    schedule: dict[str, Any]
    drain_timeout_s: float = 120.0
    idle_s: float = 3.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key_prefix(self) -> bytes:
        return f"{self.run_id}-".encode()

    def settings(self) -> Settings:
        return load_settings(kafka=self.kafka)

    def save(self, folder: Path) -> Path:
        path = folder / RUN_FILE
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        return cls(**json.loads(path.read_text()))


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
