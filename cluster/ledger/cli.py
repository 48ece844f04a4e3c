"""``clickcash campaigns [--watch]``: the campaign ledger's table, read from ``kafka.campaigns_topic``.

Reads the latest committed snapshot of every campaign (the same restore the ledger does on start), so it
works against any running deployment whose Kafka it can reach, and needs no Ray.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from clickcash.errors import ClickcashError


def cmd_campaigns(args: argparse.Namespace) -> int:
    from clickcash.cluster.ledger.loop import restore
    from clickcash.cluster.ledger.table import render
    from clickcash.cluster.local.stack import running_services
    from clickcash.config.settings import load_settings

    overrides: dict[str, Any] = {}
    if args.local:
        endpoints = running_services()
        if endpoints is None:
            raise ClickcashError("no local services running: start them with `clickcash services start`")
        overrides["kafka"] = {"bootstrap_servers": endpoints.bootstrap_servers}
    settings = load_settings(**overrides)
    try:
        while True:
            snapshots = restore(settings)
            table = render(t.to_dict() for t in snapshots.values())
            if args.watch:
                sys.stdout.write("\x1b[2J\x1b[H")
            print(table if snapshots else f"no campaigns yet on {settings.kafka.campaigns_topic}", flush=True)
            if not args.watch:
                return 0
            time.sleep(args.interval_s)
    except KeyboardInterrupt:
        return 0


def add_campaigns_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "campaigns", help="per-campaign totals from the campaign ledger (see docs/campaigns.md)"
    )
    p.add_argument("--watch", action="store_true", help="redraw the table until Ctrl-C")
    p.add_argument("--interval-s", type=float, default=5.0, help="seconds between redraws with --watch")
    p.add_argument("--local", action="store_true", help="use the Kafka of `clickcash services start`")
    p.set_defaults(func=cmd_campaigns)
