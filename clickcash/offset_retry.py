"""When to retry a consumer group's offset request, and what to say when giving up. Pure: no Kafka imports,
nothing of the project (the router and the cluster tools both use it).

A group's committed offsets are served by its coordinator, a broker chosen through the internal
``__consumer_offsets`` topic. On a fresh broker nothing has created that topic yet: the first offset request
makes the broker create it, and until its partitions have leaders and their state is loaded the broker
answers ``NOT_COORDINATOR``, ``COORDINATOR_NOT_AVAILABLE`` or ``COORDINATOR_LOAD_IN_PROGRESS`` (and librdkafka
may time out while waiting for a coordinator). The same happens for a few seconds after a broker restart or a
coordinator moving. These answers are transient: the request is retried with backoff, within a bounded time,
and only then fails with one line naming the service and what to check.
"""

from __future__ import annotations

from dataclasses import dataclass

TRANSIENT_ERRORS: frozenset[str] = frozenset(
    {
        "NOT_COORDINATOR",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "COORDINATOR_NOT_AVAILABLE",
        "REQUEST_TIMED_OUT",
        "_TIMED_OUT",
        "_WAIT_COORD",
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
    }
)
"""librdkafka error names (``KafkaError.name()``) that a broker returns while a coordinator or partition
leader is being (re)established: waiting helps. Anything else (authorization, unknown group or topic,
invalid request) will not get better by waiting and fails at once."""


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How long an offsets request keeps retrying transient errors, and how its backoff grows."""

    budget_s: float = 30.0
    """total time from the first attempt after which a transient error is reported instead of retried;
    a fresh single broker creates its offsets topic in a few seconds"""
    first_delay_s: float = 0.1
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        if self.budget_s < 0 or self.first_delay_s <= 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError(
                "RetryBudget: budget_s must be >= 0 and 0 < first_delay_s <= max_delay_s, "
                f"got {self.budget_s}, {self.first_delay_s}, {self.max_delay_s}"
            )


def is_transient(error_name: str, retriable: bool) -> bool:
    """True if waiting can help: a known coordinator/leader transition, or an error the client calls
    retriable."""
    return retriable or error_name in TRANSIENT_ERRORS


def next_delay(
    error_name: str, retriable: bool, attempt: int, elapsed_s: float, budget: RetryBudget
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None to give up.

    ``attempt`` counts failed attempts so far, starting at 0; ``elapsed_s`` is the time since the first one
    began. The delay doubles from ``first_delay_s`` up to ``max_delay_s`` and never runs past the budget.
    """
    if not is_transient(error_name, retriable):
        return None
    remaining = budget.budget_s - elapsed_s
    if remaining <= 0:
        return None
    delay = min(budget.max_delay_s, budget.first_delay_s * (2 ** min(attempt, 30)))
    return min(delay, remaining)


def failure_message(
    operation: str, group_id: str, bootstrap: str, error_name: str, detail: str, elapsed_s: float
) -> str:
    """One line for the person at the terminal: what failed, against what, why, and what to check."""
    if is_transient(error_name, False):
        why = f"still failing after {elapsed_s:.0f} s ({error_name}: {detail})"
        check = (
            "check that the broker is up and healthy (`clickcash services status` for the local one) "
            "and that it can create its __consumer_offsets topic "
            "(offsets.topic.replication.factor <= live brokers)"
        )
    else:
        why = f"{error_name}: {detail}"
        check = "check the group and topic names and the client's permissions on them"
    return f"could not {operation} of consumer group {group_id!r} at {bootstrap}: {why}; {check}"
