"""What the ledger exports to Prometheus, with bounded labels: the top campaigns by volume plus ``other``.

Pure (no Kafka, Redis, Ray): the ledger actor's ``stats`` calls :func:`top_campaigns` on its latest
snapshots, and the driver's metrics model turns the result into families. Campaign ids come from input
data, so naming every one would let traffic grow the series count without bound; the ``top`` campaigns by
orders placed (real and synthetic) are named and the rest are summed into ``other``. The cohort counts are
exported across campaigns (their labels are bounded by the tiers, decline classes and networks).

The values are the snapshot totals, exported as gauges: a campaign entering or leaving the top moves its
share between its own series and ``other``, which a counter would report as a reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clickcash.histogram import Histogram

OTHER = "other"


def _add_counts(into: dict[str, Any], counts: Mapping[str, Any]) -> None:
    for k, v in counts.items():
        if isinstance(v, dict):
            sub = into.setdefault(k, {})
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    leaf = sub.setdefault(kk, {})
                    for o, n in vv.items():
                        leaf[o] = leaf.get(o, 0) + n
                else:
                    sub[kk] = sub.get(kk, 0) + vv
        else:
            into[k] = into.get(k, 0) + v


def _add_cycles(into: dict[str, Any], cycles: Mapping[str, Any]) -> None:
    for stage, h in cycles.items():
        if stage in into:
            merged = Histogram.from_dict(into[stage])
            merged.merge(Histogram.from_dict(h))
            into[stage] = merged.to_dict()
        else:
            into[stage] = dict(h)


def top_campaigns(campaigns: Mapping[str, Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` largest campaigns by orders placed (ties by id), then ``other`` with the rest summed (left
    out when there is no rest). Each row: ``campaign``, ``real``, ``synthetic``, ``cycle_times``."""
    items = list(campaigns.items())  # one atomic copy: the ledger's run thread keeps updating the dict
    ranked = sorted(
        items,
        key=lambda kv: (-(kv[1]["real"]["orders_placed"] + kv[1]["synthetic"]["orders_placed"]), kv[0]),
    )
    out = [
        {
            "campaign": cid,
            "real": snap["real"],
            "synthetic": snap["synthetic"],
            "cycle_times": snap["cycle_times"],
        }
        for cid, snap in ranked[:n]
    ]
    rest = ranked[n:]
    if rest:
        other: dict[str, Any] = {"campaign": OTHER, "real": {}, "synthetic": {}, "cycle_times": {}}
        for _, snap in rest:
            _add_counts(other["real"], snap["real"])
            _add_counts(other["synthetic"], snap["synthetic"])
            _add_cycles(other["cycle_times"], snap["cycle_times"])
        out.append(other)
    return out
