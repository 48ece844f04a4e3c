"""The router's failure policy: bounded retries, isolation by halving, parking, outages."""

from __future__ import annotations

import pytest

from clickcash.router._failures import Action, FailureKind, FailurePolicy, kafka_failure_kind

P = FailureKind.PROCESSING
OUT = FailureKind.OUTAGE


def _policy(max_attempts: int = 3) -> FailurePolicy:
    return FailurePolicy(max_attempts, backoff_initial_s=0.2, backoff_max_s=1.0, outage_backoff_max_s=10.0)


def _round(start: int, n: int, partition: int = 0) -> list[tuple[int, int]]:
    return [(partition, o) for o in range(start, start + n)]


def test_a_failing_round_is_retried_with_growing_capped_backoff_then_isolated() -> None:
    pol = _policy(4)
    waits = [pol.failed(0.0, P, _round(0, 100)) for _ in range(3)]
    assert [v.action for v in waits] == [Action.RETRY] * 3
    assert [v.wait_s for v in waits] == [0.2, 0.4, 0.8]
    assert all(v.round_cap is None for v in waits)
    fourth = pol.failed(0.0, P, _round(0, 100))
    assert fourth.action is Action.RETRY and fourth.round_cap == 50
    assert pol.isolating and pol.isolations == 1


def test_backoff_never_exceeds_its_cap() -> None:
    pol = _policy(100)
    waits = [pol.failed(0.0, P, _round(0, 10)).wait_s for _ in range(20)]
    assert max(waits) == 1.0


def test_isolation_halves_to_one_record_and_parks_it_after_its_own_attempts() -> None:
    """A poison record at offset 37 of a 100-record round: rounds before it pass and commit, each
    failing round is halved, and the single record gets the full budget before it is parked."""
    pol = _policy(3)
    poison = 37
    position = 0
    for _ in range(3):
        verdict = pol.failed(0.0, P, _round(position, 100))
    steps = 0
    parked_at = None
    while parked_at is None:
        steps += 1
        assert steps < 100, "isolation must converge"
        cap = pol.round_cap
        assert cap is not None
        rnd = _round(position, cap)
        if poison in {o for _, o in rnd}:
            verdict = pol.failed(0.0, P, rnd)
            if verdict.action is Action.PARK:
                parked_at = rnd
        else:
            pol.committed(len(rnd))
            position += cap
    assert parked_at == [(0, poison)]
    pol.parked_one()
    assert not pol.isolating and pol.parked == 1


def test_attempts_of_one_record_survive_commits_of_other_records_in_between() -> None:
    """While isolating, single-record rounds of other partitions commit between two attempts of the
    poison record; its count must not start over, or it would never be parked."""
    pol = _policy(3)
    for _ in range(3):
        pol.failed(0.0, P, _round(0, 4))
    pol.failed(0.0, P, _round(0, 2))
    assert pol.round_cap == 1
    assert pol.failed(0.0, P, [(0, 0)]).action is Action.RETRY
    pol.committed(1)  # a record of partition 1
    assert pol.failed(0.0, P, [(0, 0)]).action is Action.RETRY
    pol.committed(1)
    assert pol.failed(0.0, P, [(0, 0)]).action is Action.PARK


def test_isolation_ends_once_the_failed_round_has_passed() -> None:
    """A failure that does not come back (not deterministic): full rounds resume."""
    pol = _policy(2)
    pol.failed(0.0, P, _round(0, 10))
    pol.failed(0.0, P, _round(0, 10))
    assert pol.round_cap == 5
    pol.committed(5)
    assert pol.isolating
    pol.committed(5)
    assert not pol.isolating


def test_a_success_resets_the_attempts_of_full_rounds() -> None:
    pol = _policy(3)
    pol.failed(0.0, P, _round(0, 10))
    pol.failed(0.0, P, _round(0, 10))
    pol.committed(10)
    assert pol.failed(0.0, P, _round(10, 10)).action is Action.RETRY
    assert not pol.isolating


def test_an_outage_backs_off_to_its_cap_and_never_isolates_or_parks() -> None:
    pol = _policy(2)
    verdicts = [pol.failed(float(t), OUT, [(0, 0)], "redis") for t in range(12)]
    assert all(v.action is Action.RETRY and v.round_cap is None for v in verdicts)
    assert verdicts[0].wait_s == 0.2
    assert verdicts[-1].wait_s == 10.0
    assert [v.wait_s for v in verdicts] == sorted(v.wait_s for v in verdicts)
    assert pol.outage_service == "redis"
    assert pol.outage_for_s(20.0) == 20.0
    assert not pol.isolating and pol.parked == 0


def test_an_outage_ends_with_a_commit_of_records_not_with_an_empty_commit_while_records_wait() -> None:
    pol = _policy()
    pol.failed(0.0, OUT, [(0, 0)], "redis")
    pol.committed(0, idle=False)
    assert pol.outage_since_s == 0.0
    pol.committed(3)
    assert pol.outage_since_s is None and pol.outage_for_s(5.0) == 0.0
    pol.failed(6.0, OUT, [(0, 0)], "kafka")
    pol.committed(0, idle=True)
    assert pol.outage_since_s is None


def test_a_failure_with_no_record_uncommitted_is_waited_out_like_an_outage() -> None:
    pol = _policy(1)
    for _ in range(5):
        verdict = pol.failed(0.0, P, [], "ray")
        assert verdict.action is Action.RETRY
    assert not pol.isolating
    assert pol.outage_service == "ray"


def test_a_single_record_round_is_parked_after_the_budget_without_isolating() -> None:
    pol = _policy(2)
    assert pol.failed(0.0, P, [(3, 9)]).action is Action.RETRY
    assert pol.failed(0.0, P, [(3, 9)]).action is Action.PARK
    assert pol.isolations == 0


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("_TRANSPORT", OUT),
        ("_ALL_BROKERS_DOWN", OUT),
        ("_MSG_TIMED_OUT", OUT),
        ("NOT_COORDINATOR", OUT),
        ("MSG_SIZE_TOO_LARGE", P),
        ("INVALID_RECORD", P),
    ],
)
def test_kafka_errors_of_reachability_are_outages_and_record_errors_are_not(
    name: str, kind: FailureKind
) -> None:
    assert kafka_failure_kind(name) is kind


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        _policy(0)
