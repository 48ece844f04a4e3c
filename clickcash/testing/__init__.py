"""Run the router's logic in one process, without Kafka, Ray or Redis: for unit tests of the pipeline.

* :class:`FakeBroker` with :class:`FakeConsumer` and :class:`FakeProducer`: the consumer and the
  transactional producer the router uses, over in-memory topics and committed offsets; a transaction's
  records and offsets appear only when it commits. ``FakeProducer.fail_next`` injects a failure.
* :class:`InProcessShardPool`: real :class:`~clickcash.actors.shard.Shard` objects over the in-memory state
store,
  called synchronously; ``fail_when`` / :func:`fail_customer` make chosen batches fail.
* :class:`InMemoryParkingStore`: the parking store in dicts.
* :func:`router_under_test`: a started :class:`~clickcash.router._router.Router` wired to all three.

See docs/testing.md for examples.
"""

from clickcash.router.parking import InMemoryParkingStore
from clickcash.testing._kafka import FakeBroker, FakeConsumer, FakeMessage, FakeProducer, FakeRecord
from clickcash.testing._router import router_under_test
from clickcash.testing._shards import InProcessShardPool, fail_customer

__all__ = [
    "FakeBroker",
    "FakeConsumer",
    "FakeMessage",
    "FakeProducer",
    "FakeRecord",
    "InMemoryParkingStore",
    "InProcessShardPool",
    "fail_customer",
    "router_under_test",
]
