"""The campaign ledger's CPU per event, in one process, without Kafka.

Run as ``python -m clickcash.loadtest.contenders.ledger_cost``.

The ledger actor reads the input topic and the orders and dunning topics and folds them into per-campaign
totals. This runs its Python work (decoding and checking each record, the fold, the snapshots of the
changed campaigns after each read batch) in one process, without Kafka: the project's campaign generator
makes the input, a shard over the in-memory store makes the outputs (so the records are the ones the app
writes), and the records are fed to :meth:`LedgerLoop._fold` in the order a reader would see them (each
shard batch's input, then its outputs). librdkafka's own CPU (fetching, the transaction) is not in it: the
app's ledger process measured by ``clickcash compare`` (its ``ledger`` row) has both.

Prints µs of CPU per input event (the unit of ``compare``'s table) and per record read, split into fold and
snapshots; the median of ``--rounds`` parts, so a burst of another process's work moves it less.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from confluent_kafka import Message

import clickcash.actors.shard as shard_mod
from clickcash.actors.contract import OutputTopics
from clickcash.actors.state.base import InMemoryStateStore
from clickcash.cluster.ledger.fold import Ledger
from clickcash.cluster.ledger.loop import LedgerLoop
from clickcash.config.domain import load_domain_config
from clickcash.config.settings import Settings, load_settings
from clickcash.loadtest.contenders.stages import bench_batches
from clickcash.testing import FakeMessage, FakeRecord


def _record(
    topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None
) -> FakeMessage:
    """A record as the ledger reads it (the testing harness's stand-in for ``confluent_kafka.Message``)."""
    return FakeMessage(topic, 0, 0, FakeRecord(key, value, headers, 0))


def ledger_records(
    settings: Settings, events: int, customers: int, seed: int, batch: int
) -> list[FakeMessage]:
    """The records the ledger reads for ``events`` generated inputs: each input, and the shards' outputs on
    the orders and dunning topics (payments and dead letters are not read by the ledger)."""
    k = settings.kafka
    shard = shard_mod.Shard(
        0,
        OutputTopics(k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic),
        load_domain_config(settings.domain_file),
        InMemoryStateStore(),
        max_event_bytes=settings.pipeline.max_event_bytes,
    )
    read = {k.orders_topic, k.dunning_topic}
    out: list[FakeMessage] = []
    for b in bench_batches(events, batch, customers, seed, 0):
        out += [_record(k.input_topic, key, value, None) for key, value in zip(b.keys, b.values, strict=True)]
        res = shard.apply(b)
        for topic, key, value, headers in zip(res.topics, res.keys, res.values, res.headers, strict=True):
            if topic in read:
                out.append(_record(topic, key, value, list(headers) if headers else None))
    return out


@dataclass(frozen=True)
class LedgerCost:
    inputs: int
    records: int
    fold_us_per_input: float
    snapshot_us_per_input: float
    snapshots_per_batch: float

    def render(self) -> str:
        total = self.fold_us_per_input + self.snapshot_us_per_input
        per_record = total * self.inputs / max(self.records, 1)
        return (
            f"campaign ledger, one process, no Kafka: {self.inputs:,} inputs, {self.records:,} records read\n"
            f"  fold (decode, check, count)   {self.fold_us_per_input:7.1f} µs CPU per input event\n"
            f"  snapshots ({self.snapshots_per_batch:.1f} per read batch)  "
            f"{self.snapshot_us_per_input:7.1f} µs CPU per input event\n"
            f"  total                         {total:7.1f} µs CPU per input event "
            f"({per_record:.1f} per record read)"
        )


def measure(
    settings: Settings, records: list[FakeMessage], *, read_batch: int = 2000, rounds: int = 5
) -> LedgerCost:
    """Fold ``records`` as :class:`LedgerLoop` does (``read_batch`` records, then one snapshot per changed
    campaign), timing the fold and the snapshots apart; the first round warms up and is not counted."""
    loop = LedgerLoop(settings, batch=read_batch)
    ledger = Ledger(recent_ids_per_campaign=settings.ledger.recent_ids_per_campaign)
    batches = [records[i : i + read_batch] for i in range(0, len(records), read_batch)]
    per_round = max(1, len(batches) // (rounds + 1))
    parts = [batches[i : i + per_round] for i in range(0, len(batches), per_round)]
    samples: list[tuple[float, float, int, int, int]] = []
    for r, part in enumerate(parts):
        fold_s = snap_s = 0.0
        snapshots = 0
        for msgs in part:
            t0 = time.process_time()
            for m in msgs:
                loop._fold(ledger, cast(Message, m))
            t1 = time.process_time()
            snapshots += len(loop.snapshots(ledger, datetime.now(UTC)))
            fold_s += t1 - t0
            snap_s += time.process_time() - t1
        inputs = sum(1 for msgs in part for m in msgs if m.topic() == settings.kafka.input_topic)
        if r > 0 and len(part) == per_round and inputs:
            samples.append((fold_s, snap_s, inputs, sum(len(b) for b in part), snapshots))
    if not samples:
        raise ValueError("too few records for one measured round: raise --events")
    return LedgerCost(
        inputs=sum(s[2] for s in samples),
        records=sum(s[3] for s in samples),
        fold_us_per_input=statistics.median(s[0] / s[2] * 1e6 for s in samples),
        snapshot_us_per_input=statistics.median(s[1] / s[2] * 1e6 for s in samples),
        snapshots_per_batch=sum(s[4] for s in samples) / (len(samples) * per_round),
    )


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m clickcash.loadtest.contenders.ledger_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--events", type=int, default=120_000, help="generated input events")
    p.add_argument("--customers", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--read-batch", type=int, default=2000, help="records per snapshot round (a transaction's records)"
    )
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    logging.getLogger(shard_mod.__name__).setLevel(logging.ERROR)  # malformed inputs are on purpose
    settings = load_settings()
    records = ledger_records(settings, args.events, args.customers, args.seed, 500)
    print(measure(settings, records, read_batch=args.read_batch, rounds=args.rounds).render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
