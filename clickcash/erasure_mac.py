"""Authenticating customer erasure commands: an HMAC-SHA256 that ``clickcash forget`` signs and the shard
verifies.

A ``customer.erasure_requested`` command travels through the input topic like every event of the customer
(so it is ordered with them), and producers outside clickcash can write that topic. Without a proof of
origin, anyone with write access to the input could erase any customer's state. ``clickcash forget``
signs the command's id and customer id with the first key of ``security.erasure_command_keys``; the shard
(and the router, for a parked customer) acts only on a command one of the keys verifies.

The keys are not the timer command keys: the operator who erases customers needs no power to fire dunning
retries, and the routers that sign timer commands need no power to erase.

Pure (``hmac`` from the standard library only), so the check is unit-tested and the verifier's reference
shard applies exactly the rule the app applies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from clickcash.errors import ConfigError

LOCAL_STACK_ERASURE_KEY = "clickcash-local-stack-erasure-key-not-a-secret"
"""The documented default key: fine for the local stack and tests, refused by ``clickcash run`` against a
Ray cluster (see ``security.erasure_command_keys``)."""

MAC_HEX_CHARS = 64
_DOMAIN = b"clickcash.customer.erasure_requested.v1"


def _message(event_id: str, customer_id: str) -> bytes:
    # Ids cannot hold control characters (the contract's ``Id``): NUL separates the parts unambiguously.
    return b"\x00".join((_DOMAIN, event_id.encode(), customer_id.encode()))


class ErasureMac:
    """Signs with the first key, verifies with any of them (constant-time comparisons)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(not k for k in keys):
            raise ConfigError("security.erasure_command_keys: at least one non-empty key is required")
        self._keys = tuple(keys)

    def sign(self, *, event_id: str, customer_id: str) -> str:
        return hmac.new(self._keys[0], _message(event_id, customer_id), hashlib.sha256).hexdigest()

    def verify(self, mac: str | None, *, event_id: str, customer_id: str) -> bool:
        if mac is None or len(mac) != MAC_HEX_CHARS:
            return False
        msg = _message(event_id, customer_id)
        given = mac.encode()
        ok = False
        for key in self._keys:  # every key is tried, so the time taken does not tell which one matched
            ok |= hmac.compare_digest(hmac.new(key, msg, hashlib.sha256).hexdigest().encode(), given)
        return ok


LOCAL_STACK_ERASURE_MAC = ErasureMac([LOCAL_STACK_ERASURE_KEY.encode()])
"""Signs and verifies with the local-stack key (tests and in-process tools that use default settings)."""
