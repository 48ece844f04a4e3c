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
