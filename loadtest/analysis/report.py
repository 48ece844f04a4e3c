"""The report folder's human parts: the plot, the text summary, and both injected into Locust's HTML report.

``render_summary`` is pure; ``plot`` needs matplotlib (imported lazily: without it the report has no PNG).
"""

from __future__ import annotations

import base64
import csv
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clickcash.loadtest.analysis.summary import SUSTAINED_WINDOW_S, TimelineRow
from clickcash.loadtest.traffic.campaign import decisions_line

PLOT_FILE = "plot.png"
SUMMARY_TEXT_FILE = "summary.md"
LOCUST_HTML = "locust_report.html"
LOCUST_CSV_PREFIX = "locust"
_PHASE_COLOURS = ["#dbe9f6", "#fde2c8", "#f8c9c4", "#fde2c8", "#dbe9f6", "#e6e6e6"]


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as Markdown (also printed by ``clickcash loadtest``)."""
    rates, lag, checks = summary["rates"], summary.get("lag") or {}, summary["checks"]
    w = SUSTAINED_WINDOW_S
    lines = [
        f"# clickcash load test {summary['run_id']}",
        "",
        f"shape: {summary['shape']['kind']}, "
        + ", ".join(f"{p['name']} {p['start_s']:.0f}-{p['end_s']:.0f} s" for p in summary["phases"]),
        "",
        decisions_line(summary.get("mix"), summary["outputs"]["by_type"]),
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| peak target rate | {_fmt(rates['peak_target'], ' events/s')} |",
        f"| peak sustained input rate ({w} s) | {_fmt(rates[f'peak_sustained_input_{w}s'], ' events/s')} |",
        f"| peak sustained processed rate ({w} s, committed offsets) | "
        f"{_fmt(rates[f'peak_sustained_processed_{w}s'], ' events/s')} |",
        f"| peak sustained output rate ({w} s) | "
        f"{_fmt(rates[f'peak_sustained_output_{w}s'], ' outputs/s')} |",
        f"| inputs sent (target {summary['target_events']:,}) | {summary['inputs']['total']:,} |",
        f"| outputs | {summary['outputs']['total']:,} |",
        f"| peak consumer lag | {_fmt(lag.get('peak_lag'))} records at {_fmt(lag.get('peak_at_s'), ' s')} |",
        f"| seconds to drain it (lag <= {_fmt(lag.get('threshold'))}) from the peak lag | "
        f"{_fmt(lag.get('seconds_to_drain'), ' s')} |",
        f"| ... from the end of the peak-rate phase | {_fmt(lag.get('drained_after_load_peak_s'), ' s')} |",
        f"| lost orders (no decision) | {checks['lost_orders']:,} of {checks['orders']:,} |",
        f"| duplicate outputs (same id twice) | {checks['duplicate_outputs']:,} |",
        f"| malformed inputs without dead letter | {checks['malformed_without_dead_letter']:,} |",
        f"| outputs without a matching input | {checks['unmatched_outputs']:,} |",
    ]
    if "locust" in summary:
        lo = summary["locust"]
        lines.append(f"| delivered per Locust (failures) | {lo['requests']:,} ({lo['failures']:,}) |")
    lines += [
        "",
        "Latency send -> committed output visible (ms), by the phase the input was sent in:",
        "",
        "| phase | outputs | p50 | p95 | p99 | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by_phase = dict(summary["latency_ms"]["by_phase"])
    by_phase["all"] = summary["latency_ms"]["all"]
    app = summary["latency_ms"].get("app_generated") or {"count": 0}
    if app.get("count"):
        by_phase["(app timers: due -> output)"] = app
    for name, s in by_phase.items():
        lines.append(
            f"| {name} | {s.get('count', 0):,} | {_fmt(s.get('p50'))} | {_fmt(s.get('p95'))} | "
            f"{_fmt(s.get('p99'))} | {_fmt(s.get('max'))} |"
        )
    lines += [
        "",
        "inputs by kind: " + ", ".join(f"{k}={v:,}" for k, v in summary["inputs"]["by_kind"].items()),
        "",
        "inputs the app generated itself (timers) for the run's customers: "
        + (", ".join(f"{k}={v:,}" for k, v in summary["inputs"].get("app_generated", {}).items()) or "none"),
        "",
        "outputs by type: " + ", ".join(f"{k}={v:,}" for k, v in summary["outputs"]["by_type"].items()),
        "",
        "dead letters: "
        + (", ".join(f"{k}={v:,}" for k, v in summary["outputs"]["dead_letters_by_code"].items()) or "none"),
    ]
    if "verification" in summary:
        v = summary["verification"]
        lines += [
            "",
            "independent recount of the topics: "
            + ("matches" if v["matches"] else "DIFFERS: " + "; ".join(v["differences"])),
        ]
    return "\n".join(lines) + "\n"


def locust_totals(csv_prefix: Path) -> dict[str, int] | None:
    """Request and failure counts of Locust's Aggregated row (``<prefix>_stats.csv``)."""
    path = csv_prefix.with_name(csv_prefix.name + "_stats.csv")
    try:
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("Name") == "Aggregated":
                    return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"])}
    except OSError:
        return None
    return None


def plot(rows: Sequence[TimelineRow], summary: dict[str, Any], path: Path) -> Path | None:
    """Input/output rate, lag and p50/p99 latency over time with the phases shaded; None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return None
    t = [r.t for r in rows]
    fig, (ax_rate, ax_lag, ax_lat) = plt.subplots(3, 1, sharex=True, figsize=(11, 8.5), dpi=90)
    phases = list(summary["phases"])
    end = t[-1] + 1 if t else 0
    if phases and end > phases[-1]["end_s"]:
        phases.append({"name": "drain", "start_s": phases[-1]["end_s"], "end_s": end})
    for i, p in enumerate(phases):
        colour = _PHASE_COLOURS[i % len(_PHASE_COLOURS)] if p["name"] != "drain" else _PHASE_COLOURS[-1]
        for ax in (ax_rate, ax_lag, ax_lat):
            ax.axvspan(p["start_s"], p["end_s"], color=colour, alpha=0.6, lw=0)
        ax_rate.text(
            (p["start_s"] + p["end_s"]) / 2,
            1.01,
            p["name"],
            transform=ax_rate.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax_rate.plot(t, [r.target_rate for r in rows], "--", color="grey", lw=1, label="target input")
    ax_rate.plot(t, [r.input_rate for r in rows], color="tab:blue", lw=1.2, label="input sent")
    ax_rate.plot(
        t,
        [r.processed_rate for r in rows],
        color="tab:orange",
        lw=1.2,
        label="input processed (committed)",
    )
    ax_rate.plot(t, [r.output_rate for r in rows], color="tab:green", lw=1, alpha=0.8, label="outputs")
    ax_rate.set_ylabel("events/s")
    ax_rate.legend(loc="upper right", fontsize=8)
    ax_rate.grid(alpha=0.3)
    ax_lag.plot(t, [r.lag for r in rows], color="tab:red", lw=1.2, label="consumer lag")
    lag = summary.get("lag") or {}
    if lag.get("peak_lag") is not None:
        ax_lag.annotate(
            f"peak {lag['peak_lag']:,}",
            (lag["peak_at_s"], lag["peak_lag"]),
            fontsize=8,
            xytext=(5, -10),
            textcoords="offset points",
        )
        if lag.get("drained_at_s") is not None:
            ax_lag.axvline(lag["drained_at_s"], color="tab:red", ls=":", lw=1)
            ax_lag.annotate(
                f"drained after {lag['seconds_to_drain']:.0f} s",
                (lag["drained_at_s"], lag["peak_lag"] * 0.8),
                fontsize=8,
                xytext=(4, 0),
                textcoords="offset points",
            )
    ax_lag.set_ylabel("lag (records)")
    ax_lag.grid(alpha=0.3)
    ax_lat.plot(t, [r.p50_ms for r in rows], color="tab:purple", lw=1.2, label="p50")
    ax_lat.plot(t, [r.p99_ms for r in rows], color="black", lw=1, label="p99")
    ax_lat.set_yscale("log")
    ms = FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    ax_lat.yaxis.set_major_formatter(ms)
    ax_lat.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if str(v)[0] in "25" else ""))
    ax_lat.set_ylabel("send -> output (ms)")
    ax_lat.set_xlabel("seconds since the load started (latency by send time)")
    ax_lat.legend(loc="upper right", fontsize=8)
    ax_lat.grid(alpha=0.3, which="both")
    fig.suptitle(
        f"clickcash load test {summary['run_id']}: {summary['shape']['kind']}, "
        f"peak target {summary['rates']['peak_target']:,.0f} events/s",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def inject_into_locust_html(html_path: Path, summary_md: str, png: Path | None) -> bool:
    """Add the plot and the summary at the end of Locust's HTML report; False if there is no report."""
    try:
        page = html_path.read_text()
    except OSError:
        return False
    img = ""
    if png is not None and png.exists():
        data = base64.b64encode(png.read_bytes()).decode()
        img = (
            '<img alt="rates, lag and latency over time" style="max-width:100%" '
            f'src="data:image/png;base64,{data}">'
        )
    section = (
        '<section id="clickcash-loadtest" style="font-family:sans-serif;padding:16px 24px;'
        'background:#fff;color:#111">'
        "<h2>clickcash: end to end</h2>"
        f"{img}<pre style='white-space:pre-wrap;font-size:13px'>{html.escape(summary_md)}</pre></section>"
    )
    cut = page.rfind("</body>")
    page = page + section if cut < 0 else page[:cut] + section + page[cut:]
    html_path.write_text(page)
    return True
