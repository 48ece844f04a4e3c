"""Dunning: what to do after a declined payment. A pure function of the decline, policy and clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from clickcash.events import DunningStep, PaymentDeclined
from config.domain import DunningPolicy

DeclineClass = Literal["hard", "soft", "technical"]


def classify_decline(code: str, policy: DunningPolicy) -> DeclineClass:
    """Hard declines are never retried; technical ones get a short backoff; the rest are soft."""
    if code in policy.hard_codes:
        return "hard"
    if code in policy.technical_codes:
        return "technical"
    return "soft"


@dataclass(frozen=True, slots=True)
class DunningPlan:
    decline_class: DeclineClass
    steps: list[DunningStep]

    def next_wake(self) -> datetime | None:
        """When this plan next wants waking (its earliest step), for a durable timer."""
        return min((s.due_at for s in self.steps), default=None)


def plan_dunning(
    declined: PaymentDeclined, policy: DunningPolicy, now: datetime, channels: Sequence[str]
) -> DunningPlan:
    """Plan retries and reminders for one declined payment.

    A hard decline gets no retry, only an immediate "update your payment method" reminder; the reminder
    goes by the policy's channel only when the customer allowed it, else by their first allowed channel.
    """
    decline_class = classify_decline(declined.decline_code, policy)
    channel = policy.reminder_channel if policy.reminder_channel in channels else None
    if channel is None and channels:
        channel = channels[0]
    if decline_class == "hard":
        return DunningPlan("hard", [DunningStep(kind="reminder", due_at=now, channel=channel)])
    offsets = (
        policy.technical_retry_offsets_h if decline_class == "technical" else policy.soft_retry_offsets_h
    )
    steps = [DunningStep(kind="retry", due_at=now + timedelta(hours=h)) for h in offsets]
    if decline_class == "soft":
        steps.insert(0, DunningStep(kind="reminder", due_at=now, channel=channel))
    return DunningPlan(decline_class, steps)
