"""Which router calls a shard runs: only the current run's, each once and in the order they were sent.

Ray runs one caller's calls to a sync actor in the order they were submitted, and a live router relies on
that. A router process that dies leaves calls behind it, and they can arrive with a gap. A call whose
batch fits in ``ray.max_inline_object_bytes`` carries it inline and still runs on the shard after its
router is gone (measured: all eight 300 KB calls queued behind a running one ran after their caller's
SIGKILL). A larger batch goes through the object store, owned by the router: its call is lost with its
owner, and the inline calls behind it still run (measured in ``tests/integration/test_chaos.py``; shards
saw such a gap in 3 of 9 runs of the router SIGKILL chaos scenario). Applied, those later calls would run
customers' later events before the lost ones, which the restarted router replays after them.

So a router's fence registers a new token for that router at every shard, and every call carries its
run's token and its number among that run's calls to this shard. A shard runs a call only when its token
is the router's current one and its number is the next one expected. A call of an earlier run (a dead
router, or one since fenced again) is refused, and so is a call that skips one: every call of that token
past the missing number is refused until the router's next fence starts its replay (should the missing
call still arrive, it runs in its place, in order). A call that raised closes its run: the router
pipelines several rounds per shard, and the ones behind a failed call would run customers' later events
before the replay of the failed call's events (the router drops every round in flight on a failure
anyway). Another router's fence lifts none of this.

A refusal says whether it is the first of its run at this instance (``first_of_run``): when a shard restarts,
every call the router had in flight to it (up to ``pipeline.max_inflight_batches_per_shard``) is refused
for one cause, and the shell warns once for the run, not once per call.

Pure: no Ray, no clock. The shard actor (``clickcash.actors.actor``) is the shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_CLOSED = -1
"""a run's next number after one of its calls raised: no number matches it"""
_REMEMBERED_REFUSED_RUNS = 64
"""runs whose first refusal a gate remembers (a dead router's calls arrive within moments of each other)"""


@dataclass(frozen=True, slots=True)
class Refusal:
    stale: bool
    """the call comes from a dead router or skips one (worth a warning), not from behind a failed call"""
    reason: str
    first_of_run: bool = True
    """no earlier call of the same run was refused at this instance (later ones repeat its cause)"""


@dataclass
class CallGate:
    _next: dict[str, int] = field(default_factory=dict)
    """token -> number of the next call expected under it (one token per router), or ``_CLOSED``"""
    _token_of: dict[int, str] = field(default_factory=dict)
    """router index -> its current token"""
    refused: int = 0
    """calls refused so far"""
    _refused_runs: dict[str, None] = field(default_factory=dict)
    """tokens with a call refused, oldest first, at most ``_REMEMBERED_REFUSED_RUNS``"""

    def fence(self, router: int, token: str) -> None:
        """Router ``router`` starts a new run of calls under ``token``; its earlier token is refused from now
        on. The router fences after dropping every round in flight, so what follows is the replay."""
        old = self._token_of.get(router)
        if old is not None and old != token:
            self._next.pop(old, None)
        self._token_of[router] = token
        self._next[token] = 0

    def admit(self, token: str, sequence: int) -> Refusal | None:
        """None when the call may run (it then counts as run), else why it is refused. A call without a
        token comes from a caller that never fences (a test's direct call) and is not checked."""
        if not token:
            return None
        expected = self._next.get(token)
        refusal = None
        if expected is None:
            refusal = Refusal(
                True,
                "its router run was fenced off since or never fenced at this instance (the router died "
                "or fenced again, or the shard restarted)",
            )
        elif expected == _CLOSED:
            refusal = Refusal(
                False, "an earlier call of its router run failed; the router fences and replays"
            )
        elif sequence != expected:
            refusal = Refusal(
                True,
                f"it is call {sequence} of its router run and call {expected} was expected: an earlier "
                "call of the run never arrived",
            )
        if refusal is not None:
            self.refused += 1
            if token in self._refused_runs:
                return Refusal(refusal.stale, refusal.reason, first_of_run=False)
            self._refused_runs[token] = None
            if len(self._refused_runs) > _REMEMBERED_REFUSED_RUNS:
                del self._refused_runs[next(iter(self._refused_runs))]
            return refusal
        self._next[token] = sequence + 1
        return None

    def failed(self, token: str) -> None:
        """An admitted call raised: every later call of its run is refused until its router fences."""
        if token in self._next:
            self._next[token] = _CLOSED
