"""Warming a freshly started broker's transaction path before latency is measured.

A broker that has just started runs its request handling in the JVM's interpreter and first-tier
compiled code until each path has been used enough to be compiled fully. The router's commit path
(AddOffsetsToTxn, TxnOffsetCommit, EndTxn and the commit markers written to every partition touched) is
used once per transaction; a flat-out warm-up carries many events per transaction and so uses it only a
few dozen times. Measured on a fresh local broker (docs/performance-latency.md), the commits of the paced
run that followed took 40-60 ms on average for their first ~1,000 transactions and 4-6 ms afterwards, and
a paced run against a broker that had been warmed started at 4-6 ms at once: a cold broker, not the app,
set the first seconds' latency. A broker that serves traffic in production is long warm.

:func:`warm_transactions` runs the same calls, back to back, against a scratch topic and group of its
own (deleted afterwards), so that the broker is warm and nothing of the app's topics or offsets is
touched.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clickcash.config.settings import Settings

WARM_TRANSACTIONS = 1_500
"""transactions of the warm-up: past the ~1,000 after which a fresh broker's commits stopped getting faster"""
WARM_PARTITIONS = 8
"""partitions of the scratch topic: each transaction writes to several, as a round's outputs do"""


def warm_transactions(
    settings: Settings,
    transactions: int = WARM_TRANSACTIONS,
    *,
    log: Callable[[str], None] = lambda _m: None,
) -> float:
    """Run ``transactions`` small transactions (two records to two partitions, the consumed offsets
    of a scratch group, commit) against a scratch topic; returns the seconds it took. A broker that
    refuses (ACLs of a secured stack, say) leaves the warm-up undone, logged, and nothing else."""
    base = {**settings.kafka.client_config(), "logger": logging.getLogger("librdkafka")}
    topic = f"{settings.kafka.input_topic}.warmup-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(base)
    started = time.monotonic()
    try:
        admin.create_topics([NewTopic(topic, num_partitions=WARM_PARTITIONS, replication_factor=1)])[
            topic
        ].result(30)
        producer = Producer(
            {
                **base,
                "transactional.id": f"{topic}-txn",
                "retry.backoff.ms": 5,  # as the router's producer (router/_router.py)
                "linger.ms": 0,
            }
        )
        consumer = Consumer({**base, "group.id": f"{topic}-group", "enable.auto.commit": False})
        try:
            producer.init_transactions(30)
            metadata = consumer.consumer_group_metadata()
            for i in range(transactions):
                producer.begin_transaction()
                for j in range(2):
                    producer.produce(topic, b"warm-up", partition=(2 * i + j) % WARM_PARTITIONS)
                producer.send_offsets_to_transaction(
                    [TopicPartition(topic, i % WARM_PARTITIONS, i)], metadata, 30
                )
                producer.commit_transaction(30)
        finally:
            consumer.close()
            producer.flush(10)
    except KafkaException as exc:
        log(f"broker warm-up skipped: {exc}")
    finally:
        with contextlib.suppress(KafkaException):  # the topic may never have been created
            admin.delete_topics([topic])[topic].result(30)
    return time.monotonic() - started
