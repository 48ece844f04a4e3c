"""The shard's call gate: only the current router run's calls run, each once and in the order sent."""

from __future__ import annotations

from clickcash.actors.calls import CallGate


def test_a_fenced_run_s_calls_run_in_order() -> None:
    gate = CallGate()
    gate.fence(0, "run-a")
    assert [gate.admit("run-a", n) for n in range(3)] == [None, None, None]
    assert gate.refused == 0


def test_a_call_that_skips_one_is_refused_and_so_is_every_later_call_of_its_run() -> None:
    """The dead router's call 1 never arrived: its call 2 must not run customers' later events first."""
    gate = CallGate()
    gate.fence(0, "run-a")
    assert gate.admit("run-a", 0) is None
    refusal = gate.admit("run-a", 2)
    assert refusal is not None and refusal.stale and "call 1 was expected" in refusal.reason
    assert gate.admit("run-a", 3) is not None
    assert gate.admit("run-a", 1) is None, "the call that was missing still runs in its place"
    assert gate.refused == 2


def test_a_run_fenced_off_by_its_router_s_next_fence_is_refused() -> None:
    gate = CallGate()
    gate.fence(0, "dead-router")
    assert gate.admit("dead-router", 0) is None
    gate.fence(0, "restarted-router")
    refusal = gate.admit("dead-router", 1)
    assert refusal is not None and refusal.stale and "fenced off" in refusal.reason
    assert gate.admit("restarted-router", 0) is None


def test_a_restarted_instance_refuses_the_runs_fenced_at_the_one_before_it() -> None:
    """A shard restart is a new gate: the router's calls sent before it learned of the restart are refused
    until it fences the new instance, and the replay follows that fence."""
    before = CallGate()
    before.fence(0, "run-a")
    assert before.admit("run-a", 0) is None
    restarted = CallGate()
    refusal = restarted.admit("run-a", 1)
    assert refusal is not None and refusal.stale and "never fenced at this instance" in refusal.reason
    restarted.fence(0, "run-b")
    assert restarted.admit("run-b", 0) is None


def test_a_call_repeated_is_refused() -> None:
    gate = CallGate()
    gate.fence(0, "run-a")
    assert gate.admit("run-a", 0) is None
    assert gate.admit("run-a", 0) is not None


def test_routers_have_runs_of_their_own() -> None:
    gate = CallGate()
    gate.fence(0, "router-0")
    gate.fence(1, "router-1")
    assert gate.admit("router-0", 0) is None
    assert gate.admit("router-1", 0) is None
    gate.fence(1, "router-1-again")
    assert gate.admit("router-0", 1) is None, "another router's fence leaves this run alone"


def test_a_failed_call_closes_its_run_until_the_same_router_fences() -> None:
    gate = CallGate()
    gate.fence(0, "router-0")
    gate.fence(1, "router-1")
    assert gate.admit("router-0", 0) is None
    gate.failed("router-0")
    refusal = gate.admit("router-0", 1)
    assert refusal is not None and not refusal.stale
    gate.fence(1, "router-1-again")
    assert gate.admit("router-0", 1) is not None, "another router's fence does not reopen the run"
    assert gate.admit("router-1-again", 0) is None
    gate.fence(0, "router-0-again")
    assert gate.admit("router-0-again", 0) is None


def test_calls_without_a_token_are_not_checked() -> None:
    gate = CallGate()
    assert gate.admit("", 7) is None
    assert gate.admit("", 3) is None
    gate.failed("")
    assert gate.admit("", 0) is None


def test_only_the_first_refusal_of_a_run_says_it_is_the_first() -> None:
    """A restarted shard refuses each call its router had in flight for one cause: the shell warns once."""
    gate = CallGate()
    refusals = [gate.admit("router-0-before-the-restart", n) for n in range(4)]
    assert all(r is not None and r.stale for r in refusals)
    assert [r.first_of_run for r in refusals if r is not None] == [True, False, False, False]
    assert gate.refused == 4
    other = gate.admit("router-1-before-the-restart", 0)
    assert other is not None and other.first_of_run, "another run's first refusal is its own"


def test_a_gap_is_reported_as_the_first_refusal_of_its_run_once() -> None:
    gate = CallGate()
    gate.fence(0, "run-a")
    assert gate.admit("run-a", 0) is None
    first, later = gate.admit("run-a", 2), gate.admit("run-a", 3)
    assert first is not None and first.first_of_run and "call 1 was expected" in first.reason
    assert later is not None and not later.first_of_run and "call 1 was expected" in later.reason


def test_a_gate_remembers_a_bounded_number_of_refused_runs() -> None:
    gate = CallGate()
    for i in range(1_000):
        gate.admit(f"dead-run-{i}", 0)
    recent, forgotten = gate.admit("dead-run-999", 1), gate.admit("dead-run-0", 1)
    assert recent is not None and not recent.first_of_run, "the most recent runs are remembered"
    assert forgotten is not None and forgotten.first_of_run, "the oldest are forgotten: memory stays bounded"
