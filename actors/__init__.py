"""The shards: order guardrails, PSP routing and dunning over per-customer state. Other packages use
:func:`decode_record`, the one verdict on an input record (valid :class:`InputEvent`, or a dead letter),
from here; the modules with a leading underscore are the shard's internals."""

from clickcash.actors._decode import InputEvent, decode_record

__all__ = ["InputEvent", "decode_record"]
