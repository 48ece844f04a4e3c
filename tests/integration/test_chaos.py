"""Fault injection: whatever dies mid-stream, the committed outputs are exactly what they should be.

Each scenario pushes the same kind of workload (50,000 events over 1,200+ customers with re-sent duplicates
and malformed records), injects one fault while the app is processing, waits for the input to drain and
runs the verifier, which compares the read_committed outputs per customer and topic against a sequential
failure-free reference: no loss, no duplicates, no strays, per-customer order, DLQ complete.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import redis
from confluent_kafka.admin import AdminClient

from clickcash.actors import keyspace
from clickcash.actors.actor import start_shard_actor
from clickcash.actors.contract import ShardBatch
from clickcash.cluster.app import App
from clickcash.cluster.local._kafka import LocalKafka
from clickcash.cluster.local._ray_nodes import LocalRayCluster
from clickcash.cluster.local.stack import CACHE_DIR
from clickcash.cluster.verify import verify
from clickcash.config.settings import Settings
from clickcash.errors import StaleShardCallError
from clickcash.router._router import ShardFailedError
from clickcash.router.actor import RayShardPool, start_router_actor
from clickcash.router.parking import RedisParkingStore
from tests.integration._fixtures import domain_without_breakers, faulty_customer, workload
from tests.integration._harness import (
    SettingsFactory,
    event,
    order,
    produce,
    redis_held_busy,
    running_app,
    wait_for_drain,
)
from tests.integration.conftest import Services

pytestmark = pytest.mark.chaos

EVENTS = int(os.environ.get("CLICKCASH_CHAOS_EVENTS", "50000"))
CUSTOMERS = 1_500


def _say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _workload(seed: int) -> list[tuple[bytes | None, bytes]]:
    return workload(seed, EVENTS, CUSTOMERS, run_prefix="x")


def _consumed(app: App) -> int:
    return sum(int(s.get("consumed", 0)) for s in app.router_stats())


def _wait_progress(app: App, fraction: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.supervise(0.2)
        if _consumed(app) >= EVENTS * fraction:
            return
    raise AssertionError(f"app did not reach {fraction:.0%} of the input in {timeout_s} s")


def _run_scenario(
    settings: Settings, seed: int, inject: Callable[[App], str], *, produce_during: bool = False
) -> None:
    records = _workload(seed)
    half = len(records) // 2
    produce(settings, records if not produce_during else records[:half])
    with running_app(settings) as app:
        producer = None
        if produce_during:
            producer = threading.Thread(target=produce, args=(settings, records[half:]))
            producer.start()
        _wait_progress(app, 0.3 if not produce_during else 0.2)
        injected_at = time.monotonic()
        what = inject(app)
        _say(f"injected: {what} (consumed so far {_consumed(app):,} of {EVENTS:,})")
        if producer is not None:
            producer.join()
        wait_for_drain(settings, app, timeout_s=300)
        drained_s = time.monotonic() - injected_at
        _say(f"input drained {drained_s:.1f} s after the fault; router restarts {app.restarts}")
    report = verify(settings, log=_say)
    _say(report.render())
    assert report.inputs - report.timer_commands == EVENTS, "every produced event must be read back"
    assert report.ok, report.render()


def _chaos_settings(make_settings: SettingsFactory, **kw: dict[str, object]) -> Settings:
    return make_settings(
        partitions=4,
        pipeline={"shards": 4, "max_inflight_batches_per_shard": 4},
        kafka={"consume_batch_max": 1000},
        **kw,
    )


def _orders(settings: Settings, customer: str, first_offset: int, n: int = 1) -> ShardBatch:
    """A batch of ``n`` order events of one customer at offsets ``first_offset``.. of input partition 0, with
    ids ``<customer>-e<offset>``: what the fencing tests send a shard actor themselves."""
    stamp_ms = int(time.time() * 1000)
    offsets = list(range(first_offset, first_offset + n))
    values: list[bytes | None] = [
        event(f"{customer}-e{o}", "order.placed", customer, order(f"{customer}-o{o}", customer))
        for o in offsets
    ]
    return ShardBatch(
        settings.kafka.input_topic, [0] * n, offsets, [customer.encode()] * n, values, [stamp_ms] * n
    )


def _applied(store: redis.Redis, settings: Settings, customer: str, offset: int) -> bool:
    """Whether the event of :func:`_orders` at ``offset`` was applied (its idempotency record exists)."""
    return store.exists(keyspace.idempotency(settings.redis.key_prefix, f"{customer}-e{offset}")) == 1


def test_calls_made_while_a_shard_restarts_are_refused_until_the_router_fences(
    make_settings: SettingsFactory,
) -> None:
    """Ray delivers a call made while it restarts a killed actor to the new instance, ahead of the replay
    the caller sends once it learns of the death (measured: for ~1 s after a SIGKILL). Applied, such a
    call would run a customer's later events before the earlier ones the dead instance lost."""
    settings = make_settings(partitions=1)
    shard = start_shard_actor(0, settings)
    store = redis.Redis.from_url(settings.redis.url.get_secret_value())
    try:
        pool = RayShardPool([shard])
        pool.fence()
        old = ray.get(shard.stats.remote(), timeout=60)
        os.kill(old["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:  # until Ray has restarted it: a call now reaches the new instance
            try:
                new = ray.get(shard.stats.remote(), timeout=10)
                if new["pid"] != old["pid"]:
                    break
            except ray.exceptions.RayActorError:
                pass
            assert time.monotonic() < deadline, "Ray did not restart the shard actor"
            time.sleep(0.2)
        assert new["incarnation"] != old["incarnation"]

        batch = _orders(settings, "c-fence", 0)
        handle = pool.submit(0, batch)  # under the run fenced at the instance that was killed
        pool.wait([handle], 60)
        with pytest.raises(ShardFailedError) as refused:
            pool.results([handle])
        assert isinstance(refused.value.__cause__, StaleShardCallError), refused.value
        assert not _applied(store, settings, "c-fence", 0), "a refused batch must not be applied"

        pool.fence()
        handle = pool.submit(0, batch)
        pool.wait([handle], 60)
        [result] = pool.results([handle])
        assert result.counts.get("processed") == 1
        assert _applied(store, settings, "c-fence", 0)
    finally:
        store.close()
        ray.kill(shard, no_restart=True)


def test_a_dead_router_s_call_lost_with_its_batch_leaves_its_later_calls_refused(
    make_settings: SettingsFactory, services: Services
) -> None:
    """What a router's SIGKILL does to its calls queued at a shard, measured here with Ray's own behaviour:
    a call whose batch is over ``ray.max_inline_object_bytes`` carries it in the object store, owned by the
    router, and is lost with its owner; the calls after it carry their batches inline and still run. Applied,
    those would run a customer's later events before the lost ones, which the restarted router replays
    after them. The shard refuses them untouched, and the replay applies all three calls in order."""
    settings = make_settings(partitions=1)
    shard = start_shard_actor(0, settings)
    store = redis.Redis.from_url(settings.redis.url.get_secret_value())

    def applied(offset: int) -> bool:
        return _applied(store, settings, "c-lost", offset)

    class DyingRouter:  # defined here, so Ray ships it by value (the tests are not importable on workers)
        """Stands for a router process: fences the shard, sends its calls, is SIGKILLed with them queued."""

        def ready(self) -> None:
            """Its worker process has started (seconds on a slow machine), so it dies while Redis is busy."""

        def send_and_die(self, shard: Any, batches: list[ShardBatch]) -> None:
            pool = RayShardPool([shard])
            pool.fence()
            for batch in batches:
                pool.submit(0, batch)
            time.sleep(0.5)  # every call has left this process
            os.kill(os.getpid(), signal.SIGKILL)

    big = 6_000
    calls = [
        _orders(settings, "c-lost", 0),
        _orders(settings, "c-lost", 1, big),
        _orders(settings, "c-lost", 1 + big),
    ]
    assert len(pickle.dumps(calls[1])) > settings.ray.max_inline_object_bytes, "call 1 must not go inline"
    dying: Any = ray.remote(DyingRouter)
    router = dying.options(num_cpus=0, max_restarts=0).remote()
    try:
        ray.get(shard.stats.remote(), timeout=60)  # the shard is up: the calls go to its queue
        ray.get(router.ready.remote(), timeout=60)
        # Redis is busy for 3 s: call 0 waits on its load, so calls 1 and 2 queue behind it until after the
        # router's death (it sends them and dies within about a second)
        with redis_held_busy(services.redis_url, 3.0), pytest.raises(ray.exceptions.RayActorError):
            ray.get(router.send_and_die.remote(shard, calls), timeout=60)
        deadline = time.monotonic() + 60
        while ray.get(shard.stats.remote(), timeout=60)["refused_calls"] < 1 and not applied(1 + big):
            assert time.monotonic() < deadline, "call 2 of the dead router was neither refused nor applied"
            time.sleep(0.2)
        assert applied(0), "the call the shard was running when its router died completes"
        assert not applied(1), "the call whose batch was in the dead router's object store is lost"
        assert not applied(1 + big), "the call after the lost one must not be applied"
        assert ray.get(shard.stats.remote(), timeout=60)["refused_calls"] == 1

        pool = RayShardPool([shard])  # the restarted router: fences and replays from the committed offset
        pool.fence()
        handles = [pool.submit(0, b) for b in calls]
        pool.wait(handles, 120)
        results = pool.results(handles)
        assert [r.counts.get("replayed", 0) for r in results] == [1, 0, 0]
        assert [r.counts.get("processed", 0) for r in results] == [0, big, 1]
    finally:
        store.close()
        ray.kill(router)
        ray.kill(shard, no_restart=True)


def test_shard_process_sigkill(make_settings: SettingsFactory) -> None:
    settings = _chaos_settings(make_settings)

    def kill_shard(app: App) -> str:
        stats = app.shard_stats()[1]
        os.kill(stats["pid"], signal.SIGKILL)
        return f"SIGKILL shard-1 process pid {stats['pid']}"

    _run_scenario(settings, 101, kill_shard)


def test_calls_of_a_dead_router_run_and_calls_that_skip_one_are_refused(
    make_settings: SettingsFactory,
) -> None:
    """A router killed while sending can leave calls behind it with a gap: an earlier one lost with its
    batch, a later one delivered. Applied, the later one would run a customer's later events before the
    earlier ones; a call of the dead run that arrives after the restarted router fenced could do the same in
    the middle of its replay. Both are refused untouched; the run in order is applied."""
    settings = make_settings(partitions=1)
    shard = start_shard_actor(0, settings)
    store = redis.Redis.from_url(settings.redis.url.get_secret_value())

    def call(offset: int, token: str, sequence: int) -> ShardBatch:
        batch = _orders(settings, "c-gate", offset)
        batch.fence_token, batch.sequence = token, sequence
        return batch

    def applied(offset: int) -> bool:
        return _applied(store, settings, "c-gate", offset)

    try:
        ray.get(shard.fence.remote(0, "run-dead"), timeout=60)
        [first] = ray.get([shard.apply.remote(call(0, "run-dead", 0))], timeout=60)
        assert first.counts.get("processed") == 1
        with pytest.raises(ray.exceptions.RayTaskError) as skipped:
            ray.get(shard.apply.remote(call(2, "run-dead", 2)), timeout=60)
        assert isinstance(skipped.value.cause, StaleShardCallError), skipped.value
        assert "call 1 was expected" in str(skipped.value.cause)
        assert not applied(2), "a call that skips one must not be applied"

        ray.get(shard.fence.remote(0, "run-restarted"), timeout=60)
        with pytest.raises(ray.exceptions.RayTaskError) as fenced_off:
            ray.get(shard.apply.remote(call(1, "run-dead", 1)), timeout=60)
        assert isinstance(fenced_off.value.cause, StaleShardCallError), fenced_off.value
        assert not applied(1), "a call of a fenced-off run must not be applied"

        replay = [call(n, "run-restarted", n) for n in range(3)]
        results = ray.get([shard.apply.remote(b) for b in replay], timeout=60)
        assert [r.counts.get("processed", 0) + r.counts.get("replayed", 0) for r in results] == [1, 1, 1]
        assert all(applied(n) for n in range(3))
        assert ray.get(shard.stats.remote(), timeout=60)["refused_calls"] == 2
    finally:
        store.close()
        ray.kill(shard, no_restart=True)


def test_router_process_sigkill(make_settings: SettingsFactory) -> None:
    settings = _chaos_settings(make_settings)

    def kill_router(app: App) -> str:
        pid = app.router_stats()[0]["pid"]
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL router-0 process pid {pid}"

    _run_scenario(settings, 102, kill_router)


def test_ray_worker_node_sigkill(make_settings: SettingsFactory, ray_cluster: LocalRayCluster | None) -> None:
    assert ray_cluster is not None, (
        "needs the session's local two-node Ray cluster (CLICKCASH_TEST_RAY_ADDRESS unset)"
    )
    settings = _chaos_settings(make_settings)
    worker_node = None

    def kill_node(app: App) -> str:
        nonlocal worker_node
        nodes = {s["shard"]: s["node"] for s in app.shard_stats()}
        head_id = ray.get_runtime_context().get_node_id()
        on_worker = sorted(i for i, n in nodes.items() if n != head_id)
        assert on_worker, f"shards were not spread over both nodes: {nodes}"
        ray_cluster.refresh()
        pids = ray_cluster.kill_node(1)
        worker_node = 1
        return f"SIGKILL Ray worker node (pids {pids}) hosting shards {on_worker}"

    try:
        _run_scenario(settings, 103, kill_node)
    finally:
        if worker_node is not None:
            ray_cluster.restart_node(worker_node)


def test_redis_restart(make_settings: SettingsFactory, services: Services) -> None:
    assert services.stack is not None, "needs the session's local Redis (CLICKCASH_TEST_REDIS_URL unset)"
    settings = _chaos_settings(make_settings)

    def restart_redis(app: App) -> str:
        services.stack.redis.restart()  # type: ignore[union-attr]
        return "Redis restarted (SIGTERM, AOF appendfsync everysec, same port)"

    _run_scenario(settings, 104, restart_redis)


@pytest.fixture(scope="module")
def kafka3() -> Iterator[LocalKafka]:
    kafka = LocalKafka(CACHE_DIR, CACHE_DIR / "run" / f"kafka3-{os.getpid()}", nodes=3, log=_say)
    kafka.start(timeout_s=150)
    try:
        yield kafka
    finally:
        kafka.stop()


def test_broker_killed_in_three_node_kafka(make_settings: SettingsFactory, kafka3: LocalKafka) -> None:
    settings = make_settings(
        partitions=4,
        replication_factor=3,
        pipeline={"shards": 4},
        kafka={"bootstrap_servers": kafka3.bootstrap_servers, "consume_batch_max": 1000},
    )
    killed: list[int] = []

    def kill_broker(app: App) -> str:
        # The worst broker to lose: the app group's coordinator, which the router's transactions send
        # their offsets to (librdkafka can wait forever for it: see router/_bounded.py).
        admin = AdminClient(settings.kafka.client_config())
        [described] = admin.describe_consumer_groups([settings.kafka.group_id]).values()
        index = described.result(timeout=30).coordinator.id - 1  # node.id is index + 1
        kafka3.kill_node(index)
        killed.append(index)
        return (
            f"SIGKILL Kafka broker node {index + 1} of 3, the group coordinator (RF 3, min.insync.replicas 2)"
        )

    try:
        _run_scenario(settings, 105, kill_broker)
    finally:
        for index in killed:
            kafka3.restart_node(index)


def test_second_router_joins_then_leaves(make_settings: SettingsFactory) -> None:
    settings = _chaos_settings(make_settings)
    second: dict[str, object] = {}

    def join_and_leave(app: App) -> str:
        router = start_router_actor(1, settings)
        run = router.run.remote()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ray.get(router.stats.remote()).get("assigned"):
            app.supervise(0.2)
        joined = ray.get(router.stats.remote()).get("assigned")
        for _ in range(15):
            app.supervise(0.2)
        router.stop.remote()
        final = ray.get(run, timeout=120)
        ray.kill(router, no_restart=True)
        second["final"] = final
        return (
            f"router-1 joined the group (assigned partitions {joined}), consumed {final['consumed']:,} "
            f"events, then left"
        )

    _run_scenario(settings, 106, join_and_leave, produce_during=True)
    assert second, "the second router never ran"


def test_poison_record_parks_one_customer_and_the_stream_moves_on(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """An engine that raises on one customer's events (the test-only fault hook, as a bug would): the
    router retries, isolates the failing record, parks the customer, and everyone else is verified
    exactly-once; the customer's records wait in the parking store, none lost."""
    seed = 105
    faulty = faulty_customer(_workload(seed))
    settings = make_settings(
        partitions=4,
        pipeline={
            "shards": 4,
            "max_inflight_batches_per_shard": 4,
            "round_max_attempts": 3,
            "round_retry_backoff_ms": 50,
            "fault_inject_customer_ids": faulty,
        },
        kafka={"consume_batch_max": 1000},
        domain_file=domain_without_breakers(tmp_path),
    )
    _run_scenario(settings, seed, lambda app: f"engine fault for customer {faulty} from the start")
    r = settings.redis
    store = RedisParkingStore.from_url(r.url.get_secret_value(), r.key_prefix, r.socket_timeout_s)
    try:
        parked = store.load()
        assert list(parked) == [faulty.encode()], parked
        assert store.records(faulty.encode()), "the parked customer's records must be kept"
    finally:
        store.close()
