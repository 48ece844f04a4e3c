"""``clickcash bench --stages --instructions``: reading valgrind's count and refusing what cannot be counted.

The count itself, under a real valgrind, is ``tests/integration/test_instruction_count.py``.
"""

from __future__ import annotations

import shutil

import pytest

from clickcash.errors import ConfigError, ServiceError
from clickcash.loadtest.contenders import instructions
from clickcash.loadtest.contenders.instructions import InstructionCount, child_command, instructions_executed

CACHEGRIND_SUMMARY = b"""==25207== Cachegrind, a high-precision tracing profiler
==25207== Command: /work/main/.venv/bin/python -m clickcash.loadtest.contenders.instructions
==25207==
==25207== I   refs:      11,602,517,202
"""


def test_the_total_is_read_from_the_summary_line() -> None:
    assert instructions_executed(CACHEGRIND_SUMMARY) == 11_602_517_202


def test_a_run_without_a_summary_is_an_error_that_quotes_its_last_lines() -> None:
    with pytest.raises(ServiceError, match=r"no instruction total.*Killed"):
        instructions_executed(b"==1== Command: python\nKilled\n")


def test_the_difference_of_the_two_runs_is_divided_over_the_measured_events() -> None:
    count = InstructionCount(
        warmup_events=20_000, measured_events=5_000, warmup_only=11_602_517_202, with_measured=13_482_238_591
    )
    assert count.per_event == pytest.approx(375_944.3, abs=0.1)
    text = count.render(batch_size=500, customers=10_000)
    assert "375,944" in text
    assert "PYTHONHASHSEED=0" in text


def test_a_child_applies_only_what_it_is_told_of_the_same_generated_events() -> None:
    cmd = child_command(
        "/usr/bin/valgrind", apply_events=0, warmup=1_000, events=2_000, batch_size=100, customers=50, seed=7
    )
    assert cmd[:4] == [
        "/usr/bin/valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
    ]
    assert cmd[-6:] == [
        "--warmup=1000",
        "--events=2000",
        "--apply=0",
        "--batch=100",
        "--customers=50",
        "--seed=7",
    ]


def test_without_valgrind_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(ConfigError, match=r"valgrind.*apt-get install valgrind"):
        instructions.count_instructions(warmup=1_000, events=1_000, batch_size=100, customers=50, seed=7)


def test_fewer_events_than_one_batch_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least one batch"):
        instructions.count_instructions(warmup=1_000, events=50, batch_size=100, customers=50, seed=7)


def test_the_option_alone_counts_and_its_errors_name_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    from clickcash import cli

    # without --stages too: the end-to-end bench (which would start services) is not what runs
    assert cli.main(["bench", "--instructions", "10", "--batch", "100"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--instructions" in err and "--batch 100" in err
