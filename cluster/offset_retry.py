"""When to retry a consumer group's offset request: the pure policy lives in the kernel
(:mod:`clickcash.offset_retry`) so the router uses it too; this name stays for the cluster tools."""

from clickcash.offset_retry import (
    TRANSIENT_ERRORS,
    RetryBudget,
    failure_message,
    is_transient,
    next_delay,
)

__all__ = ["TRANSIENT_ERRORS", "RetryBudget", "failure_message", "is_transient", "next_delay"]
