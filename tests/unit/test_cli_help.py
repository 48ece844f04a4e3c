"""The command line explains itself: every option has help and shows its default; ``--version`` works."""

from __future__ import annotations

import pytest

from clickcash._cli_help import all_parsers, options_without_help
from clickcash.cli import build_parser, main


def test_every_option_has_help() -> None:
    assert options_without_help(build_parser()) == []


def test_help_shows_defaults() -> None:
    demo = next(p for p in all_parsers(build_parser()) if p.prog == "clickcash demo")
    text = demo.format_help()
    assert "(default: 20000)" in text
    assert "(default: 4)" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("clickcash ")


def test_usage_error_exit_code_differs_from_runtime_failures() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--events", "not-a-number"])
    assert exc.value.code == 2
