"""The driver's HTTP endpoint: ``/metrics`` (Prometheus text format), ``/healthz`` and ``/status`` (JSON).

One endpoint per app, served by the ``clickcash run`` driver: the actors keep their counters and the
driver's monitor (:mod:`clickcash.cluster.observability.monitor`) polls them and hands each poll's families
here. A scrape never
reaches an actor, so a slow or dead actor cannot make Prometheus time out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from clickcash.cluster.observability.metric_defs import Family

log = logging.getLogger(__name__)


def to_prometheus(families: Sequence[Family]) -> list[Metric]:
    out: list[Metric] = []
    for fam in families:
        d = fam.d
        labels = list(d.labels)
        metric: Metric
        if d.kind == "counter":
            metric = CounterMetricFamily(d.name.removesuffix("_total"), d.help, labels=labels)
            for s in fam.samples:
                metric.add_metric([s.labels[name] for name in labels], s.value)
        elif d.kind == "gauge":
            metric = GaugeMetricFamily(d.name, d.help, labels=labels)
            for s in fam.samples:
                metric.add_metric([s.labels[name] for name in labels], s.value)
        else:
            hist = HistogramMetricFamily(d.name, d.help, labels=labels)
            for hs in fam.histograms:
                h = hs.histogram
                les = [*(f"{b:g}" for b in h.bounds_s), "+Inf"]
                hist.add_metric(
                    [hs.labels[name] for name in labels], list(zip(les, h.cumulative(), strict=True)), h.sum_s
                )
            metric = hist
        out.append(metric)
    return out


class _Latest:
    """A registry collector that returns whatever the monitor published last."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


class MetricsServer:
    """Serves the latest published families, health and status until :meth:`close`."""

    def __init__(self, host: str, port: int) -> None:
        self._latest = _Latest()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._latest)
        self._lock = threading.Lock()
        self._health: dict[str, Any] = {"healthy": False, "reason": "starting"}
        self._status: dict[str, Any] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(server._registry))
                elif path == "/healthz":
                    health = server.health()
                    self._send(200 if health["healthy"] else 503, "application/json", orjson.dumps(health))
                elif path == "/status":
                    self._send(200, "application/json", orjson.dumps(server.status()))
                else:
                    self._send(404, "text/plain", b"not found: try /metrics, /healthz or /status\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Scrapes are not worth a log line each."""

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="clickcash-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def publish(self, families: Sequence[Family], health: dict[str, Any], status: dict[str, Any]) -> None:
        metrics = to_prometheus(families)
        with self._lock:
            self._latest.metrics = metrics
            self._health = health
            self._status = status

    def health(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._health)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._status)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
