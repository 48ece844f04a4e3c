"""Matching a run's outputs to its inputs: end-to-end latency, lost decisions, duplicate outputs.

Pure (no Kafka): ``clickcash.loadtest.locust_run.monitor`` feeds it the records it reads from the input topic
and the output
topics, in whatever order they arrive, and the unit tests feed it directly.

- An input is registered by its event id with its send time (the CloudEvent ``time``, set right before
  produce) and its kind (from the load generator's ``loadtest-kind`` header). A re-sent duplicate keeps the
  first registration; a malformed input has no readable id and is registered by its (partition, offset).
- An output is matched by ``causationid`` = input id. Dead letters of malformed inputs carry no causation
  id; they are matched by their ``clickcash_source_partition``/``offset`` headers.
- An output that arrives before its input was read waits in ``pending`` until the input comes.
- Lost: a generated ``order.placed`` (always valid) with no ``order.accepted``/``order.rejected``.
  Duplicate: an output id seen more than once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

DECISION_TYPES = frozenset({"order.accepted", "order.rejected"})
RESENT_KIND = "duplicate"
MALFORMED_KIND = "malformed"


@dataclass(frozen=True, slots=True)
class LatencySample:
    sent_at: float
    """when its input was sent (epoch seconds)"""
    seen_at: float
    """when the output became visible to a read_committed consumer (epoch seconds)"""
    output_type: str

    @property
    def latency_ms(self) -> float:
        return (self.seen_at - self.sent_at) * 1000


@dataclass(slots=True)
class _Pending:
    output_type: str
    seen_at: float


@dataclass
class Matcher:
    decision_types: frozenset[str] = DECISION_TYPES
    inputs: dict[str, tuple[float, str]] = field(default_factory=dict)
    """event id -> (sent_at, kind) of the first send"""
    malformed: dict[tuple[int, int], float] = field(default_factory=dict)
    """(partition, offset) -> sent_at of malformed inputs"""
    inputs_by_kind: Counter[str] = field(default_factory=Counter)
    app_inputs_by_type: Counter[str] = field(default_factory=Counter)
    """inputs of the run's customers the load generator did not send (the app's own timer commands)"""
    input_sent_at: list[float] = field(default_factory=list)
    """send time of every input record (re-sends and malformed ones included), for the input rate"""
    outputs_by_type: Counter[str] = field(default_factory=Counter)
    output_seen_at: list[float] = field(default_factory=list)
    """first-seen time of every distinct output, for the output rate"""
    dead_letters_by_code: Counter[str] = field(default_factory=Counter)
    duplicate_outputs: Counter[str] = field(default_factory=Counter)
    """output type -> how many times an already-seen output id was seen again"""
    samples: list[LatencySample] = field(default_factory=list)
    """send -> output of the generated inputs"""
    app_samples: list[LatencySample] = field(default_factory=list)
    """CloudEvent time -> output of the inputs the app generated (for timers: due time -> output)"""
    decisions: Counter[str] = field(default_factory=Counter)
    """order.placed id -> distinct decision outputs seen for it"""
    dead_lettered_malformed: set[tuple[int, int]] = field(default_factory=set)
    pending: dict[str, list[_Pending]] = field(default_factory=dict)
    pending_dead_letters: dict[tuple[int, int], list[_Pending]] = field(default_factory=dict)
    _output_ids: set[str] = field(default_factory=set)
    _orders: int = 0
    _decided: int = 0
    _pending_n: int = 0
    _app_ids: set[str] = field(default_factory=set)

    # --- feeding ----------------------------------------------------------------------------------

    def add_input(
        self,
        event_id: str | None,
        kind: str,
        sent_at: float,
        partition: int = -1,
        offset: int = -1,
        *,
        generated: bool = True,
    ) -> None:
        """Register an input; ``generated=False`` for records the load generator did not send (matched, so
        their outputs are not 'unmatched', but counted apart and not in the input rate)."""
        if not generated:
            self.app_inputs_by_type[kind] += 1
            if event_id is not None and event_id not in self.inputs:
                self.inputs[event_id] = (sent_at, kind)
                self._app_ids.add(event_id)
                for p in self.pending.pop(event_id, []):
                    self._pending_n -= 1
                    self._matched(event_id, sent_at, kind, p)
            return
        self.inputs_by_kind[kind] += 1
        self.input_sent_at.append(sent_at)
        if kind == MALFORMED_KIND or event_id is None:
            pos = (partition, offset)
            self.malformed[pos] = sent_at
            for p in self.pending_dead_letters.pop(pos, []):
                self._pending_n -= 1
                self._dead_letter_matched(pos, sent_at, p)
            return
        if kind == RESENT_KIND or event_id in self.inputs:
            return
        self.inputs[event_id] = (sent_at, kind)
        if kind == "order.placed":
            self._orders += 1
        for p in self.pending.pop(event_id, []):
            self._pending_n -= 1
            self._matched(event_id, sent_at, kind, p)

    def add_output(
        self,
        output_id: str,
        output_type: str,
        causationid: str | None,
        seen_at: float,
        *,
        source_position: tuple[int, int] | None = None,
        dead_letter_code: str | None = None,
    ) -> None:
        if output_id in self._output_ids:
            self.duplicate_outputs[output_type] += 1
            return
        self._output_ids.add(output_id)
        self.outputs_by_type[output_type] += 1
        self.output_seen_at.append(seen_at)
        if dead_letter_code is not None:
            self.dead_letters_by_code[dead_letter_code] += 1
        p = _Pending(output_type, seen_at)
        if causationid is not None:
            known = self.inputs.get(causationid)
            if known is None:
                self._pending_n += 1
                self.pending.setdefault(causationid, []).append(p)
            else:
                self._matched(causationid, known[0], known[1], p)
            return
        if source_position is not None:
            sent = self.malformed.get(source_position)
            if sent is None:
                self._pending_n += 1
                self.pending_dead_letters.setdefault(source_position, []).append(p)
            else:
                self._dead_letter_matched(source_position, sent, p)

    def _matched(self, event_id: str, sent_at: float, kind: str, p: _Pending) -> None:
        if event_id in self._app_ids:
            self.app_samples.append(LatencySample(sent_at, p.seen_at, p.output_type))
            return
        self.samples.append(LatencySample(sent_at, p.seen_at, p.output_type))
        if kind == "order.placed" and p.output_type in self.decision_types:
            if self.decisions[event_id] == 0:
                self._decided += 1
            self.decisions[event_id] += 1

    def _dead_letter_matched(self, pos: tuple[int, int], sent_at: float, p: _Pending) -> None:
        self.dead_lettered_malformed.add(pos)
        self.samples.append(LatencySample(sent_at, p.seen_at, p.output_type))

    # --- results ----------------------------------------------------------------------------------

    @property
    def input_count(self) -> int:
        return len(self.input_sent_at)

    @property
    def output_count(self) -> int:
        return len(self.output_seen_at)

    @property
    def order_count(self) -> int:
        return self._orders

    def undecided_orders(self) -> int:
        """Generated orders without a decision so far (lost, once the run has drained)."""
        return self._orders - self._decided

    def lost_orders(self) -> list[str]:
        """The ids of generated orders without a decision."""
        return [
            eid
            for eid, (_, kind) in self.inputs.items()
            if kind == "order.placed" and self.decisions.get(eid, 0) == 0
        ]

    def orders_with_several_decisions(self) -> int:
        return sum(1 for n in self.decisions.values() if n > 1)

    def malformed_without_dead_letter(self) -> int:
        return len(self.malformed) - len(self.dead_lettered_malformed)

    def unmatched_outputs(self) -> int:
        """Outputs of this run whose input was never read (should be 0 once the run has drained)."""
        return self._pending_n

    def complete(self) -> bool:
        """Every order decided, every malformed input dead-lettered, no output waiting for its input."""
        return (
            self.undecided_orders() == 0
            and self.malformed_without_dead_letter() == 0
            and self.unmatched_outputs() == 0
        )
