"""The Grafana dashboard in cluster/ imports cleanly and only queries metrics clickcash exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from clickcash.cluster.observability.metric_defs import METRICS, exported_names

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bclickcash_[a-z0-9_]+")
FUNCTIONS_OVER_COUNTERS = ("rate", "increase", "irate")


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _targets(dash: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_has_what_grafana_needs_to_import_it() -> None:
    dash = _dashboard()
    assert dash["uid"] and dash["title"]
    assert isinstance(dash["schemaVersion"], int)
    assert "id" not in dash or dash["id"] is None, "an id would clash on import; uid identifies it"
    ids = [p["id"] for p in dash["panels"]]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        g = p["gridPos"]
        assert {"x", "y", "w", "h"} <= set(g) and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        assert p["type"] in {"row", "timeseries", "stat"}
        if p["type"] != "row":
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), p["title"]


def test_every_panel_uses_the_datasource_variable() -> None:
    dash = _dashboard()
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p, t in _targets(dash):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert t["datasource"]["uid"] == "${datasource}"
    assert variables["instance"]["datasource"]["uid"] == "${datasource}"


def test_queries_use_only_exported_metric_names_correctly() -> None:
    dash = _dashboard()
    exported = exported_names()
    used: set[str] = set()
    queries = [t["expr"] for _, t in _targets(dash)]
    queries.append(next(v for v in dash["templating"]["list"] if v["name"] == "instance")["definition"])
    for expr in queries:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        assert expr.count("[") == expr.count("]"), expr
        for name in METRIC_NAME.findall(expr):
            assert name in exported, f"{name} is not exported ({expr})"
            used.add(name)
        for fn in FUNCTIONS_OVER_COUNTERS:
            for arg in re.findall(rf"\b{fn}\((clickcash_[a-z0-9_]+)", expr):
                assert arg.endswith(("_total", "_bucket")), f"{fn}() over a gauge: {expr}"
        if "histogram_quantile" in expr:
            assert "_bucket" in expr and "by (le" in expr, expr
    # the panels operators need: throughput, lag, latency, DLQ, shards, plus PSPs, dunning and stalls
    for needed in (
        "clickcash_events_in_total",
        "clickcash_records_produced_total",
        "clickcash_consumer_lag_records",
        "clickcash_end_to_end_latency_seconds_bucket",
        "clickcash_dead_letters_total",
        "clickcash_shard_queue_depth",
        "clickcash_shard_batch_seconds_bucket",
        "clickcash_psp_decisions_total",
        "clickcash_psp_breaker_open",
        "clickcash_dunning_steps_fired_total",
        "clickcash_partition_stalled",
        "clickcash_shard_stalled",
        "clickcash_held_customers",
    ):
        assert needed in used, needed
    assert {n.removesuffix("_bucket") for n in used if n.endswith("_bucket")} <= set(METRICS)


def test_held_customers_are_shown_by_reason() -> None:
    """Parked (a failure) and paused (a campaign) customers are told apart on one panel."""
    held = [(p, t) for p, t in _targets(_dashboard()) if "clickcash_held_customers" in t["expr"]]
    assert held, "no panel shows clickcash_held_customers"
    assert any("by (reason)" in t["expr"] and "{{reason}}" in t.get("legendFormat", "") for _, t in held)
    assert "reason" in METRICS["clickcash_held_customers"].labels
