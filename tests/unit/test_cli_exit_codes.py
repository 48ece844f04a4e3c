"""Every expected failure of a command is one line on stderr and a documented exit code, never a traceback."""

from __future__ import annotations

import argparse

import pytest
from confluent_kafka import KafkaError, KafkaException

import clickcash.cli as cli
from clickcash.errors import ClickcashError, ConfigError, ServiceError


def _run_raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> int:
    def boom(_args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(cli, "cmd_schemas", boom)
    return cli.main(["schemas"])


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (ConfigError("kafka.bootstrap_servers: field required"), cli.EXIT_CONFIG, "configuration error"),
        (ServiceError("kafka", "could not read the committed offsets"), cli.EXIT_SERVICE, "kafka error:"),
        (ClickcashError("input not drained after 600 s"), cli.EXIT_RUN_FAILED, "error: input not drained"),
        (
            KafkaException(KafkaError(KafkaError.NOT_COORDINATOR)),
            cli.EXIT_SERVICE,
            "kafka error: KafkaException",
        ),
        (KeyboardInterrupt(), cli.EXIT_INTERRUPTED, "interrupted"),
    ],
)
def test_a_failure_is_one_line_and_its_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exc: BaseException,
    code: int,
    text: str,
) -> None:
    assert _run_raising(monkeypatch, exc) == code
    err = capsys.readouterr().err
    assert err.startswith("clickcash: ") and text in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_is_not_disguised_as_a_service_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ZeroDivisionError):
        _run_raising(monkeypatch, ZeroDivisionError())


def test_the_exit_codes_are_distinct() -> None:
    codes = [cli.EXIT_OK, cli.EXIT_CHECK_FAILED, cli.EXIT_CONFIG, cli.EXIT_SERVICE, cli.EXIT_RUN_FAILED]
    assert len(set(codes)) == len(codes)


def test_local_services_that_do_not_start_are_one_line_pointing_at_their_logs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import clickcash.cluster.local.stack as local_stack

    def not_ready(_self: object) -> object:
        raise TimeoutError("kafka node 1: not ready after 90 s\n...log tail...\nmore")

    monkeypatch.setattr(local_stack, "running_services", lambda: None)
    monkeypatch.setattr(local_stack.LocalStack, "start", not_ready)
    assert cli.main(["services", "start"]) == cli.EXIT_SERVICE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not ready after 90 s" in err and "logs are under" in err
