"""The ``campaign.snapshot`` contract: what the campaign ledger publishes on its compacted topic.

Kept in the kernel next to the other event models so ``clickcash schemas`` and ``clickcash catalog`` write
its JSON Schema from the same source the ledger validates against. One snapshot per campaign id (the Kafka
key); the latest record of a key is the campaign's current state, so a consumer reads the topic compacted.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SNAPSHOT_TYPE = "campaign.snapshot"
SNAPSHOT_SOURCE = "clickcash/campaign-ledger"

Count = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CampaignCounts(_Model):
    """Additive totals of one campaign's real traffic (or of its synthetic traffic, kept apart)."""

    orders_placed: Count = 0
    orders_accepted: Count = 0
    orders_rejected: Count = 0
    rejected_by_reason: dict[str, Count] = Field(default_factory=dict)
    """reason code -> orders rejected for it (an order rejected for two reasons counts under both)"""
    accepted_cents_by_currency: dict[str, Count] = Field(default_factory=dict)
    payments_authorized: Count = 0
    authorized_cents_by_currency: dict[str, Count] = Field(default_factory=dict)
    payments_declined: Count = 0
    declined_by_class: dict[str, Count] = Field(default_factory=dict)
    """``hard`` / ``soft`` / ``technical`` (the dunning rules' decline classes of ``config/domain.toml``)"""
    dunning_scheduled: Count = 0
    dunning_recovered: Count = 0
    recovered_cents_by_currency: dict[str, Count] = Field(default_factory=dict)
    dunning_exhausted: Count = 0
    dunning_cancelled: Count = 0
    cohorts: dict[str, dict[str, Count]] = Field(default_factory=dict)
    """``"<dimension>=<value>"`` -> dunning outcome (``scheduled``, ``recovered``, ``exhausted``,
    ``cancelled``) -> count; dimensions ``decline_class``, ``tenure_tier``, ``value_tier``, ``network``"""


class CycleHistogram(_Model):
    """Fixed-bucket histogram: one count per upper bound (seconds) plus the +Inf bucket, not cumulative."""

    bounds_s: list[float]
    counts: list[Count]
    sum_s: Annotated[float, Field(ge=0)]


class CycleTimes(_Model):
    click_to_decision: CycleHistogram
    decision_to_authorization: CycleHistogram
    authorization_to_recovery: CycleHistogram
    """dunning plan scheduled (the first decline) -> recovered"""


class LedgerResume(_Model):
    """The ledger's own resume point (open orders and recently counted input ids); consumers ignore it.

    Travels in the snapshot so that the snapshot and the ledger's consumed offsets, committed in one Kafka
    transaction, describe the same point of the streams."""

    open_orders: dict[str, list[bool | int | str | None]] = Field(default_factory=dict)
    recent_input_ids: list[str] = Field(default_factory=list)


class CampaignSnapshot(_Model):
    """``data`` of a ``campaign.snapshot`` CloudEvent."""

    campaign_id: Annotated[str, Field(min_length=1, max_length=255)]
    real: CampaignCounts
    synthetic: CampaignCounts
    """traffic marked ``synthetic: true`` (load tests, demos, benchmarks, the PSP simulator)"""
    cycle_times: CycleTimes
    """real traffic only"""
    resume: LedgerResume


class SnapshotEnvelope(BaseModel):
    """CloudEvents 1.0 attributes of a ``campaign.snapshot`` (structured mode, keyed by campaign id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"]
    id: str
    """derived from the campaign id and the content: the same state republished has the same id"""
    source: Literal["clickcash/campaign-ledger"]
    type: Literal["campaign.snapshot"]
    time: AwareDatetime
    datacontenttype: Literal["application/json"]
    partitionkey: str
    """the campaign id (also the Kafka key)"""
    campaignid: str
    data: dict[str, Any]
