"""Structured log lines: the dead-letter WARNING carries ids and position (never payload or card data) and is
rate-limited per shard; the rate limiter runs on an injected clock."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from clickcash.actors.contract import OutputTopics, ShardBatch
from clickcash.actors.shard import Shard
from clickcash.actors.state.base import InMemoryStateStore
from clickcash.config.domain import DomainConfig
from clickcash.events import looks_like_card_number
from clickcash.logs import JsonFormatter, RateLimitedLog, RateLimiter, _ProcessFields
from tests.unit._strategies import VISA_TEST_PAN

TOPICS = OutputTopics("clickcash.orders", "clickcash.payments", "clickcash.dunning", "clickcash.dlq")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """JSON lines logged under ``clickcash.actors.shard`` as a shard actor's process formats them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ProcessFields({"shard_id": 3}))
    logger = logging.getLogger("clickcash.actors.shard")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _shard(domain: DomainConfig) -> Shard:
    return Shard(3, TOPICS, domain, InMemoryStateStore(clock=lambda: 1_000.0))


# --- the rate limiter ---------------------------------------------------------------------------------


def test_rate_limiter_grants_the_limit_per_window_and_reports_refusals_once() -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit=3, window_s=10.0, clock=clock)
    assert [limiter.acquire() for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    clock.now += 9.9
    assert limiter.acquire() == (False, 0)
    assert limiter.expire() == 0
    clock.now += 0.1  # the window ended: its 3 refusals are reported with the next grant
    assert limiter.acquire() == (True, 3)
    assert limiter.acquire() == (True, 0)
    clock.now += 10
    assert limiter.expire() == 0  # nothing was refused in the window that ended


def test_rate_limiter_expire_reports_a_flood_that_stopped() -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit=1, window_s=5.0, clock=clock)
    limiter.acquire()
    limiter.acquire()
    limiter.acquire()
    assert limiter.expire() == 0
    clock.now += 5
    assert limiter.expire() == 2
    assert limiter.expire() == 0


def test_rate_limited_log_says_how_many_lines_it_suppressed(
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    clock = FakeClock()
    rl = RateLimitedLog(
        logging.getLogger("clickcash.actors.shard"), "dead-letter", RateLimiter(2, 10.0, clock)
    )
    built: list[int] = []

    def fields_of(i: int) -> Callable[[], dict[str, Any]]:
        def build() -> dict[str, Any]:
            built.append(i)
            return {"built": i}

        return build

    for i in range(7):
        rl.warning("line %d", i, n=i, more_fields=fields_of(i))
    rl.flush()
    assert [(line["msg"], line["n"], line["built"]) for line in json_lines()] == [
        ("line 0", 0, 0),
        ("line 1", 1, 1),
    ]
    assert built == [0, 1], "fields of suppressed lines are never built"
    clock.now += 10
    rl.flush()
    last = json_lines()[-1]
    assert last["level"] == "WARNING"
    assert last["suppressed"] == 5
    assert last["msg"] == "5 dead-letter log lines suppressed (more than 2 in 10 s)"


def test_a_logger_that_drops_warnings_gets_no_fields_built() -> None:
    logger = logging.getLogger("clickcash.tests.quiet")
    logger.setLevel(logging.ERROR)
    rl = RateLimitedLog(logger, "dead-letter", RateLimiter(2, 10.0, FakeClock()))
    built: list[int] = []

    def build() -> dict[str, Any]:
        built.append(1)
        return {}

    for i in range(3):
        rl.warning("line %d", i, more_fields=build)
    assert built == [], "a granted line the logger drops costs no field building"


# --- the shard's dead-letter lines --------------------------------------------------------------------


def test_a_dead_letter_logs_one_warning_with_its_position_and_no_card_data(
    domain: DomainConfig,
    cloud_event: Callable[..., bytes],
    event_data: Callable[..., dict[str, Any]],
    shard_batch: Callable[..., ShardBatch],
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    data = event_data("order.placed")
    data["payment_method"]["token"] = VISA_TEST_PAN
    data["note"] = f"card {VISA_TEST_PAN}"
    data[VISA_TEST_PAN] = "x"  # an extra key: the field the decoder names holds the card number
    raw = cloud_event("order.placed", data, event_id="e-1", correlationid="corr-1")
    _shard(domain).apply(shard_batch([(2, 41, b"c-1", raw)]))
    [line] = json_lines()
    assert line["level"] == "WARNING"
    assert line["logger"] == "clickcash.actors.shard"
    assert line["shard_id"] == 3
    assert line["dead_letter_code"] == "card_data"
    assert line["msg"] == "dead letter: card_data"
    assert (line["source_topic"], line["source_partition"], line["source_offset"]) == (
        "clickcash.events",
        2,
        41,
    )
    assert line["field"] == "value"
    # a record that failed decoding has no trusted event: no event or correlation id
    assert "event_id" not in line and "correlation_id" not in line
    text = orjson.dumps(line).decode()
    assert VISA_TEST_PAN not in text
    assert "4111" not in text
    assert not any(looks_like_card_number(str(v)) for v in line.values())


def test_a_duplicate_conflict_logs_event_and_correlation_id(
    domain: DomainConfig,
    cloud_event: Callable[..., bytes],
    event_data: Callable[..., dict[str, Any]],
    shard_batch: Callable[..., ShardBatch],
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    shard = _shard(domain)
    first = cloud_event("order.placed", event_data("order.placed"), event_id="dup", correlationid="corr-9")
    shard.apply(shard_batch([(0, 10, b"c-1", first)]))
    assert json_lines() == []  # nothing per event at INFO (or above) for a processed event
    data = event_data("order.placed", total_cents=9999)
    changed = cloud_event("order.placed", data, event_id="dup", correlationid="corr-9")
    shard.apply(shard_batch([(1, 77, b"c-1", changed)]))
    [line] = json_lines()
    assert line["dead_letter_code"] == "duplicate_conflict"
    assert (line["event_id"], line["correlation_id"], line["field"]) == ("dup", "corr-9", "id")
    assert (line["source_partition"], line["source_offset"], line["shard_id"]) == (1, 77, 3)


def test_a_malformed_flood_is_rate_limited_per_shard(
    domain: DomainConfig,
    shard_batch: Callable[..., ShardBatch],
    json_lines: Callable[[], list[dict[str, Any]]],
) -> None:
    shard = _shard(domain)
    clock = FakeClock()
    shard.dead_letter_log.limiter = RateLimiter(20, 10.0, clock)
    shard.apply(shard_batch([(0, i, b"c-1", b"{not json") for i in range(100)]))
    lines = json_lines()
    assert len(lines) == 20
    assert {line["dead_letter_code"] for line in lines} == {"malformed_json"}
    clock.now += 10
    shard.dead_letter_log.flush()
    assert json_lines()[-1]["suppressed"] == 80


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_card_number_in_any_log_line_is_masked(log_format: str) -> None:
    """Whatever a line quotes (an exception message, a library's text, a field), no card number leaves."""
    from clickcash.logs import configure_logging

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers = [logging.StreamHandler(stream)]
    try:
        configure_logging(log_format, "INFO")
        logger = logging.getLogger("tests.masking")
        logger.warning(
            "token 4111 1111 1111 1111 12/27 from %s", "\uff14" + "\uff11" * 15, extra={"pan": VISA_TEST_PAN}
        )
        try:
            raise ValueError(f"bad card {VISA_TEST_PAN}")
        except ValueError:
            logger.exception("failed")
    finally:
        root.handlers, _ = saved
        root.setLevel(saved[1])
    text = stream.getvalue()
    assert text.count("\n") >= 2
    assert VISA_TEST_PAN not in text and "4111 1111" not in text and "\uff11\uff11" not in text
    assert not looks_like_card_number(text)
    assert "****************" in text
