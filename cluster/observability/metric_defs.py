"""What clickcash exports to Prometheus, computed from the actors' stats. Pure: no Ray, Kafka, Redis or HTTP.

The routers and shards keep plain counters and bucket counts (``RouterStats``, ``ShardActor.stats``); the
driver polls them and this module turns one poll into metric families. Labels are bounded by configuration
(topics, partitions, shards, PSPs, dead-letter codes), never by a customer, order or event id.

Counters survive actor restarts: a restarted router or shard starts from zero, and :class:`CounterCarry`
adds what the previous incarnation had counted, so every exported ``_total`` only grows.

Shard count keys (``ShardResult.counts``, summed by the router) are read as:
``<output type>`` (``order.accepted``, ``dunning.scheduled``, ...) an output of that type;
``dead_letter.<code>`` a dead letter; ``processed``/``duplicate``/``replayed``/``replay_without_response``/
``timer_stale`` how an input was handled; ``route_decided:<psp>`` a payment routed to that PSP;
``<reason>:<psp>`` (``breaker_open:<psp>``, ...) a routing reason that concerned that PSP;
``in:<input type>`` an input record of that type reached the shard (``in:invalid``: it failed decoding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from clickcash.cluster.observability.watchdog import Stall
from clickcash.events import INPUT_TYPES
from clickcash.histogram import BATCH_BOUNDS_S, END_TO_END_BOUNDS_S, KAFKA_BOUNDS_S, Histogram

Kind = Literal["counter", "gauge", "histogram"]

SYNTHETIC_COUNT_PREFIX = "synthetic|"
"""the shards' count key prefix of the synthetic share (``clickcash.actors._apply.SYNTHETIC_COUNT_PREFIX``;
not
imported: this module stays free of the actors)"""

HANDLING_OUTCOMES = ("processed", "duplicate", "replayed", "replay_without_response", "timer_stale")
IDEMPOTENCY_HITS = {
    "duplicate": "duplicate",
    "replayed": "replay",
    "dead_letter.duplicate_conflict": "conflict",
}
TIMER_COMMAND_TYPE = "dunning.timer_fired"
ROUTE_DECIDED = "route_decided"
BREAKER_OPEN = "breaker_open"
INVALID_INPUT = "invalid"
INPUT_TYPE_LABELS = (*sorted(INPUT_TYPES), INVALID_INPUT)
"""every ``type`` label of ``clickcash_input_events_total``: the known input types, plus records that failed
decoding (a type outside this set, which decoding rejects anyway, is counted as ``invalid``)"""


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


_LEDGER_LABELS = ("campaign", "synthetic")
LEDGER_DEFS = (
    MetricDef("clickcash_ledger_up", "gauge", "1 if the campaign ledger answered and is running"),
    MetricDef("clickcash_ledger_campaigns", "gauge", "Campaigns in the campaign ledger"),
    MetricDef("clickcash_ledger_transactions_total", "counter", "Snapshot transactions the ledger committed"),
    MetricDef(
        "clickcash_campaign_orders",
        "gauge",
        "Orders per campaign (top campaigns by volume, the rest as other): placed, accepted, rejected",
        (*_LEDGER_LABELS, "outcome"),
    ),
    MetricDef(
        "clickcash_campaign_payments",
        "gauge",
        "Payment outcomes per campaign: authorized, declined (by decline_class)",
        (*_LEDGER_LABELS, "outcome", "decline_class"),
    ),
    MetricDef(
        "clickcash_campaign_dunning",
        "gauge",
        "Dunning plans per campaign by outcome: scheduled, recovered, exhausted, cancelled",
        (*_LEDGER_LABELS, "outcome"),
    ),
    MetricDef(
        "clickcash_campaign_value_cents",
        "gauge",
        "Money per campaign in minor units of its currency: accepted, authorized, recovered",
        (*_LEDGER_LABELS, "kind", "currency"),
    ),
    MetricDef(
        "clickcash_recovery_cohort",
        "gauge",
        "Dunning outcomes across campaigns by cohort (dimension: decline_class, tenure_tier, value_tier, "
        "network)",
        ("dimension", "cohort", "outcome", "synthetic"),
    ),
    MetricDef(
        "clickcash_campaign_cycle_seconds",
        "histogram",
        "Real traffic cycle times per campaign: click_to_decision, decision_to_authorization, "
        "authorization_to_recovery",
        ("campaign", "stage"),
    ),
)
"""The campaign ledger's metrics (:mod:`clickcash.cluster.ledger.metrics`), present when the ledger runs"""

_DEFS = [
    MetricDef(
        "clickcash_events_in_total", "counter", "Input records consumed (replays included)", ("topic",)
    ),
    MetricDef(
        "clickcash_input_events_total",
        "counter",
        "Input records the shards handled, by input type (invalid: failed decoding; replays included)",
        ("type", "synthetic"),
    ),
    MetricDef(
        "clickcash_events_out_total",
        "counter",
        "Outputs by topic and CloudEvents type, first responses (replays are in records_produced)",
        ("topic", "type", "synthetic"),
    ),
    MetricDef(
        "clickcash_records_produced_total",
        "counter",
        "Records produced per topic, replays after a rewind included",
        ("topic",),
    ),
    MetricDef(
        "clickcash_events_handled_total", "counter", "Inputs by how the shard handled them", ("outcome",)
    ),
    MetricDef(
        "clickcash_dead_letters_total", "counter", "Records sent to the DLQ by reason code", ("reason",)
    ),
    MetricDef(
        "clickcash_idempotency_hits_total",
        "counter",
        "Inputs answered from idempotency records: duplicate (re-sent), replay (same offset), conflict",
        ("kind",),
    ),
    MetricDef("clickcash_psp_decisions_total", "counter", "Payments routed, by chosen PSP", ("psp",)),
    MetricDef(
        "clickcash_psp_route_reasons_total",
        "counter",
        "Routing reasons that concerned a PSP (breaker_open, avoided_after_decline, ...)",
        ("psp", "reason"),
    ),
    MetricDef(
        "clickcash_psp_breaker_open",
        "gauge",
        "1 while the PSP's circuit breaker is open in at least one segment (read from the shared PSP stats)",
        ("psp",),
    ),
    MetricDef("clickcash_dunning_plans_scheduled_total", "counter", "Dunning plans scheduled"),
    MetricDef(
        "clickcash_dunning_steps_fired_total", "counter", "Dunning steps that fired (step_due outputs)"
    ),
    MetricDef(
        "clickcash_dunning_timer_commands_total", "counter", "Timer commands the routers wrote to the input"
    ),
    MetricDef("clickcash_dunning_stale_timers_total", "counter", "Timer commands for closed or moved plans"),
    MetricDef("clickcash_transactions_total", "counter", "Kafka transactions committed"),
    MetricDef("clickcash_transaction_aborts_total", "counter", "Kafka transactions aborted"),
    MetricDef("clickcash_rewinds_total", "counter", "Rewinds to the committed offsets after a failure"),
    MetricDef("clickcash_router_restarts_total", "counter", "Router runs restarted by the supervisor"),
    MetricDef(
        "clickcash_failed_rounds_total",
        "counter",
        "Rounds that failed (a shard raised or died, a service was unavailable, Kafka refused the outputs)",
    ),
    MetricDef(
        "clickcash_parked_customers",
        "gauge",
        "Customers parked: their records are kept in the parking store until an operator replays or drops",
    ),
    MetricDef(
        "clickcash_held_customers",
        "gauge",
        "Customers whose records are held in the parking store, by reason: parked (a failure) or paused "
        "(a paused campaign, released by `clickcash resume`)",
        ("reason",),
    ),
    MetricDef(
        "clickcash_parked_records_total",
        "counter",
        "Input records kept in the parking store (replays included)",
    ),
    MetricDef(
        "clickcash_router_isolating",
        "gauge",
        "1 while the router replays in small rounds to find the record that keeps failing",
        ("router",),
    ),
    MetricDef(
        "clickcash_router_outage_seconds",
        "gauge",
        "How long the router has been waiting for an unavailable service (0: none)",
        ("router",),
    ),
    MetricDef(
        "clickcash_end_to_end_latency_seconds",
        "histogram",
        "Input record timestamp to its outputs committed (read_committed visible)",
    ),
    MetricDef(
        "clickcash_round_latency_seconds",
        "histogram",
        "Router round: consumed to every shard's outputs produced",
    ),
    MetricDef(
        "clickcash_kafka_commit_seconds", "histogram", "send_offsets_to_transaction + commit_transaction"
    ),
    MetricDef("clickcash_kafka_transaction_seconds", "histogram", "Transaction begin to commit"),
    MetricDef("clickcash_shard_batch_seconds", "histogram", "One batch inside a shard actor", ("shard",)),
    MetricDef("clickcash_shard_batches_total", "counter", "Batch calls a shard received", ("shard",)),
    MetricDef(
        "clickcash_shard_events_total", "counter", "Events in the batches a shard completed", ("shard",)
    ),
    MetricDef("clickcash_shard_queue_depth", "gauge", "Batches in flight to the shard", ("shard",)),
    MetricDef(
        "clickcash_shard_oldest_batch_age_seconds",
        "gauge",
        "Age of the shard's oldest in-flight batch",
        ("shard",),
    ),
    MetricDef("clickcash_shard_up", "gauge", "1 if the shard actor answered the last poll", ("shard",)),
    MetricDef("clickcash_shard_node_info", "gauge", "The Ray node a shard runs on", ("shard", "node")),
    MetricDef("clickcash_router_up", "gauge", "1 if the router answered and is running", ("router",)),
    MetricDef("clickcash_router_inflight_rounds", "gauge", "Rounds in flight in the router", ("router",)),
    MetricDef(
        "clickcash_consumer_lag_records",
        "gauge",
        "Input records past the group's committed offset",
        ("partition",),
    ),
    MetricDef(
        "clickcash_partition_committed_offset", "gauge", "The group's committed offset", ("partition",)
    ),
    MetricDef(
        "clickcash_partition_stalled",
        "gauge",
        "1 while the partition has lag and no progress",
        ("partition",),
    ),
    MetricDef("clickcash_shard_stalled", "gauge", "1 while a batch to the shard is stuck", ("shard",)),
    MetricDef("clickcash_healthy", "gauge", "1 when nothing is stalled and every actor answered"),
    *LEDGER_DEFS,
]
METRICS: dict[str, MetricDef] = {d.name: d for d in _DEFS}
"""Every metric clickcash exports, by name (the dashboard test checks its queries against these)."""

HISTOGRAM_BOUNDS: dict[str, tuple[float, ...]] = {
    "clickcash_end_to_end_latency_seconds": END_TO_END_BOUNDS_S,
    "clickcash_round_latency_seconds": BATCH_BOUNDS_S,
    "clickcash_kafka_commit_seconds": KAFKA_BOUNDS_S,
    "clickcash_kafka_transaction_seconds": KAFKA_BOUNDS_S,
    "clickcash_shard_batch_seconds": BATCH_BOUNDS_S,
}
_ROUTER_HISTOGRAMS = {
    "end_to_end": "clickcash_end_to_end_latency_seconds",
    "round": "clickcash_round_latency_seconds",
    "commit": "clickcash_kafka_commit_seconds",
    "transaction": "clickcash_kafka_transaction_seconds",
}


def exported_names() -> set[str]:
    """Every series name a scrape can contain (histograms as _bucket, _sum and _count)."""
    out = set()
    for d in _DEFS:
        if d.kind == "histogram":
            out |= {f"{d.name}_bucket", f"{d.name}_sum", f"{d.name}_count"}
        else:
            out.add(d.name)
    return out


@dataclass(frozen=True)
class Topics:
    input: str
    orders: str
    payments: str
    dunning: str
    dlq: str

    def of_type(self, event_type: str) -> str:
        """The output topic of a CloudEvents type (the shard writes each family to its own topic)."""
        family = event_type.split(".", 1)[0]
        return {"order": self.orders, "payment": self.payments, "dunning": self.dunning}.get(family, "other")


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None
    lag: int | None


@dataclass
class Sample:
    labels: dict[str, str]
    value: float


@dataclass
class HistogramSample:
    labels: dict[str, str]
    histogram: Histogram


@dataclass
class Family:
    d: MetricDef
    samples: list[Sample] = field(default_factory=list)
    histograms: list[HistogramSample] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append(Sample(labels, float(value)))


@dataclass(frozen=True)
class Poll:
    """One poll of the app, as the driver saw it."""

    routers: Sequence[Mapping[str, Any]]
    """``RouterActor.stats()`` each, or ``{"router": i, "unavailable": True}``"""
    shards: Sequence[Mapping[str, Any]]
    partitions: Sequence[PartitionLag] = ()
    router_restarts: int = 0
    stalls: Sequence[Stall] = ()
    breakers_open: Iterable[str] = ()
    """PSPs whose breaker is open now in some segment
    (:class:`clickcash.cluster.observability.breakers.BreakerProbe`)"""
    psps: Sequence[str] = ()
    """the configured PSPs: each gets a ``clickcash_psp_breaker_open`` sample, open or not"""
    ledger: Mapping[str, Any] | None = None
    """``LedgerActor.stats()``, or ``{"unavailable": True}``; None when the ledger is off"""


class CounterCarry:
    """Keeps exported counters monotonic across actor restarts.

    Each source (``router-0``, ``shard-3``) reports its counters with an incarnation marker (its pid and
    a run counter). When the marker changes or any counter goes down, the source restarted: what it had
    counted is carried into an offset that is added from then on.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[Any, dict[Any, float]]] = {}
        self._offset: dict[str, dict[Any, float]] = {}

    def update(self, source: str, marker: Any, values: Mapping[Any, float]) -> dict[Any, float]:
        last = self._last.get(source)
        offset = self._offset.setdefault(source, {})
        if last is not None:
            prev_marker, prev = last
            if prev_marker != marker or any(values.get(k, 0) < v for k, v in prev.items()):
                for k, v in prev.items():
                    offset[k] = offset.get(k, 0) + v
        self._last[source] = (marker, dict(values))
        keys = set(values) | set(offset)
        return {k: values.get(k, 0) + offset.get(k, 0) for k in keys}

    def sources(self) -> set[str]:
        return set(self._last)

    def last(self, source: str) -> dict[Any, float]:
        """The carried totals of a source as of its last update (for a source that did not answer)."""
        got = self._last.get(source)
        offset = self._offset.get(source, {})
        values = got[1] if got else {}
        return {k: values.get(k, 0) + offset.get(k, 0) for k in set(values) | set(offset)}


def _flatten_router(stats: Mapping[str, Any]) -> dict[Any, float]:
    """A router's counters as one flat mapping (histogram buckets too), for :class:`CounterCarry`."""
    flat: dict[Any, float] = {
        ("consumed",): stats.get("consumed", 0),
        ("transactions",): stats.get("transactions", 0),
        ("aborts",): stats.get("aborts", 0),
        ("rewinds",): stats.get("rewinds", 0),
        ("timers_fired",): stats.get("timers_fired", 0),
        ("failed_rounds",): stats.get("failed_rounds", 0),
    }
    for k, v in (stats.get("counts") or {}).items():
        flat[("count", k)] = v
    for topic, v in (stats.get("produced_by_topic") or {}).items():
        flat[("produced", topic)] = v
    for name, h in (stats.get("histograms") or {}).items():
        for i, c in enumerate(h["counts"]):
            flat[("hist", name, i)] = c
        flat[("hist_sum", name)] = h["sum_s"]
    return flat


def _flatten_shard(stats: Mapping[str, Any]) -> dict[Any, float]:
    flat: dict[Any, float] = {("batches",): stats.get("batches", 0), ("events",): stats.get("events", 0)}
    h = stats.get("batch_seconds")
    if h:
        for i, c in enumerate(h["counts"]):
            flat[("hist", i)] = c
        flat[("hist_sum",)] = h["sum_s"]
    return flat


def _incarnation(stats: Mapping[str, Any]) -> Any:
    return (stats.get("pid"), stats.get("run"))


class MetricsModel:
    """Turns polls into families; holds the carries, so one instance lives as long as the driver."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self._routers = CounterCarry()
        self._shards = CounterCarry()

    def families(self, poll: Poll) -> list[Family]:
        fam = {d.name: Family(d) for d in _DEFS}
        router_totals: dict[Any, float] = {}
        polled: set[str] = set()
        parked = 0
        held = {"parked": 0, "paused": 0}
        for i, stats in enumerate(poll.routers):
            idx = int(stats.get("router", i))
            source = f"router-{idx}"
            up = not stats.get("unavailable")
            if up:
                totals = self._routers.update(source, _incarnation(stats), _flatten_router(stats))
            else:
                totals = self._routers.last(source)
            for k, v in totals.items():
                router_totals[k] = router_totals.get(k, 0) + v
            fam["clickcash_router_up"].add(1 if up and stats.get("running") else 0, router=str(idx))
            fam["clickcash_router_inflight_rounds"].add(stats.get("inflight_rounds", 0), router=str(idx))
            fam["clickcash_router_isolating"].add(int(stats.get("round_cap", 0) > 0), router=str(idx))
            fam["clickcash_router_outage_seconds"].add(stats.get("outage_for_s", 0.0), router=str(idx))
            parked += stats.get("parked_customers", 0) if up else 0
            for reason, n in (stats.get("held_customers") or {}).items() if up else ():
                held[reason] = held.get(reason, 0) + n
            polled.add(source)
        # a router removed by a rescale keeps what it counted, or the app-wide totals would go down
        for source in sorted(self._routers.sources() - polled):
            for k, v in self._routers.last(source).items():
                router_totals[k] = router_totals.get(k, 0) + v
        fam["clickcash_parked_customers"].add(parked)
        for reason, n in sorted(held.items()):
            fam["clickcash_held_customers"].add(n, reason=reason)
        self._router_families(fam, router_totals, poll)
        self._shard_families(fam, poll)
        for p in poll.partitions:
            if p.lag is not None:
                fam["clickcash_consumer_lag_records"].add(p.lag, partition=str(p.partition))
            if p.committed is not None:
                fam["clickcash_partition_committed_offset"].add(p.committed, partition=str(p.partition))
        stalled = {(s.kind, s.id) for s in poll.stalls}
        for p in poll.partitions:
            fam["clickcash_partition_stalled"].add(
                int(("partition", p.partition) in stalled), partition=str(p.partition)
            )
        for i in range(len(poll.shards)):
            fam["clickcash_shard_stalled"].add(int(("shard", i) in stalled), shard=str(i))
        every_actor_up = all(not s.get("unavailable") for s in [*poll.routers, *poll.shards])
        fam["clickcash_healthy"].add(int(not stalled and every_actor_up))
        if poll.ledger is not None:
            ledger_families(fam, poll.ledger)
        return [f for f in fam.values() if f.samples or f.histograms or f.d not in LEDGER_DEFS]

    def _router_families(self, fam: dict[str, Family], t: Mapping[Any, float], poll: Poll) -> None:
        topics = self.topics
        fam["clickcash_events_in_total"].add(t.get(("consumed",), 0), topic=topics.input)
        counts = {k[1]: v for k, v in t.items() if k[0] == "count"}
        out_by_type: dict[tuple[str, str], float] = {}
        dead_letters: dict[str, float] = {}
        decisions: dict[str, float] = {}
        reasons: dict[tuple[str, str], float] = {}
        inputs = dict.fromkeys(INPUT_TYPE_LABELS, 0.0)
        synthetic = {
            k.removeprefix(SYNTHETIC_COUNT_PREFIX): v
            for k, v in counts.items()
            if k.startswith(SYNTHETIC_COUNT_PREFIX)
        }
        for key, v in counts.items():
            if key.startswith(SYNTHETIC_COUNT_PREFIX):
                continue
            if key.startswith("in:"):
                type_ = key.removeprefix("in:")
                inputs[type_ if type_ in inputs else INVALID_INPUT] += v
            elif key.startswith("dead_letter."):
                dead_letters[key.removeprefix("dead_letter.")] = v
            elif ":" in key:
                what, psp = key.split(":", 1)
                if what == ROUTE_DECIDED:
                    decisions[psp] = v
                else:
                    reasons[(psp, what)] = v
            elif "." in key:
                out_by_type[(topics.of_type(key), key)] = v
        if dead_letters:
            out_by_type[(topics.dlq, "clickcash.dead_letter")] = sum(dead_letters.values())
        out_by_type[(topics.input, TIMER_COMMAND_TYPE)] = t.get(("timers_fired",), 0)
        # both values of ``synthetic`` for every series: a fixed label set, and a rate() over either exists
        for type_, v in inputs.items():
            marked = synthetic.get(f"in:{type_}", 0)
            fam["clickcash_input_events_total"].add(v - marked, type=type_, synthetic="false")
            fam["clickcash_input_events_total"].add(marked, type=type_, synthetic="true")
        for (topic, type_), v in sorted(out_by_type.items()):
            marked = synthetic.get(type_, 0)
            fam["clickcash_events_out_total"].add(v - marked, topic=topic, type=type_, synthetic="false")
            fam["clickcash_events_out_total"].add(marked, topic=topic, type=type_, synthetic="true")
        for topic_key, v in sorted((k[1], v) for k, v in t.items() if k[0] == "produced"):
            fam["clickcash_records_produced_total"].add(v, topic=topic_key)
        for outcome in HANDLING_OUTCOMES:
            fam["clickcash_events_handled_total"].add(counts.get(outcome, 0), outcome=outcome)
        fam["clickcash_events_handled_total"].add(sum(dead_letters.values()), outcome="dead_lettered")
        for reason, v in sorted(dead_letters.items()):
            fam["clickcash_dead_letters_total"].add(v, reason=reason)
        for key, kind in IDEMPOTENCY_HITS.items():
            fam["clickcash_idempotency_hits_total"].add(counts.get(key, 0), kind=kind)
        for psp, v in sorted(decisions.items()):
            fam["clickcash_psp_decisions_total"].add(v, psp=psp)
        for (psp, reason), v in sorted(reasons.items()):
            fam["clickcash_psp_route_reasons_total"].add(v, psp=psp, reason=reason)
        open_now = set(poll.breakers_open)
        for psp in sorted(set(poll.psps) | set(decisions) | {p for p, _ in reasons}):
            fam["clickcash_psp_breaker_open"].add(int(psp in open_now), psp=psp)
        fam["clickcash_dunning_plans_scheduled_total"].add(counts.get("dunning.scheduled", 0))
        fam["clickcash_dunning_steps_fired_total"].add(counts.get("dunning.step_due", 0))
        fam["clickcash_dunning_timer_commands_total"].add(t.get(("timers_fired",), 0))
        fam["clickcash_dunning_stale_timers_total"].add(counts.get("timer_stale", 0))
        fam["clickcash_transactions_total"].add(t.get(("transactions",), 0))
        fam["clickcash_transaction_aborts_total"].add(t.get(("aborts",), 0))
        fam["clickcash_rewinds_total"].add(t.get(("rewinds",), 0))
        fam["clickcash_failed_rounds_total"].add(t.get(("failed_rounds",), 0))
        fam["clickcash_parked_records_total"].add(counts.get("parked_records", 0))
        fam["clickcash_router_restarts_total"].add(poll.router_restarts)
        for short, name in _ROUTER_HISTOGRAMS.items():
            fam[name].histograms.append(HistogramSample({}, _histogram(t, HISTOGRAM_BOUNDS[name], short)))

    def _shard_families(self, fam: dict[str, Family], poll: Poll) -> None:
        depth: dict[int, float] = {}
        age: dict[int, float] = {}
        for stats in poll.routers:
            for shard, n in (stats.get("inflight_by_shard") or {}).items():
                depth[int(shard)] = depth.get(int(shard), 0) + n
            for shard, a in (stats.get("oldest_inflight_age_s") or {}).items():
                age[int(shard)] = max(age.get(int(shard), 0.0), a)
        for i, stats in enumerate(poll.shards):
            idx = int(stats.get("shard", i))
            source, label = f"shard-{idx}", str(idx)
            up = not stats.get("unavailable")
            if up:
                t = self._shards.update(source, _incarnation(stats), _flatten_shard(stats))
            else:
                t = self._shards.last(source)
            fam["clickcash_shard_up"].add(int(up), shard=label)
            if stats.get("node"):
                fam["clickcash_shard_node_info"].add(1, shard=label, node=str(stats["node"]))
            fam["clickcash_shard_batches_total"].add(t.get(("batches",), 0), shard=label)
            fam["clickcash_shard_events_total"].add(t.get(("events",), 0), shard=label)
            fam["clickcash_shard_queue_depth"].add(depth.get(idx, 0), shard=label)
            fam["clickcash_shard_oldest_batch_age_seconds"].add(age.get(idx, 0.0), shard=label)
            bounds = HISTOGRAM_BOUNDS["clickcash_shard_batch_seconds"]
            h = Histogram(bounds, [int(t.get(("hist", j), 0)) for j in range(len(bounds) + 1)])
            h.sum_s = t.get(("hist_sum",), 0.0)
            fam["clickcash_shard_batch_seconds"].histograms.append(HistogramSample({"shard": label}, h))


def ledger_families(fam: Mapping[str, Family], stats: Mapping[str, Any]) -> None:
    """The ledger's families from its stats (``top``: :func:`clickcash.cluster.ledger.metrics.top_campaigns`
    rows, already bounded to the top campaigns plus ``other``)."""
    up = not stats.get("unavailable")
    fam["clickcash_ledger_up"].add(int(up and bool(stats.get("running"))))
    if not up:
        return
    fam["clickcash_ledger_campaigns"].add(stats.get("campaigns", 0))
    fam["clickcash_ledger_transactions_total"].add(stats.get("transactions", 0))
    cohorts: dict[tuple[str, str, str, str], int] = {}
    for row in stats.get("top") or []:
        camp = str(row["campaign"])
        for syn in ("false", "true"):
            c = row["synthetic" if syn == "true" else "real"]
            for outcome in ("placed", "accepted", "rejected"):
                fam["clickcash_campaign_orders"].add(
                    c.get(f"orders_{outcome}", 0), campaign=camp, synthetic=syn, outcome=outcome
                )
            fam["clickcash_campaign_payments"].add(
                c.get("payments_authorized", 0), campaign=camp, synthetic=syn, outcome="authorized",
                decline_class="",
            )  # fmt: skip
            for cls, n in sorted((c.get("declined_by_class") or {}).items()):
                fam["clickcash_campaign_payments"].add(
                    n, campaign=camp, synthetic=syn, outcome="declined", decline_class=cls
                )
            for outcome in ("scheduled", "recovered", "exhausted", "cancelled"):
                fam["clickcash_campaign_dunning"].add(
                    c.get(f"dunning_{outcome}", 0), campaign=camp, synthetic=syn, outcome=outcome
                )
            for kind in ("accepted", "authorized", "recovered"):
                for cur, cents in sorted((c.get(f"{kind}_cents_by_currency") or {}).items()):
                    fam["clickcash_campaign_value_cents"].add(
                        cents, campaign=camp, synthetic=syn, kind=kind, currency=cur
                    )
            for key, outcomes in (c.get("cohorts") or {}).items():
                dim, _, value = key.partition("=")
                for outcome, n in outcomes.items():
                    k = (dim, value, outcome, syn)
                    cohorts[k] = cohorts.get(k, 0) + int(n)
        for stage, h in sorted((row.get("cycle_times") or {}).items()):
            fam["clickcash_campaign_cycle_seconds"].histograms.append(
                HistogramSample({"campaign": camp, "stage": stage}, Histogram.from_dict(h))
            )
    for (dim, value, outcome, syn), n in sorted(cohorts.items()):
        fam["clickcash_recovery_cohort"].add(n, dimension=dim, cohort=value, outcome=outcome, synthetic=syn)


def _histogram(totals: Mapping[Any, float], bounds: tuple[float, ...], name: str) -> Histogram:
    h = Histogram(bounds, [int(totals.get(("hist", name, j), 0)) for j in range(len(bounds) + 1)])
    h.sum_s = totals.get(("hist_sum", name), 0.0)
    return h
