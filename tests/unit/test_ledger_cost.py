"""``python -m clickcash.loadtest.contenders.ledger_cost``: the ledger's own work on the app's records."""

from __future__ import annotations

from clickcash.config.settings import load_settings
from clickcash.loadtest.contenders.ledger_cost import ledger_records, measure


def test_the_ledger_is_fed_inputs_and_their_outputs_and_its_cost_is_per_input() -> None:
    settings = load_settings()
    k = settings.kafka
    records = ledger_records(settings, 2_000, 100, 3, 250)
    topics = {r.topic() for r in records}
    assert topics == {k.input_topic, k.orders_topic, k.dunning_topic}  # payments and dead letters unread
    assert sum(r.topic() == k.input_topic for r in records) == 2_000
    cost = measure(settings, records, read_batch=300, rounds=3)
    assert cost.inputs > 0 and cost.records > cost.inputs
    assert cost.fold_us_per_input > 0 and cost.snapshot_us_per_input > 0
    assert cost.snapshots_per_batch >= 1  # one campaign, changed in every batch
    assert "µs CPU per input event" in cost.render()
