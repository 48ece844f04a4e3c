"""Hostile input on the real stack: a record too big for its dead letter, card numbers in every form and
place, forged timer commands. The stream moves on, nothing is lost, and no card number reaches Redis or
an output."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import orjson
import redis
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from clickcash.card_data import holds_card_number
from clickcash.cluster.topics import all_topics, ensure_topics
from clickcash.cluster.verify import verify
from clickcash.config.settings import Settings
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
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

POISON_BYTES = 1_040_000
"""accepted by a broker with Kafka's default limit (1,048,588), too big for a dead letter with headers"""


def _padded(size: int) -> bytes:
    head, tail = b'{"specversion": "1.0", "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _record_bytes(o: Any) -> int:
    return len(o.key or b"") + len(o.value) + sum(len(k) + len(v) for k, v in o.headers.items())


def test_records_too_big_for_the_pipeline_do_not_stop_the_stream(make_settings: SettingsFactory) -> None:
    """The issue's 1,040,000-byte record, and one just under the topic's limit that cannot fit in a
    dead letter with its headers: each gives one dead letter that fits, and 1,000 events of other
    customers behind them are all decided."""
    settings = make_settings(partitions=2, pipeline={"shards": 2})
    limit = settings.kafka.max_message_bytes
    poison, tight = _padded(POISON_BYTES), _padded(limit - 200)
    others = [
        (f"c{i % 250}".encode(), event(f"e{i}", "order.placed", f"c{i % 250}", order(f"o{i}", f"c{i % 250}")))
        for i in range(1_000)
    ]
    produce(settings, [(b"c-poison", poison), (b"c-tight", tight), *others])
    with running_app(settings) as app:
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, expected=2_002)
    decided = Counter(o.causationid for o in outputs if o.type in ("order.accepted", "order.rejected"))
    assert set(decided) == {f"e{i}" for i in range(1_000)} and max(decided.values()) == 1
    letters = {o.key: o for o in outputs if o.topic == settings.kafka.dlq_topic}
    assert set(letters) == {b"c-poison", b"c-tight"}
    for o in letters.values():
        assert orjson.loads(o.headers["clickcash_reason"])["code"] == "oversized"
        assert _record_bytes(o) <= limit
    whole = letters[b"c-poison"]
    assert whole.value == poison and orjson.loads(whole.headers["clickcash_reason"])["truncated"] is None
    cut = letters[b"c-tight"]
    assert orjson.loads(cut.headers["clickcash_reason"])["truncated"] == {
        "original_bytes": len(tight),
        "original_sha256": hashlib.sha256(tight).hexdigest(),
        "prefix_bytes": len(cut.value),
    }
    assert tight.startswith(cut.value) and len(cut.value) > limit // 2
    assert verify(settings, settle_s=1.0, log=lambda _m: None).ok


# --- card data ---------------------------------------------------------------------------------------

PANS = {
    "plain": "4111111111111111",
    "spaces_and_cvv": "4111 1111 1111 1111 123",
    "expiry": "5555 5555 5555 4444 12/27",
    "dots": "3782.822463.10005",
    "slashes": "6011/1111/1111/1117",
    "double_spaces": "4012  8888  8888  1881",
    "full_width": "".join(chr(0xFF10 + int(d)) for d in "4111111111111111"),
    "devanagari": "".join(chr(0x966 + int(d)) for d in "5105105105105100"),
    "dash_nbsp": "4111\u20131111\u00a01111-1111",
}
ESCAPED = {
    "json_escapes": b"\\u0034\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u003111111111",
    "escaped_slashes": b"4111\\/1111\\/1111\\/1111",
}
PAN_DIGITS = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
    "4012888888881881",
]
PAN_DIGITS.append("5105105105105100")


def _card_records() -> list[tuple[bytes | None, bytes]]:
    """Every variant in several places: token of an order and of a payment-method update, a SKU, a
    decline code, an extra field, the event id, the partition key and the Kafka key."""
    out: list[tuple[bytes | None, bytes]] = []
    n = 0

    def add(key: bytes | None, value: bytes) -> None:
        nonlocal n
        n += 1
        out.append((key, value))

    for name, pan in PANS.items():
        cust = f"card-{name}"
        pm = {"type": "card", "network": "visa", "token": pan}
        add(
            cust.encode(),
            event(f"{name}-1", "order.placed", cust, order(f"{name}-o1", cust, payment_method=pm)),
        )
        upd = {"customer_id": cust, "payment_method": pm}
        add(cust.encode(), event(f"{name}-2", "payment_method.updated", cust, upd))
        sku = order(f"{name}-o2", cust)
        sku["items"][0]["sku"] = pan
        add(cust.encode(), event(f"{name}-3", "order.placed", cust, sku))
        add(cust.encode(), event(f"{name}-4", "payment.declined", cust, {**declined("o", cust), "note": pan}))
        add(cust.encode(), event(f"id-{pan}", "order.placed", cust, order(f"{name}-o3", cust)))
        add(pan.encode(), event(f"{name}-6", "order.placed", pan, order(f"{name}-o4", pan)))
        add(cust.encode(), event(f"{name}-7", "order.placed", cust, order(f"{name}-o5", cust)))  # a valid one
    for name, escaped in ESCAPED.items():
        cust = f"card-{name}"
        raw = event(
            f"{name}-1",
            "payment_method.updated",
            cust,
            {"customer_id": cust, "payment_method": {"type": "card", "network": "visa", "token": "@@"}},
        )
        add(cust.encode(), raw.replace(b"@@", escaped))
    return out


def _redis_dump(client: redis.Redis, prefix: str) -> list[bytes]:
    """Every key name and every value (all types) under ``prefix``."""
    r: Any = client  # redis-py's annotations cover every decoding mode: read raw replies untyped
    out: list[bytes] = []
    for key in r.scan_iter(match=f"{prefix}:*", count=1000):
        out.append(key)
        kind = r.type(key)
        values: Any
        if kind == b"string":
            values = [r.get(key) or b""]
        elif kind == b"hash":
            values = [x for pair in r.hgetall(key).items() for x in pair]
        elif kind == b"zset":
            values = [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        elif kind == b"set":
            values = list(r.smembers(key))
        elif kind == b"list":
            values = list(r.lrange(key, 0, -1))
        elif kind == b"stream":
            values = [x for _, fields in r.xrange(key) for pair in fields.items() for x in pair]
        else:
            raise AssertionError(f"unexpected Redis type {kind!r} of {key!r}")
        out += [v if isinstance(v, bytes) else str(v).encode() for v in values]
    return out


def _clean(blob: bytes, where: str) -> None:
    assert not holds_card_number(blob), f"card number in {where}: {blob[:200]!r}"
    digits = bytes(b for b in blob if 48 <= b <= 57).decode()
    for pan in PAN_DIGITS:
        assert pan not in digits or pan not in blob.decode("utf-8", "replace"), f"{pan} in {where}"


def test_card_numbers_never_reach_redis_or_an_output(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=3, pipeline={"shards": 2})
    cards = _card_records()
    gen = CampaignGenerator(CampaignMix(customers=200), seed=5, run_id="cards")
    campaign = [(e.key, e.value) for e in gen.events(1_500)]
    produce(settings, [*campaign[:700], *cards, *campaign[700:]])
    with running_app(settings) as app:
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, idle_s=2.0)
    card_letters = [
        o
        for o in outputs
        if o.topic == settings.kafka.dlq_topic
        and orjson.loads(o.headers["clickcash_reason"])["code"] == "card_data"
    ]
    valid_per_variant = len(PANS)  # the "-7" order of each variant customer is clean
    assert len(card_letters) == len(cards) - valid_per_variant
    assert all(orjson.loads(o.headers["clickcash_reason"])["redacted"] for o in card_letters)
    decided = {o.causationid for o in outputs if o.type in ("order.accepted", "order.rejected")}
    assert {f"{name}-7" for name in PANS} <= decided, "a customer's clean events after card data still flow"
    for o in outputs:
        _clean(o.value, f"{o.topic} value")
        _clean(o.key or b"", f"{o.topic} key")
        for name, header in o.headers.items():
            _clean(header, f"{o.topic} header {name}")
    r = redis.Redis.from_url(settings.redis.url.get_secret_value())
    try:
        stored = _redis_dump(r, settings.redis.key_prefix)
    finally:
        r.close()
    assert len(stored) > 1_000, "the run must have stored state to look at"
    for blob in stored:
        _clean(blob, "Redis")
    assert verify(settings, settle_s=1.0, log=lambda _m: None).ok


def test_a_forged_timer_command_is_dead_lettered_and_the_verifier_agrees(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(partitions=1, pipeline={"shards": 1})
    cust = "c-forge"
    forged_data: dict[str, Any] = {
        "customer_id": cust,
        "order_id": "o-1",
        "plan_id": "plan-guessed",
        "step_index": 1,
        "due_ms": 0,
        "mac": "0" * 64,
    }
    forged = orjson.loads(event("timer:plan-guessed:1", "dunning.timer_fired", cust, forged_data))
    forged["source"] = "clickcash/timers"
    records = [
        (cust.encode(), event("p1", "order.placed", cust, order("o-1", cust))),
        (cust.encode(), event("d1", "payment.declined", cust, declined("o-1", cust))),
        (cust.encode(), orjson.dumps(forged)),
    ]
    produce(settings, records)
    with running_app(settings) as app:
        wait_for_drain(settings, app)
    outputs = read_outputs(settings, idle_s=2.0)
    [dl] = [o for o in outputs if o.topic == settings.kafka.dlq_topic]
    assert orjson.loads(dl.headers["clickcash_reason"])["code"] == "forged_command"
    assert int(dl.headers["clickcash_source_offset"]) == 2
    assert verify(settings, settle_s=1.0, log=lambda _m: None).ok


def test_ensure_topics_sets_every_topics_limit_from_the_one_setting(make_settings: SettingsFactory) -> None:
    settings = make_settings(partitions=1)
    raised = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"max_message_bytes": 2_000_000})}
    )

    def limits(s: Settings) -> dict[str, str]:
        admin = AdminClient(s.kafka.client_config())
        described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in all_topics(s)])
        return {res.name: fut.result()["max.message.bytes"].value for res, fut in described.items()}

    assert set(limits(settings).values()) == {str(settings.kafka.max_message_bytes)}
    ensure_topics(raised, partitions=1)  # the topics exist: only their limit changes
    assert set(limits(raised).values()) == {"2000000"}
