"""The ``clickcash campaigns`` table: one row per campaign and traffic kind from ``campaign.snapshot`` data.

Pure (no Kafka). Money is shown per currency (never summed across currencies). Synthetic traffic (load
tests, demos, the PSP simulator) gets its own row, marked ``synthetic``, so a load test never inflates what
a campaign manager reads as real.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COLUMNS: tuple[str, ...] = (
    "campaign", "traffic", "placed", "accepted", "rejected", "accepted value", "authorized", "declined",
    "dunning", "recovered", "recovered value", "exhausted", "recovery rate",
)  # fmt: skip


def _money(by_currency: Mapping[str, int]) -> str:
    if not by_currency:
        return "-"
    return " ".join(f"{cents / 100:.2f} {cur}" for cur, cents in sorted(by_currency.items()))


def _rate(part: int, whole: int) -> str:
    return "-" if whole == 0 else f"{100 * part / whole:.1f}%"


def row(campaign_id: str, traffic: str, c: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        campaign_id,
        traffic,
        str(c["orders_placed"]),
        str(c["orders_accepted"]),
        str(c["orders_rejected"]),
        _money(c["accepted_cents_by_currency"]),
        str(c["payments_authorized"]),
        str(c["payments_declined"]),
        str(c["dunning_scheduled"]),
        str(c["dunning_recovered"]),
        _money(c["recovered_cents_by_currency"]),
        str(c["dunning_exhausted"]),
        _rate(int(c["dunning_recovered"]), int(c["dunning_scheduled"])),
    )


def _empty(c: Mapping[str, Any]) -> bool:
    return not any(v for v in c.values())


def render(snapshots: Iterable[Mapping[str, Any]]) -> str:
    """A fixed-width table, campaigns by real orders placed (largest first), then by synthetic orders, then
    by id; a campaign's synthetic row follows its real one and is left out when it holds nothing."""
    ordered = sorted(
        snapshots,
        key=lambda s: (
            -int(s["real"]["orders_placed"]),
            -int(s["synthetic"]["orders_placed"]),
            s["campaign_id"],
        ),
    )
    rows: list[tuple[str, ...]] = []
    for s in ordered:
        cid = str(s["campaign_id"])
        if not _empty(s["real"]) or _empty(s["synthetic"]):
            rows.append(row(cid, "real", s["real"]))
        if not _empty(s["synthetic"]):
            rows.append(row(cid, "synthetic", s["synthetic"]))
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
