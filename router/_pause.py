"""The campaign pause switch: which records a paused campaign holds, and which held customers a resume
releases. Pure decisions; the store is ``clickcash.router.parking`` (the paused set lives beside the parked
customers) and the router applies them.

A pause is parking with a second trigger: the first record of campaign X a router sees for customer C
while X is paused parks C at that record (reason ``campaign paused: X``), so that record and every later
record of C (of any campaign) are kept in order, exactly as for a poison record, while every other
customer flows. A resume of X releases each customer parked for X through the parking replay: same
shard, same ids, so the outputs are those of a run that was never paused.

The campaign is read from the raw value without decoding it: a paused set is rare and small, and the
router only looks when it is not empty. The pattern takes the first ``"campaignid"`` member of the
value, which is the envelope's attribute: writers put the CloudEvents attributes before ``data``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from clickcash.router._dispatch import RawRecord
from clickcash.router.parking import ParkedCustomer

PAUSE_REASON_PREFIX = "campaign paused: "
_CAMPAIGN = re.compile(rb'"campaignid"\s*:\s*"((?:[^"\\]|\\.){1,256})"')


def campaign_of(value: bytes | None) -> str | None:
    """The ``campaignid`` attribute of a raw envelope, or None when it has none (or is not JSON text)."""
    if not value or b'"campaignid"' not in value:
        return None
    m = _CAMPAIGN.search(value)
    if m is None:
        return None
    return m.group(1).decode(errors="replace")


def pause_reason(campaign: str) -> str:
    return PAUSE_REASON_PREFIX + campaign


def paused_campaign(reason: str) -> str | None:
    """The campaign a parked customer is held for, or None when it was parked for a failure."""
    return reason[len(PAUSE_REASON_PREFIX) :] if reason.startswith(PAUSE_REASON_PREFIX) else None


def new_holds(
    records: Iterable[RawRecord],
    parked: Mapping[bytes, ParkedCustomer],
    paused: frozenset[str],
    now_ms: int,
) -> list[ParkedCustomer]:
    """The customers a round's records newly park for a paused campaign: for each customer not parked
    yet, its first record (in the round's order, which is offset order per partition) of a paused
    campaign. Records without a key have no customer to hold and flow."""
    if not paused:
        return []
    holds: dict[bytes, ParkedCustomer] = {}
    for partition, offset, key, value, _ in records:
        if not key or key in holds:
            continue
        current = parked.get(key)
        if current is not None and current.holds(partition, offset):
            continue
        campaign = campaign_of(value)
        if campaign is not None and campaign in paused:
            holds[key] = ParkedCustomer(key, partition, offset, pause_reason(campaign), now_ms)
    return list(holds.values())


def releases(
    parked: Mapping[bytes, ParkedCustomer], paused: frozenset[str], owned: Iterable[int]
) -> dict[bytes, str]:
    """Replay requests for the held customers of ``owned`` partitions whose campaign is no longer
    paused (the same requests an operator leaves with ``clickcash parked replay``)."""
    mine = set(owned)
    out: dict[bytes, str] = {}
    for customer, c in parked.items():
        campaign = paused_campaign(c.reason)
        if campaign is not None and campaign not in paused and c.partition in mine:
            out[customer] = "replay"
    return out


def held_counts(parked: Mapping[bytes, ParkedCustomer], owned: Iterable[int]) -> dict[str, int]:
    """Held customers of ``owned`` partitions per reason: ``paused`` (a campaign) or ``parked`` (a
    failure)."""
    mine = set(owned)
    counts = {"parked": 0, "paused": 0}
    for c in parked.values():
        if c.partition in mine:
            counts["paused" if paused_campaign(c.reason) is not None else "parked"] += 1
    return counts
