"""A customer erasure (``clickcash forget``) of a parked customer: the router's side.

A parked customer's records are held in the parking store (``clickcash.router.parking``), the erasure
command among them, so left alone the command would wait behind the records that could not be processed
for as long as the customer stays parked, and the customer's data would stay in the store. Instead the
router that keeps an authentic erasure command for a parked customer asks itself (a parking request
``erase``) to release the customer at its next round boundary:

* the held records *before* the last erasure command are erased: deleted from the store with no output
  and no dead letter (a dead letter would copy the customer's data to the dead-letter topic); their
  positions go to ``parked:erased`` (positions only) so the verifier expects nothing of them;
* the erasure command and the records after it are replayed through the customer's shard like a
  ``clickcash parked replay``: the shard erases the customer and writes ``customer.erased``, and the later
  records start from a fresh state.

Only an authentic command (a valid MAC of ``security.erasure_command_keys``) does this, so a forged one
cannot make the router throw away a parked customer's records; it stays held and is dead-lettered as
``forged_command`` when the customer is replayed.

Pure: no Kafka, no Redis.
"""

from __future__ import annotations

from collections.abc import Iterable

from clickcash.actors.erasure import authentic_erasure
from clickcash.erasure_mac import ErasureMac
from clickcash.router._dispatch import RawRecord

ERASE = "erase"
"""the parking request a router leaves itself when it keeps an erasure command of a parked customer"""


def erasing_customers(kept: Iterable[RawRecord], signer: ErasureMac) -> set[bytes]:
    """Customers with an authentic erasure command among ``kept`` (records just put in the parking store)."""
    return {r[2] for r in kept if r[2] is not None and authentic_erasure(r[2], r[3], signer)}


def split_at_erasure(
    records: list[RawRecord], signer: ErasureMac
) -> tuple[list[RawRecord], list[RawRecord]] | None:
    """(records erased, records to replay from the last authentic erasure command on), in order; None when
    the held records hold no authentic erasure command."""
    for i in range(len(records) - 1, -1, -1):
        if authentic_erasure(records[i][2], records[i][3], signer):
            return records[:i], records[i:]
    return None
