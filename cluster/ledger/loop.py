"""The campaign ledger's exactly-once loop: committed outputs and input events in, snapshots out.

A consume-transform-produce loop with its own consumer group (``<kafka.group_id>-campaigns``): it reads the
input topic (order placements, payment outcomes, customer tenure) and the orders and dunning topics with
``isolation.level=read_committed``, folds them with :class:`clickcash.cluster.ledger.fold.Ledger`, and in
one Kafka transaction produces a ``campaign.snapshot`` of every campaign that changed to the compacted
``kafka.campaigns_topic`` together with its consumed offsets (``send_offsets_to_transaction``). A crash
aborts the open transaction: snapshots and offsets go together or not at all, so on restart
:func:`restore` (the latest committed snapshot per campaign) and the group's committed offsets describe the
same point of the streams, and the replay from there counts each event once.

Input records are judged by the shards' own decoder (:func:`clickcash.actors.decode_record`): a record the
shards dead-letter is read but not counted, and a valid one is folded from what that decoder returns.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from pydantic import BaseModel

from clickcash.actors import InputEvent, decode_record
from clickcash.actors.engines.dunning import classify_decline
from clickcash.campaign_snapshot import SNAPSHOT_SOURCE, SNAPSHOT_TYPE
from clickcash.cluster.ledger.fold import INPUT_TYPES_COUNTED, CampaignTotals, DeclineClassifier, Ledger
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import Settings
from clickcash.envelope import structured_event
from clickcash.errors import ServiceError
from clickcash.events import SYNTHETIC_HEADER, SYNTHETIC_HEADER_VALUE, PaymentMethod

log = logging.getLogger(__name__)

SNAPSHOT_NAMESPACE = uuid.UUID("3d0c7f52-1a8e-4b7d-9c51-6b2f0e9a4c13")


FETCH_MIN_BYTES = 256 * 1024
FETCH_WAIT_MAX_MS = 500
"""The ledger's fetches wait for this many bytes or this long: it tails the topics as the routers commit, and
without them every fetch would carry a handful of records (each costing the ledger and the broker a request);
its snapshots go out once per ``ledger.commit_interval_ms`` anyway."""


def ledger_group(settings: Settings) -> str:
    return f"{settings.kafka.group_id}-campaigns"


def ledger_transactional_id(settings: Settings) -> str:
    k = settings.kafka
    return f"{k.transactional_id_prefix}-{k.group_id}-campaign-ledger"


def is_synthetic(envelope: Mapping[str, Any], headers: Any) -> bool:
    """Synthetic when the envelope's ``synthetic`` attribute is true or the ``ce_synthetic`` header says
    ``true`` (the shards write both on every output of a synthetic input)."""
    if envelope.get("synthetic") is True:
        return True
    return any(key == SYNTHETIC_HEADER and value == SYNTHETIC_HEADER_VALUE for key, value in headers or [])


def snapshot_event(totals: CampaignTotals, now: datetime) -> bytes:
    """A ``campaign.snapshot`` CloudEvent (structured mode) whose id follows its content: the same state
    published again carries the same id."""
    return snapshot_record(totals.to_dict(), now)


def snapshot_record(data: Mapping[str, Any], now: datetime) -> bytes:
    """:func:`snapshot_event` of ``CampaignTotals.to_dict()`` output already at hand.

    The fold's own dict is the contract's JSON (same fields, order and types), so it is encoded directly:
    a pydantic round trip over a campaign's thousands of open orders and ids would cost several times
    more; a unit test checks that the bytes validate and re-encode identically."""
    campaign_id = str(data["campaign_id"])
    body = orjson.dumps(data)
    return structured_event(
        id=str(uuid.uuid5(SNAPSHOT_NAMESPACE, campaign_id + "\x00" + body.decode())),
        source=SNAPSHOT_SOURCE,
        type=SNAPSHOT_TYPE,
        time=now.isoformat(),
        datacontenttype="application/json",
        partitionkey=campaign_id,
        extensions={"campaignid": campaign_id},
        data=body,
    )


def restore(settings: Settings, *, timeout_s: float = 30.0) -> dict[str, CampaignTotals]:
    """The latest committed snapshot of every campaign (read_committed, from the start of the topic)."""
    topic = settings.kafka.campaigns_topic
    c = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"clickcash-campaigns-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    out: dict[str, CampaignTotals] = {}
    try:
        md = c.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            return out
        ends: dict[int, int] = {}
        for p in md.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise ServiceError("kafka", f"reading {topic} to its end took over {timeout_s:g} s")
            for m in c.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                value = m.value()
                if value:
                    data = orjson.loads(value)["data"]
                    out[str(data["campaign_id"])] = CampaignTotals.from_dict(data)
            # positions, not last offsets: the log ends in transaction markers, which are not records
            for tp in c.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition, None)
    except KafkaException as exc:
        raise ServiceError("kafka", f"reading {topic}: {exc}") from exc
    finally:
        c.close()
    return out


def domain_classifier(settings: Settings) -> DeclineClassifier:
    """The dunning rules' own decline classes (``domain_file``), for the declines by class."""
    policy = load_domain_config(settings.domain_file).dunning

    def classify(code: str, network: str | None, advice_code: str | None) -> str:
        return classify_decline(code, policy, network=network, advice_code=advice_code)

    return classify


TENURE_TYPE = "customer.preferences_updated"
"""read for customer tenure (cohorts), with or without a campaign id"""
_READ_INPUT_TYPES = frozenset(INPUT_TYPES_COUNTED | {TENURE_TYPE})


def _fold_data(data: BaseModel) -> Mapping[str, Any]:
    """A validated input's fields as the fold reads them (it only reads): the model's own attributes (no
    serialization or copy; a date stays a date), with the payment method reduced to its network."""
    fields: dict[str, Any] = data.__dict__
    pm = fields.get("payment_method")
    if isinstance(pm, PaymentMethod):
        return {**fields, "payment_method": {"network": pm.network}}
    return fields


def _input_event(m: Message, value: bytes, env: dict[str, Any], max_event_bytes: int) -> InputEvent | None:
    """An input of a type the ledger reads, as the shards decode it; None for anything they dead-letter
    (their own verdict, :func:`clickcash.actors.decode_record`) and, before that verdict, for what the fold
    would not count anyway (another type, or no campaign id)."""
    etype = env.get("type")
    if not isinstance(etype, str) or etype not in _READ_INPUT_TYPES:
        return None
    if etype != TENURE_TYPE and env.get("campaignid") is None:
        return None
    event = decode_record(
        m.topic() or "",  # where: only for a dead letter, which the ledger does not keep
        m.partition() or 0,
        m.offset() or 0,
        m.key(),
        value,
        max_event_bytes,
        parsed=env,
        with_fingerprint=False,
    )
    return event if isinstance(event, InputEvent) else None


@dataclass
class LedgerStats:
    transactions: int = 0
    events_read: int = 0
    events_counted: int = 0
    snapshots: int = 0
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    """campaign id -> its latest snapshot data (without the resume block), for the metrics"""


class LedgerLoop:
    """One ledger process: :meth:`run` until ``should_stop()``; :attr:`stats` for the monitor."""

    def __init__(self, settings: Settings, *, batch: int = 2000) -> None:
        self.settings = settings
        self.batch = batch
        self.stats = LedgerStats()

    def run(self, should_stop: Callable[[], bool]) -> Ledger:
        """Returns the ledger as of its last committed transaction. Any Kafka error propagates: the caller
        runs it again, which restores from the committed snapshots (an aborted transaction's fold is
        discarded with this call's state)."""
        s = self.settings
        k = s.kafka
        timeout_s = k.transaction_call_timeout_ms / 1000
        producer = Producer(
            {
                **k.client_config(),
                "transactional.id": ledger_transactional_id(s),
                "transaction.timeout.ms": k.transaction_timeout_ms,
                "compression.type": "zstd",
                "retry.backoff.ms": 5,
            }
        )
        try:
            # first: this fences a previous incarnation and aborts its open transaction, so the snapshots
            # and offsets read next are the last committed ones and nothing of the old run commits later
            producer.init_transactions(timeout_s)
        except KafkaException as exc:
            raise ServiceError("kafka", f"campaign ledger: {exc}") from exc
        ledger = Ledger(
            restore(s),
            classify_decline=domain_classifier(s),
            recent_ids_per_campaign=s.ledger.recent_ids_per_campaign,
        )
        for camp in ledger.campaigns.values():
            self.stats.campaigns[camp.campaign_id] = _public(camp)
        consumer = Consumer(
            {
                **k.client_config(),
                "group.id": ledger_group(s),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "fetch.min.bytes": FETCH_MIN_BYTES,
                "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
            }
        )
        interval_s = s.ledger.commit_interval_ms / 1000
        opened: float | None = None
        """when the first record not yet committed was folded"""
        try:
            consumer.subscribe([k.input_topic, k.orders_topic, k.dunning_topic])
            while not should_stop():
                msgs = [m for m in consumer.consume(self.batch, 0.5) if m.error() is None]
                for m in msgs:
                    self._fold(ledger, m)
                if msgs and opened is None:
                    opened = time.monotonic()
                if opened is not None and time.monotonic() - opened >= interval_s:
                    self._commit(producer, consumer, ledger, timeout_s)
                    opened = None
            if opened is not None:  # stopping: publish what was folded rather than fold it again
                self._commit(producer, consumer, ledger, timeout_s)
        except KafkaException as exc:
            raise ServiceError("kafka", f"campaign ledger: {exc}") from exc
        finally:
            consumer.close()
            producer.flush(10)
        return ledger

    def snapshots(self, ledger: Ledger, now: datetime) -> list[tuple[str, bytes]]:
        """(campaign id, ``campaign.snapshot`` record) of every campaign changed since the last call; the
        stats take each one's public part."""
        out = []
        for totals in ledger.drain_changed():
            data = totals.to_dict()
            out.append((totals.campaign_id, snapshot_record(data, now)))
            data.pop("resume", None)
            self.stats.campaigns[totals.campaign_id] = data
            self.stats.snapshots += 1
        return out

    def _commit(self, producer: Producer, consumer: Consumer, ledger: Ledger, timeout_s: float) -> None:
        """One transaction: the changed campaigns' snapshots and the consumed offsets, together."""
        producer.begin_transaction()
        for campaign_id, record in self.snapshots(ledger, datetime.now(UTC)):
            producer.produce(
                self.settings.kafka.campaigns_topic,
                key=campaign_id.encode(),
                value=record,
                headers=[("ce_type", SNAPSHOT_TYPE.encode())],
            )
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), timeout_s
        )
        producer.commit_transaction(timeout_s)
        self.stats.transactions += 1

    def _fold(self, ledger: Ledger, m: Message) -> None:
        value = m.value()
        if not value:
            return
        self.stats.events_read += 1
        try:
            env = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(env, dict):
            return
        if m.topic() == self.settings.kafka.input_topic:
            event = _input_event(m, value, env, self.settings.pipeline.max_event_bytes)
            if event is None:
                return
            counted = ledger.fold(
                event_id=event.id,
                event_type=event.type,
                time=event.time,
                campaign_id=event.campaignid,
                data=_fold_data(event.data),
                # the shards' verdict, from the envelope only: they mark this input's outputs by it, and
                # the input is counted on the same side as its outputs (a ``ce_synthetic`` header on a
                # structured-mode input is not an attribute and leaves its outputs real)
                synthetic=event.synthetic,
            )
        else:
            if env.get("campaignid") is None and env.get("type") != TENURE_TYPE:
                return  # the fold counts no output without a campaign: skip reading its time
            synthetic = is_synthetic(env, m.headers())
            try:
                counted = ledger.fold(
                    event_id=str(env["id"]),
                    event_type=str(env["type"]),
                    time=datetime.fromisoformat(str(env["time"])),
                    campaign_id=env.get("campaignid"),
                    data=env.get("data") or {},
                    synthetic=synthetic,
                    is_input=False,
                )
            except (KeyError, ValueError, TypeError) as exc:  # outputs are clickcash's own: never expected
                log.error("campaign ledger: unreadable output at %s/%d/%d: %s", m.topic(), m.partition(),
                          m.offset(), exc)  # fmt: skip
                return
        self.stats.events_counted += int(counted)


def _public(totals: CampaignTotals) -> dict[str, Any]:
    d = totals.to_dict()
    d.pop("resume", None)
    return d
