"""What the router does after a failed round: retry with backoff, isolate the failing record, or wait out
an outage. Pure and typed: no Kafka, Ray or Redis; time is an argument.

Without a budget one poison record (an engine exception, an undecodable stored state, an output the broker
refuses) halts every customer: the router rewinds and replays the same round for ever. The policy here
tells two kinds of failure apart:

* an **outage** (Redis or the broker unreachable, Redis out of memory) is not the records' fault: the
  router backs off exponentially up to a cap and replays when the service is back; nothing is isolated or
  parked, however long it lasts, and the outage is reported (router stats, metrics, stall watchdog);
* a **processing** failure is retried ``max_attempts`` times with backoff (a shard restart or a lost
  race passes); if it keeps failing the router *isolates*: it replays with rounds capped to half the
  failed round, one round at a time, committing each round that succeeds, and halves the cap again on
  each failure. A round of one record that still fails ``max_attempts`` times is the poison record: the
  router parks its customer (``clickcash.router.parking``) and goes back to full rounds.

Isolation ends too once as many records as the failed round held have committed: the failure was not
deterministic after all, and full rounds resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class FailureKind(StrEnum):
    OUTAGE = "outage"
    """a backing service is unavailable: back off and wait, never blame a record"""
    PROCESSING = "processing"
    """the round itself failed (a shard raised or died, a Kafka call refused its outputs)"""


class Action(StrEnum):
    RETRY = "retry"
    """rewind and replay after ``wait_s``"""
    PARK = "park"
    """the uncommitted round is the single poison record: park it, then rewind and go on"""


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    wait_s: float
    round_cap: int | None
    """records per round from now on (None: full rounds)"""


# librdkafka error names that mean the broker or the coordinator is unreachable or busy, not that the
# records are wrong (an outage: back off, never isolate)
_KAFKA_OUTAGE_ERRORS = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_TIMED_OUT",
        "_MSG_TIMED_OUT",
        "_RESOLVE",
        "_WAIT_COORD",
        "_NOT_IMPLEMENTED",
        "_DESTROY",
        "_FENCED",
        "_STATE",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_COORDINATOR",
        "COORDINATOR_NOT_AVAILABLE",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "CONCURRENT_TRANSACTIONS",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "KAFKA_STORAGE_ERROR",
        "THROTTLING_QUOTA_EXCEEDED",
    }
)


def kafka_failure_kind(error_name: str) -> FailureKind:
    """An outage for errors of reachability or load; processing for the rest (a record too large, an
    invalid record, a refused transaction), which isolation can pin on a record."""
    return FailureKind.OUTAGE if error_name in _KAFKA_OUTAGE_ERRORS else FailureKind.PROCESSING


Position = tuple[int, int]
"""(partition, offset) of a record"""


@dataclass
class FailurePolicy:
    max_attempts: int
    """failures of the same round (or of one isolated record) before isolating (or parking)"""
    backoff_initial_s: float
    backoff_max_s: float
    """cap of the wait between attempts of a failing round"""
    outage_backoff_max_s: float
    """cap of the wait between attempts while a service is unavailable"""

    attempts: int = 0
    """consecutive processing failures of full rounds"""
    single_failures: dict[Position, int] = field(default_factory=dict)
    """failures of rounds of one record, per record: counted per record because, while isolating,
    rounds of other partitions' records may commit between two attempts of the poison record"""
    round_cap: int | None = None
    """isolating: records per round (None: not isolating)"""
    isolating_records: int = 0
    """isolating: records of the round that first failed; passing that many ends isolation"""
    passed: int = 0
    """isolating: records committed since isolation began"""
    outage_since_s: float | None = None
    outage_service: str = ""
    outage_attempts: int = 0
    parked: int = 0
    """customers parked by this router since it started"""
    isolations: int = 0
    """times this router started isolating"""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")

    @property
    def isolating(self) -> bool:
        return self.round_cap is not None

    def backoff_s(self, attempt: int, cap_s: float) -> float:
        """Exponential from ``backoff_initial_s``: attempt 1 waits the initial value, each next one twice
        the previous, never more than ``cap_s``."""
        return min(cap_s, self.backoff_initial_s * 2 ** max(0, min(attempt - 1, 30)))

    def failed(
        self, now_s: float, kind: FailureKind, uncommitted: Sequence[Position], service: str = ""
    ) -> Verdict:
        """A round failed; ``uncommitted``: the records consumed and not committed when it did."""
        n = len(uncommitted)
        if kind is FailureKind.OUTAGE or n == 0:
            # n == 0: a fence or a commit of positions failed; there is no record to blame, so no
            # isolation: wait as for an outage
            if self.outage_since_s is None:
                self.outage_since_s = now_s
                self.outage_attempts = 0
            self.outage_service = service or "shards"
            self.outage_attempts += 1
            wait_s = self.backoff_s(self.outage_attempts, self.outage_backoff_max_s)
            return Verdict(Action.RETRY, wait_s, self.round_cap)
        if n == 1:
            pos = uncommitted[0]
            count = self.single_failures[pos] = self.single_failures.get(pos, 0) + 1
            if count >= self.max_attempts:
                del self.single_failures[pos]
                return Verdict(Action.PARK, 0.0, self.round_cap)
            return Verdict(Action.RETRY, self.backoff_s(count, self.backoff_max_s), self.round_cap)
        if self.round_cap is not None:
            # isolating: the full round already used its attempts, so a smaller round that fails is
            # halved at once; only a single record gets the whole budget before it is parked
            self.round_cap = max(1, min(self.round_cap, n) // 2)
            return Verdict(Action.RETRY, self.backoff_initial_s, self.round_cap)
        self.attempts += 1
        if self.attempts < self.max_attempts:
            return Verdict(Action.RETRY, self.backoff_s(self.attempts, self.backoff_max_s), None)
        self.attempts = 0
        self.isolations += 1
        self.isolating_records = n
        self.passed = 0
        self.round_cap = max(1, n // 2)
        return Verdict(Action.RETRY, self.backoff_initial_s, self.round_cap)

    def parked_one(self) -> None:
        """The poison record was parked: full rounds again."""
        self.parked += 1
        self._end_isolation()

    def committed(self, records: int, idle: bool = False) -> None:
        """A commit succeeded with ``records`` consumed records in it; ``idle``: nothing consumed is left
        uncommitted. Either proves the services are back; a commit of no records with records waiting
        proves nothing (Redis may still be down), and keeps the outage's backoff growing."""
        if records > 0 or idle:
            self.outage_since_s = None
            self.outage_service = ""
            self.outage_attempts = 0
        if records <= 0:
            return
        self.attempts = 0
        if self.round_cap is None:
            self.single_failures.clear()
        else:
            self.passed += records
            if self.passed >= self.isolating_records and not self.single_failures:
                self._end_isolation()

    def outage_for_s(self, now_s: float) -> float:
        return 0.0 if self.outage_since_s is None else now_s - self.outage_since_s

    def _end_isolation(self) -> None:
        self.round_cap = None
        self.attempts = 0
        self.passed = 0
        self.isolating_records = 0
        self.single_failures.clear()
