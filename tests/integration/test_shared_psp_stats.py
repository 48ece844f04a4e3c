"""The domain engines end to end on real Kafka, Redis and Ray: evidence one shard sees steers them all."""

from __future__ import annotations

import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from tests.integration._harness import (
    SettingsFactory,
    declined,
    event,
    order,
    produce,
    read_outputs,
    running_app,
    wait_for_drain,
)


def test_gateway_errors_on_one_psp_reroute_every_shards_traffic(make_settings: SettingsFactory) -> None:
    """PSP outcomes are shared through Redis: the shards that saw the errors are not the only ones that
    stop sending authorizations to the failing PSP (its breaker opens for everyone)."""
    settings = make_settings(
        partitions=2,
        pipeline={"shards": 3, "psp_stats_refresh_ms": 0},
        monitoring={"metrics_host": "127.0.0.1", "metrics_port": 0},
    )
    customers = [f"c{i}" for i in range(40)]
    produce(
        settings, [(c.encode(), event(f"a-{c}", "order.placed", c, order(f"oa-{c}", c))) for c in customers]
    )
    with running_app(settings) as app:
        wait_for_drain(settings, app)
        monitor = app.monitor(control=False)
        try:
            monitor.poll_once()
            assert set(_breaker_gauges(monitor.metrics_url).values()) == {0.0}
        finally:
            monitor.close()
        errors = [
            (
                c.encode(),
                event(f"d-{c}", "payment.declined", c, declined(f"oa-{c}", c, "gateway_error", "adyen")),
            )
            for c in customers[:20]
        ]
        produce(settings, errors)
        wait_for_drain(settings, app)
        # the breaker gauge shows the live state of the shared counters: adyen's breaker is open now
        monitor = app.monitor(control=False)
        try:
            monitor.poll_once()
            gauges = _breaker_gauges(monitor.metrics_url)
        finally:
            monitor.close()
        assert gauges["adyen"] == 1.0
        assert {psp for psp, v in gauges.items() if v} == {"adyen"}
        later = [
            (c.encode(), event(f"b-{c}", "order.placed", c, order(f"ob-{c}", c))) for c in customers[20:]
        ]
        produce(settings, later)
        wait_for_drain(settings, app)
        shards_busy = [s for s in app.shard_stats() if s["totals"].get("processed", 0) > 0]
    assert len(shards_busy) == 3
    outputs = read_outputs(settings, idle_s=2.0)
    routes = {
        o.causationid: o.event["data"]
        for o in outputs
        if o.type == "payment.route_decided" and o.event is not None
    }
    before = Counter(routes[f"a-{c}"]["psp"] for c in customers)
    assert before.most_common(1)[0][0] == "adyen", f"adyen should lead on fee and approval: {before}"
    after = [routes[f"b-{c}"] for c in customers[20:]]
    assert all(r["psp"] != "adyen" for r in after), Counter(r["psp"] for r in after)
    assert all("breaker_open" in [x["code"] for x in r["reasons"]] for r in after)
    assert all(r["fallbacks"][-1] == "adyen" for r in after)


def _breaker_gauges(url: str | None) -> dict[str, float]:
    assert url is not None
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {
        s.labels["psp"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "clickcash_psp_breaker_open"
    }
