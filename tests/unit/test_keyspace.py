"""The Redis keyspace has one home: every key class is listed with its lifetime, and no module spells keys."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from clickcash.actors import keyspace
from clickcash.actors.state.base import OpenDunning, PendingStep

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_CLASSES = {
    "customer",
    "idempotency",
    "response",
    "batch_responses",
    "timers",
    "psp_counter",
    "topology",
    "parked_index",
    "parked_records",
    "parked_requests",
    "parked_outcomes",
    "parked_dropped",
    "parked_erased",
    "paused_campaigns",
}


def test_every_key_class_is_listed_with_a_lifetime() -> None:
    names = [k.name for k in keyspace.KEY_CLASSES]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_CLASSES
    for k in keyspace.KEY_CLASSES:
        assert k.pattern and k.holds and k.lifetime, k


def _glob(pattern: str) -> str:
    return re.sub(r"<[^>]+>", "*", pattern)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("customer", keyspace.customer("cc", "c-1")),
        ("idempotency", keyspace.idempotency("cc", "e-1")),
        ("response", keyspace.response("cc", "e-1")),
        ("batch_responses", keyspace.batch_responses("cc", "0a1b2c3d4e5f.7")),
        ("timers", keyspace.timers("cc", 3)),
        ("psp_counter", keyspace.below("cc", keyspace.psp_counter_suffix("adyen", "visa|EUR|DE", 0, "a"))),
        ("topology", keyspace.topology("cc")),
        ("parked_index", keyspace.parked_index("cc")),
        ("parked_records", keyspace.parked_records("cc", "c-1")),
        ("parked_requests", keyspace.parked_requests("cc")),
        ("parked_outcomes", keyspace.parked_outcomes("cc")),
        ("parked_dropped", keyspace.parked_dropped("cc")),
        ("parked_erased", keyspace.parked_erased("cc")),
        ("paused_campaigns", keyspace.paused_campaigns("cc")),
    ],
)
def test_each_builder_makes_a_key_of_its_class_under_the_prefix(name: str, key: str) -> None:
    assert fnmatch.fnmatchcase(key, keyspace.all_keys("cc"))
    (cls,) = [k for k in keyspace.KEY_CLASSES if k.name == name]
    assert fnmatch.fnmatchcase(key, "cc:" + _glob(cls.pattern)), (key, cls.pattern)


def test_timer_member_round_trips_and_leads_with_the_customer() -> None:
    member = keyspace.timer_member("c-1", "o-1", "plan-a", 2)
    assert member.split(keyspace.TIMER_SEP, 1)[0] == "c-1"
    assert keyspace.parse_timer_member(member) == ("c-1", "o-1", "plan-a", 2)
    plan = OpenDunning(plan_id="plan-a", steps=[PendingStep(kind="retry", due_ms=1)] * 3, next_index=2)
    assert plan.timer_member("c-1", "o-1") == member
    with pytest.raises(ValueError):
        keyspace.parse_timer_member("not-a-member")


_SPELLED = re.compile(r"""f["'][^"']*\{(?:self\.)?_?(?:key_)?prefix\}:""")


def test_no_module_outside_the_keyspace_spells_a_redis_key() -> None:
    offenders = []
    for folder in ("actors", "router", "cluster", "clickcash"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "keyspace.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _SPELLED.search(line) or re.search(r"""f["']\{self\._p\}:""", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_classify_names_the_class_of_every_builder_key() -> None:
    built = {
        "customer": keyspace.customer("cc", "c:1"),
        "idempotency": keyspace.idempotency("cc", "e:1"),
        "response": keyspace.response("cc", "e:1"),
        "batch_responses": keyspace.batch_responses("cc", "0a1b2c3d4e5f.7"),
        "timers": keyspace.timers("cc", 0),
        "psp_counter": keyspace.below("cc", keyspace.psp_counter_suffix("p", "visa|EUR|DE", 0, "o")),
        "topology": keyspace.topology("cc"),
        "parked_index": keyspace.parked_index("cc"),
        "parked_records": keyspace.parked_records("cc", "c:1"),
        "parked_requests": keyspace.parked_requests("cc"),
        "parked_outcomes": keyspace.parked_outcomes("cc"),
        "parked_dropped": keyspace.parked_dropped("cc"),
        "parked_erased": keyspace.parked_erased("cc"),
        "paused_campaigns": keyspace.paused_campaigns("cc"),
    }
    assert set(built) == {k.name for k in keyspace.KEY_CLASSES}
    for name, key in built.items():
        assert keyspace.classify("cc", key) == name, key
    assert keyspace.classify("cc", "other:cust:c1") is None
    assert keyspace.classify("cc", "cc:unknown") is None
