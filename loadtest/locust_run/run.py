"""One load-test run: Locust and the monitor as processes, progress lines, then the report folder.

``clickcash loadtest`` (``loadtest/locust_run/cli.py``) resolves the settings, optionally starts the app, and
calls
:func:`run_loadtest`; the integration test calls it directly with its own settings and app.

The report folder gets: Locust's ``locust_report.html`` (with the plot and the summary added at the end) and
``locust_*.csv``; ``plot.png``; ``summary.md`` and ``summary.json`` (the numbers); ``timeline.csv`` (per
second: target/input/processed/output rate, lag, p50/p99); ``run.json``, ``run_info.json``; the processes'
logs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from clickcash.config.settings import Settings
from clickcash.errors import ClickcashError
from clickcash.loadtest.analysis.report import (
    LOCUST_CSV_PREFIX,
    LOCUST_HTML,
    PLOT_FILE,
    SUMMARY_TEXT_FILE,
    inject_into_locust_html,
    locust_totals,
    plot,
    render_summary,
)
from clickcash.loadtest.analysis.summary import phase_at
from clickcash.loadtest.locust_run._spec import (
    LOCUST_TOTALS_FILE,
    RUN_INFO_FILE,
    STATUS_FILE,
    STOP_FILE,
    SUMMARY_FILE,
    TIMELINE_FILE,
    RunSpec,
    read_json,
    write_json_atomic,
)
from clickcash.loadtest.locust_run.options import SHAPE_OPTIONS, TRAFFIC_OPTIONS, forward_args, shape_params
from clickcash.loadtest.traffic.shapes import RateSchedule

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass
class RunResult:
    folder: Path
    summary: dict[str, Any]
    ok: bool


class _Proc:
    """A child process whose output goes to a log file in the report folder; stopped by its pid."""

    def __init__(self, name: str, argv: list[str], folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.p = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=os.getcwd())

    def running(self) -> bool:
        return self.p.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.p.pid, sig)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.running():
            self.signal(signal.SIGTERM)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.p.wait(5)
        self._log.close()
        return self.p.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def kafka_overrides(settings: Settings) -> dict[str, Any]:
    """The non-secret Kafka settings the run's processes need (secrets reach them by the environment)."""
    k = settings.kafka
    return {
        "bootstrap_servers": k.bootstrap_servers,
        "input_topic": k.input_topic,
        "orders_topic": k.orders_topic,
        "payments_topic": k.payments_topic,
        "dunning_topic": k.dunning_topic,
        "dlq_topic": k.dlq_topic,
        "group_id": k.group_id,
    }


def _progress(status: dict[str, Any] | None, info: dict[str, Any] | None, schedule: RateSchedule) -> str:
    if not status:
        return "  waiting for the monitor ..."
    t = time.time() - float(info["t0"]) if info and info.get("t0") else None
    phase = "starting" if t is None else phase_at(schedule.phases(), t)
    target = None if t is None else schedule.rate_at(t)
    lat = status.get("latency_ms_5s") or {}
    lag = status.get("lag")
    parts = [
        f"  t={t:5.0f}s" if t is not None else "  t=    -",
        f"{phase:<9}",
        f"target {target:7,.0f}/s" if target is not None else "target       -  ",
        f"in {status['input_rate']:7,.0f}/s",
        f"out {status['output_rate']:7,.0f}/s",
        f"lag {lag:8,}" if lag is not None else "lag        ?",
        f"p50 {lat['p50']:7,.0f} ms  p99 {lat['p99']:7,.0f} ms" if lat.get("count") else "latency -",
    ]
    return "  ".join(parts)


def locust_command(ns: Any, spec: RunSpec, folder: Path) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--csv",
        str(folder / LOCUST_CSV_PREFIX),
        "--csv-full-history",
        "--html",
        str(folder / LOCUST_HTML),
        "--run-id",
        spec.run_id,
        "--run-info",
        str(folder / RUN_INFO_FILE),
        "--kafka-bootstrap",
        spec.kafka["bootstrap_servers"],
        "--input-topic",
        spec.kafka["input_topic"],
        *forward_args(ns, SHAPE_OPTIONS + TRAFFIC_OPTIONS),
    ]
    if getattr(ns, "web", False):
        # the run ends when the shape does: run_loadtest then stops Locust with SIGINT (it saves its report)
        argv += ["--web-port", str(ns.web_port)]
    else:
        argv += ["--headless", "--only-summary"]
    if getattr(ns, "expect_workers", 0):
        argv += ["--master", "--expect-workers", str(ns.expect_workers)]
    elif getattr(ns, "processes", 1) and ns.processes > 1:
        argv += ["--processes", str(ns.processes)]
    return argv


def run_loadtest(
    ns: Any,
    settings: Settings,
    folder: Path,
    *,
    run_id: str,
    tick: Callable[[], None] | None = None,
    log: Callable[[str], None] = print,
    verify_counts: bool = True,
) -> RunResult:
    """Run the load described by ``ns`` (the loadtest options) against ``settings``' topics; ``tick`` is
    called about every half second while waiting (the caller supervises its app there)."""
    folder.mkdir(parents=True, exist_ok=True)
    schedule = shape_params(ns).schedule()
    spec = RunSpec(
        run_id=run_id,
        kafka=kafka_overrides(settings),
        schedule=schedule.to_dict(),
        drain_timeout_s=float(getattr(ns, "drain_timeout", 120.0)),
        extra={
            "options": {
                k: v
                for k, v in vars(ns).items()
                if not k.startswith("_") and isinstance(v, str | int | float | bool | None)
            }
        },
    )
    spec.save(folder)
    for stale in (STOP_FILE, STATUS_FILE, RUN_INFO_FILE, SUMMARY_FILE, LOCUST_TOTALS_FILE):
        (folder / stale).unlink(missing_ok=True)

    def wait(seconds: float) -> None:
        if tick is not None:
            tick()
        else:
            time.sleep(seconds)

    procs: list[_Proc] = []
    try:
        monitor = _Proc(
            "monitor", [sys.executable, "-m", "clickcash.loadtest.locust_run.monitor", str(folder)], folder
        )
        procs.append(monitor)
        deadline = time.monotonic() + 60
        while (read_json(folder / STATUS_FILE) or {}).get("state") != "ready":
            if not monitor.running() or time.monotonic() > deadline:
                raise ClickcashError(f"the monitor did not start:\n{monitor.tail()}")
            time.sleep(0.2)
        psp: _Proc | None = None
        if getattr(ns, "closed_loop", False):
            psp = _Proc(
                "psp_sim", [sys.executable, "-m", "clickcash.loadtest.traffic.psp_sim", str(folder)], folder
            )
            procs.append(psp)
        locust = _Proc("locust", locust_command(ns, spec, folder), folder)
        procs.append(locust)
        log(
            f"load test {run_id}: {schedule.kind}, peak {schedule.peak_rate:,.0f} events/s, "
            f"{schedule.duration_s:.0f} s of load into {settings.kafka.input_topic} "
            f"(group {settings.kafka.group_id}); report in {folder}"
        )
        if getattr(ns, "web", False):
            log(f"  Locust web UI: http://127.0.0.1:{ns.web_port} (start the test there)")
        next_line = time.monotonic() + 5
        interrupted = False
        web_stopped = False
        while locust.running():
            try:
                wait(0.5)
                if time.monotonic() >= next_line:
                    next_line += 5
                    info = read_json(folder / RUN_INFO_FILE)
                    log(_progress(read_json(folder / STATUS_FILE), info, schedule))
                    ended = (info or {}).get("ended_at")
                    if getattr(ns, "web", False) and ended and not web_stopped and time.time() - ended > 3:
                        log("  the shape has ended: stopping the Locust web UI")
                        locust.signal(signal.SIGINT)
                        web_stopped = True
                if not monitor.running():
                    raise ClickcashError(f"the monitor stopped:\n{monitor.tail()}")
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                log("  interrupted: stopping the load, then reporting (Ctrl-C again to abandon)")
                locust.signal(signal.SIGINT)
        if locust.p.returncode not in (0, None):
            log(f"  locust exited with {locust.p.returncode}:\n{locust.tail()}")
        if psp is not None:
            log("  load done: the simulated PSPs answer what is in flight ...")
            psp.stop(timeout_s=60)
        (folder / STOP_FILE).touch()
        log("  load done: waiting for the pipeline to drain ...")
        deadline = time.monotonic() + spec.drain_timeout_s + 120
        next_line = time.monotonic() + 5
        while monitor.running() and time.monotonic() < deadline:
            wait(0.5)
            if time.monotonic() >= next_line:
                next_line += 5
                status = read_json(folder / STATUS_FILE) or {}
                log(
                    f"  draining: lag {status.get('lag')}, orders without a decision "
                    f"{status.get('undecided_orders', '?'):,}"
                )
        if monitor.stop(timeout_s=30) != 0:
            raise ClickcashError(f"the monitor failed:\n{monitor.tail()}")
    finally:
        for p in reversed(procs):
            p.stop()
    summary = read_json(folder / SUMMARY_FILE)
    if summary is None:
        raise ClickcashError(f"no summary was written to {folder}")
    return _finish(summary, settings, folder, verify_counts=verify_counts, log=log)


def _finish(
    summary: dict[str, Any],
    settings: Settings,
    folder: Path,
    *,
    verify_counts: bool,
    log: Callable[[str], None],
) -> RunResult:
    from clickcash.loadtest.analysis.verify import verify
    from clickcash.loadtest.locust_run.monitor import read_timeline

    totals = read_json(folder / LOCUST_TOTALS_FILE) or locust_totals(folder / LOCUST_CSV_PREFIX)
    if totals is not None:
        summary["locust"] = totals
    if verify_counts:
        log("  recounting the topics independently ...")
        summary["verification"] = verify(settings, summary)
    rows = read_timeline(folder / TIMELINE_FILE)
    png = plot(rows, summary, folder / PLOT_FILE)
    if png is None:
        log("  (matplotlib is not installed: no plot)")
    text = render_summary(summary)
    (folder / SUMMARY_TEXT_FILE).write_text(text)
    write_json_atomic(folder / SUMMARY_FILE, summary)
    inject_into_locust_html(folder / LOCUST_HTML, text, png)
    checks = summary["checks"]
    ok = (
        checks["lost_orders"] == 0
        and checks["duplicate_outputs"] == 0
        and checks["malformed_without_dead_letter"] == 0
        and bool(summary.get("drained"))
        and summary.get("verification", {}).get("matches", True)
    )
    log("")
    log(text)
    log(f"report: {folder / LOCUST_HTML}  plot: {folder / PLOT_FILE}  numbers: {folder / SUMMARY_FILE}")
    return RunResult(folder, summary, ok)
