"""The consumer-group offsets reader (:mod:`clickcash.group_offsets`) built from the settings: the app's
group on its input topic unless told otherwise."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from clickcash import group_offsets as _kernel
from clickcash.config.settings import Settings
from clickcash.group_offsets import DEFAULT_BUDGET, RDKAFKA_LOG, call_with_retry
from clickcash.offset_retry import RetryBudget

__all__ = ["DEFAULT_BUDGET", "RDKAFKA_LOG", "GroupOffsets", "call_with_retry", "group_lag", "group_positions"]


class GroupOffsets(_kernel.GroupOffsets):
    """A consumer group's committed offsets, end offsets and lag on one topic (the app's input by default)."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        topic: str | None = None,
        budget: RetryBudget = DEFAULT_BUDGET,
        call_timeout_s: float = 10.0,
    ) -> None:
        k = settings.kafka
        group = group_id or k.group_id
        consumer = Consumer(
            {**k.client_config(), "group.id": group, "enable.auto.commit": False, "logger": RDKAFKA_LOG}
        )
        admin_config: dict[str, Any] = {**k.client_config(), "logger": RDKAFKA_LOG}
        super().__init__(
            consumer,
            AdminClient(admin_config),
            group_id=group,
            topic=topic or k.input_topic,
            bootstrap=k.bootstrap_servers,
            budget=budget,
            call_timeout_s=call_timeout_s,
        )


def group_lag(
    settings: Settings,
    topic: str | None = None,
    group_id: str | None = None,
    budget: RetryBudget = DEFAULT_BUDGET,
) -> int | None:
    """Events in ``topic`` (the input by default) past the group's committed offsets; None while the group
    has committed nothing on some non-empty partition yet."""
    with GroupOffsets(settings, group_id=group_id, topic=topic, budget=budget) as g:
        return g.lag()


def group_positions(settings: Settings) -> dict[int, int]:
    """The app group's committed offset per input partition (0 where none)."""
    with GroupOffsets(settings) as g:
        return {p: (o if o is not None else 0) for p, o in g.committed().items()}
