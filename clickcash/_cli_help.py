"""Help text of the ``clickcash`` command line: every option says what it does and shows its default.

Subcommands are contributed by several packages (``cluster``, ``loadtest``); the options they share
(``--events``, ``--shards``, ...) get one wording here instead of one per parser, and every parser gets the
formatter that appends the default. ``tests/unit/test_cli_help.py`` fails on an option without help.
"""

from __future__ import annotations

import argparse

COMMON_HELP: dict[str, str] = {
    "--events": "number of campaign events to produce",
    "--shards": "shard actors (state partitions) of the app",
    "--routers": "router actors (Kafka consumers) of the app",
    "--partitions": "partitions of the input topic when it is created",
    "--num-cpus": "CPUs Ray may schedule on (actors use fractions)",
    "--warmup": "events to push first, not measured",
    "--json": "also write the report as JSON to this file",
    "--create-topics": "create the input, output and dead-letter topics if missing",
    "--out": "directory to write to",
    "--local": "use the services from `clickcash services start`",
    "--address": "Ray address (ray://host:10001, auto) or 'local'",
    "--web-port": "port of Locust's web UI",
    "--seed": "random seed of the generated traffic (same seed, same events)",
    "--format": "output format",
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already states its default or the
    option is a flag (a flag's default is always "off")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "default" in text
            or action.default in (None, argparse.SUPPRESS)
            or action.nargs == 0
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found.extend(_parsers(child))
    return found


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every subcommand parser under it, depth first."""
    return _parsers(parser)


def finish_help(parser: argparse.ArgumentParser) -> None:
    """Give every parser under ``parser`` the defaults formatter and the shared wording of common options."""
    for p in _parsers(parser):
        p.formatter_class = DefaultsHelpFormatter
        for action in p._actions:
            if not action.help:
                for opt in action.option_strings:
                    if opt in COMMON_HELP:
                        action.help = COMMON_HELP[opt]
                        break


def options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    """``"prog --option"`` for every option or positional of any subcommand that has no help text."""
    missing: list[str] = []
    for p in _parsers(parser):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            if not action.help:
                missing.append(f"{p.prog} {'/'.join(action.option_strings) or action.dest}")
    return missing
