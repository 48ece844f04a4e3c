"""Authenticating dunning timer commands: an HMAC-SHA256 the router signs and the shard verifies.

A ``dunning.timer_fired`` command travels through the input topic, which producers outside clickcash can
write too. Plan ids are published (``dunning.step_due``), so without a proof of origin anyone with write
access to the input could fire a retry early and skip quiet hours and caps. The router that fires a timer
signs the command's id, customer, order, plan, step and due time with the first of the configured keys;
the shard acts only on a command whose MAC one of the keys verifies (a key is rotated by putting the new
one first and dropping the old one once every command signed with it has been applied).

Pure (``hmac`` from the standard library only), so the check is unit-tested and the verifier's reference
shard applies exactly the same rule as the app.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from clickcash.errors import ConfigError

LOCAL_STACK_TIMER_KEY = "clickcash-local-stack-timer-key-not-a-secret"
"""The documented default key: fine for the local stack and tests, refused by ``clickcash run`` against
a Ray cluster (see ``security.timer_command_keys``)."""

MAC_HEX_CHARS = 64
_DOMAIN = b"clickcash.dunning.timer_fired.v1"


def _message(
    event_id: str, customer_id: str, order_id: str, plan_id: str, step_index: int, due_ms: int
) -> bytes:
    # Ids cannot hold control characters (the contract's ``Id``): NUL separates the parts unambiguously.
    parts = (event_id, customer_id, order_id, plan_id, str(step_index), str(due_ms))
    return b"\x00".join((_DOMAIN, *(p.encode() for p in parts)))


class TimerMac:
    """Signs with the first key, verifies with any of them (constant-time comparisons)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(not k for k in keys):
            raise ConfigError("security.timer_command_keys: at least one non-empty key is required")
        self._keys = tuple(keys)

    def sign(
        self, *, event_id: str, customer_id: str, order_id: str, plan_id: str, step_index: int, due_ms: int
    ) -> str:
        msg = _message(event_id, customer_id, order_id, plan_id, step_index, due_ms)
        return hmac.new(self._keys[0], msg, hashlib.sha256).hexdigest()

    def verify(
        self,
        mac: str | None,
        *,
        event_id: str,
        customer_id: str,
        order_id: str,
        plan_id: str,
        step_index: int,
        due_ms: int,
    ) -> bool:
        if mac is None or len(mac) != MAC_HEX_CHARS:
            return False
        msg = _message(event_id, customer_id, order_id, plan_id, step_index, due_ms)
        given = mac.encode()
        ok = False
        for key in self._keys:  # every key is tried, so the time taken does not tell which one matched
            ok |= hmac.compare_digest(hmac.new(key, msg, hashlib.sha256).hexdigest().encode(), given)
        return ok


LOCAL_STACK_TIMER_MAC = TimerMac([LOCAL_STACK_TIMER_KEY.encode()])
"""Signs and verifies with the local-stack key (tests and in-process tools that use default settings)."""
