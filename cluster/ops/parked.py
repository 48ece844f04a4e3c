"""``clickcash parked list | show C | replay C | drop C``: inspect and release parked customers.

Needs only Redis (``redis.url``, ``redis.key_prefix``; ``--local`` for the services of ``clickcash
services start``). ``replay`` and ``drop`` do not touch Kafka themselves: they leave a request the router
owning the customer's partition serves at its next round boundary (within ``timer_poll_interval_ms``),
because only that router can order the parked records before the customer's later ones and commit their
outputs in its transaction. The command waits for the router's answer (``--timeout``), or returns at once
with ``--no-wait``. Values are shown with card numbers masked.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from clickcash.errors import ClickcashError
from clickcash.events import mask_card_numbers
from clickcash.router import paused_campaign
from clickcash.router.parking import ParkingStore

ACTIONS = ("replay", "drop")


def _text(customer: bytes) -> str:
    return customer.decode(errors="replace") if customer else "(no key)"


def paused_lines(store: ParkingStore) -> list[str]:
    """The paused campaigns and how many customers each holds."""
    paused = store.paused()
    held: dict[str, int] = {}
    for c in store.load().values():
        campaign = paused_campaign(c.reason)
        if campaign is not None:
            held[campaign] = held.get(campaign, 0) + 1
    if not paused and not held:
        return []
    lines = [f"{len(paused)} paused campaign(s):"]
    lines += [f"  {c}: {held.get(c, 0)} customer(s) held" for c in sorted(paused)]
    lines += [
        f"  {c} (resumed, being released): {n} customer(s) held"
        for c, n in sorted(held.items())
        if c not in paused
    ]
    return lines


def set_paused(store: ParkingStore, campaign: str, paused: bool) -> str:
    """Pause or resume a campaign; the routers see it within ``timer_poll_interval_ms``."""
    if not campaign or len(campaign) > 256 or '"' in campaign or "\\" in campaign:
        raise ClickcashError(f"campaign: {campaign!r} is not a campaign id (1-256 characters, no quotes)")
    changed = store.set_paused(campaign, paused)
    if paused:
        return (
            f"campaign {campaign} "
            + ("paused" if changed else "was already paused")
            + (": its customers' records are held from their next event of it on")
        )
    return (
        f"campaign {campaign} "
        + ("resumed" if changed else "was not paused")
        + (": its held customers are replayed in order by their routers")
    )


def list_lines(store: ParkingStore) -> list[str]:
    parked = store.load()
    if not parked:
        return ["no parked customers", *paused_lines(store)]
    requests, outcomes = store.requests(), store.outcomes()
    lines = [*paused_lines(store), f"{len(parked)} parked customer(s):"]
    for customer, c in sorted(parked.items()):
        at = datetime.fromtimestamp(c.parked_at_ms / 1000, UTC).isoformat(timespec="seconds")
        line = (
            f"  {_text(customer)}: {len(store.records(customer))} record(s) from partition {c.partition} "
            f"offset {c.offset}, parked {at}: {c.reason}"
        )
        if customer in requests:
            line += f" [{requests[customer]} requested]"
        elif customer in outcomes:
            line += f" [last request: {outcomes[customer]}]"
        lines.append(line)
    return lines


def show_lines(store: ParkingStore, customer: bytes, full: bool = False) -> list[str]:
    parked = store.load().get(customer)
    if parked is None:
        outcome = store.outcomes().get(customer)
        raise ClickcashError(
            f"customer {_text(customer)!r} is not parked" + (f" (last request: {outcome})" if outcome else "")
        )
    lines = [
        f"customer {_text(customer)} parked at partition {parked.partition} offset {parked.offset}: "
        f"{parked.reason}"
    ]
    for p, o, _, value, ts in store.records(customer):
        body = mask_card_numbers(value or b"")[0]
        shown = body if full or len(body) <= 200 else body[:200] + b"..."
        when = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds") if ts > 0 else "-"
        lines.append(
            f"  partition {p} offset {o} at {when} ({len(body)} bytes): {shown.decode(errors='replace')}"
        )
    return lines


def request(
    store: ParkingStore,
    customer: bytes,
    action: str,
    *,
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Leave the request and wait up to ``wait_s`` for the owning router's outcome."""
    if action not in ACTIONS:
        raise ClickcashError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    if customer not in store.load():
        raise ClickcashError(f"customer {_text(customer)!r} is not parked")
    store.forget_outcome(customer)
    store.request(customer, action)
    if wait_s <= 0:
        return f"{action} requested; the owning router serves it at its next round boundary"
    deadline = clock() + wait_s
    while clock() < deadline:
        outcome = store.outcomes().get(customer)
        if outcome is not None:
            return outcome
        sleep(0.25)
    return (
        f"{action} requested; no router answered within {wait_s:g} s (is the app running?). The request "
        "stays and is served when the router owning the customer's partition runs"
    )


def cmd_parked(args: argparse.Namespace) -> int:
    from clickcash.cluster.local.stack import running_services
    from clickcash.config.settings import load_settings
    from clickcash.router.parking import RedisParkingStore

    overrides: dict[str, Any] = {}
    if args.local:
        endpoints = running_services()
        if endpoints is None:
            raise ClickcashError("no local services running: start them with `clickcash services start`")
        overrides["redis"] = {"url": endpoints.redis_url}
    s = load_settings(**overrides)
    store = RedisParkingStore.from_url(s.redis.client_url(), s.redis.key_prefix, s.redis.socket_timeout_s)
    try:
        if args.parked_command in ("pause", "resume"):
            lines = [set_paused(store, args.campaign, args.parked_command == "pause")]
        elif args.parked_command == "list":
            lines = list_lines(store)
        elif args.parked_command == "show":
            lines = show_lines(store, args.customer.encode(), full=args.full)
        else:
            wait_s = 0.0 if args.no_wait else args.timeout
            lines = [request(store, args.customer.encode(), args.parked_command, wait_s=wait_s)]
    finally:
        store.close()
    print("\n".join(lines))
    return 0


def add_parked_parser(sub: argparse._SubParsersAction) -> None:
    pk = sub.add_parser(
        "parked", help="list, show, replay or drop parked customers (see docs/failure-handling.md)"
    )
    pk.add_argument("--local", action="store_true", help="use the Redis of `clickcash services start`")
    cmds = pk.add_subparsers(dest="parked_command", required=True)
    cmds.add_parser("list", help="every parked customer, its record count and why it was parked")
    show = cmds.add_parser("show", help="a parked customer's records in order (card numbers masked)")
    show.add_argument("customer", help="the customer id (the Kafka key)")
    show.add_argument("--full", action="store_true", help="whole values, not the first 200 bytes")
    for action, text in (
        ("replay", "process the customer's parked records in order (after a fix), then release it"),
        ("drop", "send each parked record to the dead-letter topic (parked_dropped), then release it"),
    ):
        a = cmds.add_parser(action, help=text)
        a.add_argument("customer", help="the customer id (the Kafka key)")
        a.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the router's answer")
        a.add_argument("--no-wait", action="store_true", help="leave the request and return at once")
    pk.set_defaults(func=cmd_parked)
    for action, text in (
        ("pause", "hold every customer's events of a campaign (and their later events) until resume"),
        ("resume", "release the customers a paused campaign holds, in order, as if never paused"),
    ):
        a = sub.add_parser(action, help=text + " (see docs/pause.md)")
        a.add_argument("--campaign", required=True, help="the campaign id (the envelope's campaignid)")
        a.add_argument("--local", action="store_true", help="use the Redis of `clickcash services start`")
        a.set_defaults(func=cmd_parked, parked_command=action)
