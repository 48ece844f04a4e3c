"""clickcash: campaign traffic in, orders, PSP routing and dunning out, on Ray with Kafka and Redis.

The public surface is small: the event contract, the settings loader and the error types. Engines live in
``actors`` (shards and their domain logic), ``router`` (Kafka consumption and dispatch) and ``cluster``
(running it: local services, Ray, the app).
"""

from clickcash.errors import ClickcashError, ConfigError, ServiceError, StateConflictError
from clickcash.events import (
    INPUT_TYPES,
    OUTPUT_TYPES,
    DeadLetter,
    DeadLetterCode,
    InputEnvelope,
    OutputEnvelope,
    output_id,
)

__all__ = [
    "INPUT_TYPES",
    "OUTPUT_TYPES",
    "ClickcashError",
    "ConfigError",
    "DeadLetter",
    "DeadLetterCode",
    "InputEnvelope",
    "OutputEnvelope",
    "ServiceError",
    "StateConflictError",
    "output_id",
]
