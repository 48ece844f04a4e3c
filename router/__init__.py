"""The router: consumes the input topic, dispatches to the shards, commits outputs and offsets in one Kafka
transaction. Its public face is :class:`Router` (and the error a failed shard call raises); the modules with
a leading underscore are its internals."""

from clickcash.router._pause import paused_campaign
from clickcash.router._router import Router, ShardFailedError

__all__ = ["Router", "ShardFailedError", "paused_campaign"]
