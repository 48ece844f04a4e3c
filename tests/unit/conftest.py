"""Unit-test fixtures: no services, ever, plus small builders shared by the unit tests.

Like Ray Serve's unit conftest, an autouse fixture makes every entry point to a real service (``ray.init``,
Redis clients, Kafka clients) raise for each test in ``tests/unit``, so a test that would quietly need
Kafka, Redis or Ray fails at once with a message saying where it belongs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka
import confluent_kafka.admin
import orjson
import pytest
import ray
import redis
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir

from clickcash.actors.contract import ShardBatch
from clickcash.config.domain import DomainConfig, load_domain_config

SERVICE_GUARD_MESSAGE = "unit tests must not use real services; put this test under tests/integration"

INPUT_TOPIC = "clickcash.events"
FIXED_NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

_REAL_KAFKA = {
    "Consumer": confluent_kafka.Consumer,
    "Producer": confluent_kafka.Producer,
    "AdminClient": confluent_kafka.admin.AdminClient,
}
_PROJECT_PACKAGES = ("actors", "router", "cluster", "clickcash", "loadtest", "config", "tests")
_guard_active = False

# Unit runs leave nothing in the repository (as ``-p no:cacheprovider`` intends): Hypothesis keeps its
# caches in the temp dir and no example database. No deadline: a slow CI machine is not a failure.
if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "clickcash-hypothesis")
hypothesis_settings.register_profile("clickcash-unit", database=None, deadline=None)
hypothesis_settings.load_profile("clickcash-unit")


class _ServiceGuard:
    """Stands in for a service client class or ``ray.init``.

    Raises while a unit test runs. A project module first imported during a unit test binds this object
    for good (``from confluent_kafka import Consumer``), so outside unit tests it delegates to the real
    thing and the integration tests of the same session are unaffected.
    """

    def __init__(self, name: str, real: Callable[..., Any]) -> None:
        self.name = name
        self.real = real

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _guard_active:
            raise RuntimeError(f"{self.name}() called: {SERVICE_GUARD_MESSAGE}")
        return self.real(*args, **kwargs)


def _raise_for(name: str) -> Callable[..., Any]:
    def _forbidden(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name}() called: {SERVICE_GUARD_MESSAGE}")

    return _forbidden


@pytest.fixture(autouse=True)
def _no_real_services(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make Ray, Redis and Kafka clients unusable for the duration of every unit test."""
    global _guard_active
    monkeypatch.setattr(ray, "init", _raise_for("ray.init"))
    monkeypatch.setattr(redis.Redis, "__init__", _raise_for("redis.Redis"))
    monkeypatch.setattr(redis.Redis, "from_url", classmethod(_raise_for("redis.Redis.from_url")))
    guards = {
        "Consumer": _ServiceGuard("confluent_kafka.Consumer", _REAL_KAFKA["Consumer"]),
        "Producer": _ServiceGuard("confluent_kafka.Producer", _REAL_KAFKA["Producer"]),
        "AdminClient": _ServiceGuard("confluent_kafka.admin.AdminClient", _REAL_KAFKA["AdminClient"]),
    }
    monkeypatch.setattr(confluent_kafka, "Consumer", guards["Consumer"])
    monkeypatch.setattr(confluent_kafka, "Producer", guards["Producer"])
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", guards["AdminClient"])
    # Modules that did ``from confluent_kafka import Consumer`` (clickcash.router._router, cluster.*) hold
    # their own
    # reference: patch those names where they live.
    for mod_name, module in list(sys.modules.items()):
        if module is None or not mod_name.startswith(_PROJECT_PACKAGES):
            continue
        for attr, real in _REAL_KAFKA.items():
            if getattr(module, attr, None) is real:
                monkeypatch.setattr(module, attr, guards[attr])
    _guard_active = True
    try:
        yield
    finally:
        _guard_active = False


# --- shared fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def domain() -> DomainConfig:
    """The shipped business rules (config/domain.toml)."""
    return load_domain_config()


@pytest.fixture(scope="session")
def fixed_clock() -> Callable[[], datetime]:
    """A clock that always answers ``FIXED_NOW`` (aware, UTC)."""
    return lambda: FIXED_NOW


def build_cloud_event(
    type_: str,
    data: dict[str, Any],
    /,
    *,
    event_id: str = "evt-1",
    customer: str | None = None,
    time: str = "2026-03-02T09:00:00Z",
    correlationid: str | None = "corr-1",
    campaignid: str | None = "spring-sale",
    **extra: Any,
) -> bytes:
    """Structured-mode CloudEvents JSON of one input event; ``partitionkey`` defaults to
    ``data['customer_id']``. ``extra`` overrides or adds envelope attributes."""
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "tests/unit",
        "type": type_,
        "time": time,
        "partitionkey": customer if customer is not None else data.get("customer_id", "c-1"),
        "data": data,
    }
    if correlationid is not None:
        envelope["correlationid"] = correlationid
    if campaignid is not None:
        envelope["campaignid"] = campaignid
    envelope.update(extra)
    return orjson.dumps(envelope)


@pytest.fixture(scope="session")
def cloud_event() -> Callable[..., bytes]:
    """``cloud_event(type, data, event_id=..., customer=..., time=..., **envelope_overrides) -> bytes``"""
    return build_cloud_event


def build_event_data(type_: str, customer: str = "c-1", **overrides: Any) -> dict[str, Any]:
    """Valid ``data`` for each input type (a US visa order of 2 x 50.00 USD for ``order.placed``)."""
    order_id = overrides.pop("order_id", "o-1")
    if type_ == "order.placed":
        data: dict[str, Any] = {
            "order_id": order_id,
            "customer_id": customer,
            "country": "US",
            "currency": "USD",
            "items": [{"sku": "sku-1", "quantity": 2, "unit_price_cents": 5000}],
            "total_cents": 10000,
            "payment_method": {"type": "card", "network": "visa", "token": "tok_abc123"},
        }
    elif type_ in ("payment.authorized", "payment.declined"):
        data = {
            "order_id": order_id,
            "customer_id": customer,
            "attempt": 1,
            "psp": "adyen",
            "amount_cents": 10000,
            "currency": "USD",
        }
        if type_ == "payment.declined":
            data["decline_code"] = "51"
    elif type_ == "payment_method.updated":
        data = {
            "customer_id": customer,
            "payment_method": {"type": "card", "network": "visa", "token": "tok_new456"},
        }
    elif type_ == "customer.preferences_updated":
        data = {"customer_id": customer, "timezone": "Europe/Berlin", "channels": ["sms", "email"]}
    elif type_ == "dunning.timer_fired":
        data = {
            "customer_id": customer,
            "order_id": order_id,
            "plan_id": "plan-1",
            "step_index": 0,
            "due_ms": 1_772_443_800_000,
        }
    elif type_ == "customer.erasure_requested":
        data = {"customer_id": customer}
    else:
        raise ValueError(f"no sample data for {type_!r}")
    data.update(overrides)
    return data


@pytest.fixture(scope="session")
def event_data() -> Callable[..., dict[str, Any]]:
    """``event_data(type, customer='c-1', **field_overrides) -> dict``: valid data of an input type."""
    return build_event_data


Record = tuple[int, int, bytes | None, bytes | None]
"""(partition, offset, key, value)"""


def build_shard_batch(
    records: Sequence[Record],
    *,
    topic: str = INPUT_TOPIC,
    committed: dict[int, int] | None = None,
) -> ShardBatch:
    """A ``ShardBatch`` (the router's per-shard input) holding ``records`` in the given order."""
    batch = ShardBatch(topic, committed=dict(committed or {}))
    for partition, offset, key, value in records:
        batch.partitions.append(partition)
        batch.offsets.append(offset)
        batch.keys.append(key)
        batch.values.append(value)
        batch.timestamps_ms.append(1_772_443_800_000 + offset)
    return batch


@pytest.fixture(scope="session")
def shard_batch() -> Callable[..., ShardBatch]:
    """``shard_batch([(partition, offset, key, value), ...], topic=..., committed=...) -> ShardBatch``"""
    return build_shard_batch
