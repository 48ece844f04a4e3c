"""``clickcash acls`` and ``clickcash catalog``: the security model and the event catalogue as data."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_acls(args: argparse.Namespace) -> int:
    from clickcash.cluster.acls import RENDERERS, acl_inputs
    from clickcash.config.settings import load_settings

    text = RENDERERS[args.format](acl_inputs(load_settings()))
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="", flush=True)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from clickcash.cluster.catalog import render_catalog
    from clickcash.config.settings import load_settings

    text = render_catalog(load_settings())
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", flush=True)
    else:
        print(text, end="", flush=True)
    return 0


def add_security_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acls = sub.add_parser(
        "acls",
        help="print the least-privilege Kafka ACLs and Redis ACL rules of every role, from the settings",
    )
    acls.add_argument("--format", choices=["kafka-acls", "json", "terraform"], default="kafka-acls")
    acls.add_argument("--out", help="write to this file instead of stdout")
    acls.set_defaults(func=cmd_acls)

    catalog = sub.add_parser(
        "catalog",
        help="write the event catalogue (AsyncAPI 3.0): topics, messages, producers, consumers, roles",
    )
    catalog.add_argument(
        "--out", help="write to this file instead of stdout (docs/asyncapi.json: the shipped one)"
    )
    catalog.set_defaults(func=cmd_catalog)
