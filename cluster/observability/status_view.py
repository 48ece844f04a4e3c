"""The status of a running app as one JSON-able dict, and its terminal rendering. Pure: no Ray or Kafka.

The driver's monitor builds the dict every poll (rates from the previous one), publishes it to the control
actor and ``/status``; ``clickcash status`` renders it. Everything here is a plain function of stats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clickcash.cluster.observability.metric_defs import PartitionLag
from clickcash.cluster.observability.watchdog import Stall


def _rate(cur: float, prev: float | None, elapsed_s: float) -> float | None:
    if prev is None or elapsed_s <= 0 or cur < prev:
        return None
    return (cur - prev) / elapsed_s


def build_status(
    *,
    at_s: float,
    routers: Sequence[Mapping[str, Any]],
    shards: Sequence[Mapping[str, Any]],
    partitions: Sequence[PartitionLag],
    stalls: Sequence[Stall],
    breakers_open: Sequence[str],
    router_restarts: int,
    meta: Mapping[str, Any],
    prev: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``at_s`` is wall-clock seconds; ``prev`` the previous status (for per-second rates)."""
    elapsed = at_s - float(prev["at"]) if prev else 0.0
    prev_routers = {r["router"]: r for r in prev["routers"]} if prev else {}
    prev_shards = {s["shard"]: s for s in prev["shards"]} if prev else {}
    prev_parts = {p["partition"]: p for p in prev["partitions"]} if prev else {}
    stalled = {(s.kind, s.id) for s in stalls}
    depth: dict[int, int] = {}
    age: dict[int, float] = {}
    for r in routers:
        for shard, n in (r.get("inflight_by_shard") or {}).items():
            depth[int(shard)] = depth.get(int(shard), 0) + int(n)
        for shard, a in (r.get("oldest_inflight_age_s") or {}).items():
            age[int(shard)] = max(age.get(int(shard), 0.0), float(a))
    router_rows = []
    for i, r in enumerate(routers):
        idx = int(r.get("router", i))
        up = not r.get("unavailable")
        consumed = int(r.get("consumed", 0))
        before = prev_routers.get(idx)
        router_rows.append(
            {
                "router": idx,
                "up": up,
                "running": bool(r.get("running")) and up,
                "consumed": consumed,
                "produced": int(r.get("produced", 0)),
                "transactions": int(r.get("transactions", 0)),
                "aborts": int(r.get("aborts", 0)),
                "inflight_rounds": int(r.get("inflight_rounds", 0)),
                "assigned": list(r.get("assigned", [])),
                "events_per_s": _rate(consumed, before["consumed"] if before else None, elapsed),
            }
        )
    shard_rows = []
    for i, s in enumerate(shards):
        idx = int(s.get("shard", i))
        events = int(s.get("events", 0))
        before = prev_shards.get(idx)
        shard_rows.append(
            {
                "shard": idx,
                "up": not s.get("unavailable"),
                "node": str(s.get("node") or (before or {}).get("node") or ""),
                "batches": int(s.get("batches", 0)),
                "events": events,
                "queue_depth": depth.get(idx, 0),
                "oldest_batch_age_s": round(age.get(idx, 0.0), 3),
                "events_per_s": _rate(events, before["events"] if before else None, elapsed),
                "stalled": ("shard", idx) in stalled,
            }
        )
    part_rows = []
    for p in partitions:
        before = prev_parts.get(p.partition)
        prev_committed = before["committed"] if before else None
        rate = None
        if p.committed is not None and prev_committed is not None:
            rate = _rate(p.committed, prev_committed, elapsed)
        part_rows.append(
            {
                "partition": p.partition,
                "committed": p.committed,
                "lag": p.lag,
                "events_per_s": rate,
                "stalled": ("partition", p.partition) in stalled,
            }
        )
    every_up = all(r["up"] for r in router_rows) and all(s["up"] for s in shard_rows)
    held: dict[str, int] = {}
    for r in routers:
        for reason, n in (r.get("held_customers") or {}).items():
            held[reason] = held.get(reason, 0) + int(n)
    return {
        "held_customers": held,
        **meta,
        "at": at_s,
        "healthy": not stalls and every_up,
        "stalls": [s.describe() for s in stalls],
        "breakers_open": sorted(breakers_open),
        "router_restarts": router_restarts,
        "routers": router_rows,
        "shards": shard_rows,
        "partitions": part_rows,
    }


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    return [line] + ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]


def render(status: Mapping[str, Any]) -> str:
    """A plain-text view that fits a terminal; ``clickcash status --watch`` redraws it in place."""
    if not status:
        return "no status published yet"
    health = "healthy" if status.get("healthy") else "UNHEALTHY"
    lines = [
        f"clickcash  namespace {status.get('namespace', '?')}  input {status.get('input_topic', '?')}  "
        f"group {status.get('group', '?')}  {health}",
        f"metrics {status.get('metrics_url') or '-'}  router restarts {status.get('router_restarts', 0)}  "
        f"breakers open: {', '.join(status.get('breakers_open') or []) or 'none'}",
    ]
    held = status.get("held_customers") or {}
    if any(held.values()):
        lines.append(
            f"held customers: {held.get('paused', 0)} paused (a campaign), {held.get('parked', 0)} parked (a "
            "failure); `clickcash parked list` shows them"
        )
    if status.get("stop_requested"):
        lines.append(f"stop requested: {status['stop_requested']}")
    lines += [f"STALL: {s}" for s in status.get("stalls") or []]
    lines.append("")
    lines += _table(
        ["router", "state", "events/s", "consumed", "produced", "txns", "in-flight", "partitions"],
        [
            [
                str(r["router"]),
                "running" if r["running"] else ("down" if not r["up"] else "stopped"),
                _num(r["events_per_s"]),
                _num(r["consumed"]),
                _num(r["produced"]),
                _num(r["transactions"]),
                str(r["inflight_rounds"]),
                ",".join(str(p) for p in r["assigned"]) or "-",
            ]
            for r in status.get("routers", [])
        ],
    )
    lines.append("")
    lines += _table(
        ["shard", "state", "node", "events/s", "events", "queue", "oldest s"],
        [
            [
                str(s["shard"]),
                "STALLED" if s["stalled"] else ("up" if s["up"] else "down"),
                (s["node"] or "-")[:12],
                _num(s["events_per_s"]),
                _num(s["events"]),
                str(s["queue_depth"]),
                _num(s["oldest_batch_age_s"], "{:.1f}"),
            ]
            for s in status.get("shards", [])
        ],
    )
    lines.append("")
    lines += _table(
        ["partition", "state", "events/s", "committed", "lag"],
        [
            [
                str(p["partition"]),
                "STALLED" if p["stalled"] else "ok",
                _num(p["events_per_s"]),
                _num(p["committed"]),
                _num(p["lag"]),
            ]
            for p in status.get("partitions", [])
        ],
    )
    return "\n".join(lines)
