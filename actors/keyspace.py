"""Every Redis key clickcash writes, in one place: names, the timer member format, and each key's lifetime.

All keys live under ``<prefix>:`` (``redis.key_prefix``), so one prefix is one deployment's whole state, the
Redis ACL of a role is ``~<prefix>:*``, and a scan of ``<prefix>:*`` finds everything a customer left behind.
Modules that read or write Redis build their keys here instead of spelling them, so the retention table in
``docs/data-protection.md`` (and :data:`KEY_CLASSES`) is complete by construction.

Pure: no Redis, no settings; imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMER_SEP = "\x1f"
"""separates the fields of a timer member (a control character: it cannot occur in a validated id)"""


@dataclass(frozen=True, slots=True)
class KeyClass:
    """One family of keys: its pattern below the prefix, what it holds, and how long it lives."""

    name: str
    pattern: str
    holds: str
    lifetime: str


KEY_CLASSES: tuple[KeyClass, ...] = (
    KeyClass(
        "customer",
        "cust:<customer>",
        "the customer's state document (<version>|<json>: open orders, dunning plans, counters)",
        "pipeline.customer_ttl_s since the customer's last write (refreshed on every write)",
    ),
    KeyClass(
        "idempotency",
        "idem:<event id>",
        "the first sighting of an event id: payload fingerprint, partition, offset",
        "pipeline.idempotency_retention_s from the first sighting",
    ),
    KeyClass(
        "batch_responses",
        "resps:<writer>.<batch>",
        "the first responses of one shard batch's new events (framed event id + outputs), returned on a "
        "replay of the same offset; each event's idempotency record names the batch",
        "deleted once every offset of the batch is committed; at most pipeline.replay_response_ttl_s",
    ),
    KeyClass(
        "response",
        "resp:<event id>",
        "previous layout only (no longer written): the first response to one event, still read on replay",
        "deleted at release by the version that wrote it, else at most pipeline.replay_response_ttl_s",
    ),
    KeyClass(
        "timers",
        "timers:<partition>",
        "sorted set of due dunning steps of one input partition (member: customer, order, plan, step)",
        "one member per open dunning plan; removed when the step fires or the plan closes",
    ),
    KeyClass(
        "psp_counter",
        "psp:<psp>|<segment>|<bucket start ms>|<a|o|t>",
        "PSP authorization outcome counters per segment and time bucket (no customer data)",
        "routing bucket_ms x (max_buckets + 1), then expire",
    ),
    KeyClass(
        "topology",
        "topology",
        "the partition and shard layout the routers agreed on",
        "permanent (one small key)",
    ),
    KeyClass(
        "parked_index",
        "parked",
        "hash: parked customer -> partition, offset, reason and time it was parked",
        "until an operator replays or drops the customer",
    ),
    KeyClass(
        "parked_records",
        "parked:r:<customer>",
        "hash: the parked customer's held input records, by partition and offset",
        "until an operator replays or drops the customer",
    ),
    KeyClass(
        "parked_requests",
        "parked:requests",
        "hash: customer -> operator request (replay or drop) waiting for the owning router",
        "until the owning router acts on it",
    ),
    KeyClass(
        "parked_outcomes",
        "parked:outcomes",
        "hash: customer -> outcome of the last operator request",
        "no expiry: one small entry per parked customer, an operator decides",
    ),
    KeyClass(
        "parked_dropped",
        "parked:dropped",
        "set: <partition>:<offset> of every dropped record (for the verifier)",
        "no expiry: an operator decides (tiny, no customer data)",
    ),
    KeyClass(
        "parked_erased",
        "parked:erased",
        "set: <partition>:<offset> of held records erased with their customer (clickcash forget)",
        "no expiry: an operator decides (tiny, no customer data)",
    ),
    KeyClass(
        "paused_campaigns",
        "paused",
        "set: campaign ids whose events are held (clickcash pause / resume)",
        "no expiry: an operator resumes (tiny, no customer data)",
    ),
)


def customer(prefix: str, customer_id: str) -> str:
    return f"{prefix}:cust:{customer_id}"


def idempotency(prefix: str, event_id: str) -> str:
    return f"{prefix}:idem:{event_id}"


def response(prefix: str, event_id: str) -> str:
    """One event's first response in the previous layout: read on replay, never written any more."""
    return f"{prefix}:resp:{event_id}"


def batch_responses(prefix: str, batch_ref: str) -> str:
    """The first responses of one shard batch (``batch_ref``: ``<writer>.<batch>``, see
    ``clickcash.actors.state.layout``), released with one UNLINK once all its offsets are committed."""
    return f"{prefix}:resps:{batch_ref}"


def timers(prefix: str, partition: int) -> str:
    """The sorted set of dunning timers of one input partition (score = due time in ms).

    Timers live with the partition their customer's events use, so the router that owns the partition is
    the one that fires them, and firing goes through the same ordered, transactional path as events.
    """
    return f"{prefix}:timers:{partition}"


def psp_counter_suffix(psp: str, segment: str, bucket_start_ms: int, what: str) -> str:
    """A PSP counter's key below the prefix: ``psp:<psp>|<segment>|<bucket>|<a|o|t>``."""
    return f"psp:{psp}|{segment}|{bucket_start_ms}|{what}"


def below(prefix: str, suffix: str) -> str:
    """A key given by its part below the prefix (PSP counters are built and cached without it)."""
    return f"{prefix}:{suffix}"


def topology(prefix: str) -> str:
    return f"{prefix}:topology"


def parked_index(prefix: str) -> str:
    return f"{prefix}:parked"


def parked_records_prefix(prefix: str) -> str:
    """Prefix of the per-customer hashes of held records (append the customer id)."""
    return f"{prefix}:parked:r:"


def parked_records(prefix: str, customer_id: str) -> str:
    return parked_records_prefix(prefix) + customer_id


def parked_requests(prefix: str) -> str:
    return f"{prefix}:parked:requests"


def parked_outcomes(prefix: str) -> str:
    return f"{prefix}:parked:outcomes"


def parked_dropped(prefix: str) -> str:
    return f"{prefix}:parked:dropped"


def parked_erased(prefix: str) -> str:
    return f"{prefix}:parked:erased"


def paused_campaigns(prefix: str) -> str:
    return f"{prefix}:paused"


def all_keys(prefix: str) -> str:
    """The glob of every key of a deployment (SCAN MATCH, Redis ACL ``~`` pattern)."""
    return f"{prefix}:*"


def timer_member(customer_id: str, order_id: str, plan_id: str, step: int) -> str:
    """A timer's member in its partition's sorted set: the customer comes first, so it can be found by
    customer without decoding anything else."""
    return TIMER_SEP.join([customer_id, order_id, plan_id, str(step)])


def parse_timer_member(member: str) -> tuple[str, str, str, int]:
    """(customer, order, plan, step) of a timer member; ValueError when it is not one."""
    customer_id, order_id, plan_id, step = member.split(TIMER_SEP)
    return customer_id, order_id, plan_id, int(step)


_CLASS_BY_HEAD = {
    "cust": "customer",
    "idem": "idempotency",
    "resp": "response",
    "resps": "batch_responses",
    "timers": "timers",
    "psp": "psp_counter",
    "topology": "topology",
    "paused": "paused_campaigns",
}
_PARKED = {
    "requests": "parked_requests",
    "outcomes": "parked_outcomes",
    "dropped": "parked_dropped",
    "erased": "parked_erased",
}


def classify(prefix: str, key: str) -> str | None:
    """The :class:`KeyClass` name of a key under ``prefix``, or None when it is not one of clickcash's."""
    if not key.startswith(prefix + ":"):
        return None
    rest = key[len(prefix) + 1 :]
    if rest == "parked":
        return "parked_index"
    if rest.startswith("parked:r:"):
        return "parked_records"
    if rest.startswith("parked:"):
        return _PARKED.get(rest[len("parked:") :])
    head = rest.split(":", 1)[0].split("|", 1)[0]
    return _CLASS_BY_HEAD.get(head)
