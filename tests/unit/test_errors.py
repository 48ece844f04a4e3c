"""How errors from actors are put in one log line."""

from __future__ import annotations

from clickcash.errors import StaleShardCallError, remote_error_reason


class _RemoteError(Exception):
    """Shaped like Ray's RayTaskError: a headline naming the task, the actor's own error as ``cause``."""

    def __init__(self, headline: str, cause: BaseException | None) -> None:
        super().__init__(f"{headline}\n  traceback ...")
        self.cause = cause


def test_the_actors_own_error_is_named_rather_than_rays_headline() -> None:
    err = _RemoteError("ray::ShardActor.apply() (pid=1)", StaleShardCallError("shard 1: restarted"))
    assert remote_error_reason(err) == "StaleShardCallError: shard 1: restarted"


def test_without_a_cause_the_first_line_is_kept() -> None:
    assert remote_error_reason(_RemoteError("The actor died unexpectedly", None)) == (
        "The actor died unexpectedly"
    )
    assert remote_error_reason(TimeoutError()) == "TimeoutError"
