"""Side-by-side contenders for ``clickcash compare``: the same input, the same broker and Redis, one process
each.

- ``passthrough``: decode and forward, no work: the ceiling of a Kafka -> Kafka loop on this machine;
- ``handrolled``: clickcash's own decode and domain logic in one confluent-kafka loop, one event at a time;
- ``quix``: the same per-event work inside a Quix Streams application with exactly-once on;
- ``clickcash``: the app itself on local Ray, default settings, guarantees on.

``compare`` pre-produces the input once, runs each contender in its own process, checks each contender's
outputs for completeness and writes the report. ``results`` holds the pure arithmetic of the report.
"""
