"""``clickcash forget CUSTOMER...``: erase customers (GDPR/CCPA erasure on request).

Writes one signed ``customer.erasure_requested`` command per customer to the input topic, keyed by the
customer, so it is applied in order with the customer's other events: the shard deletes the customer's
state and timers and writes ``customer.erased`` to the orders topic for downstream services; a parked
customer's held records are erased by its router (see docs/data-protection.md). The command is signed
with the first key of ``security.erasure_command_keys``; a command without a valid MAC is dead-lettered
as ``forged_command`` and erases nothing. Forgetting a customer twice is harmless: the second command
finds nothing to erase and writes its own ``customer.erased``.

Needs only Kafka (``kafka.*``; ``--local`` for the services of ``clickcash services start``). It returns
once the broker has the commands; the erasure happens when the app consumes them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from clickcash.actors.erasure import erasure_command
from clickcash.config.settings import Settings
from clickcash.errors import ConfigError, ServiceError
from clickcash.events import Id, looks_like_card_number

_ID = TypeAdapter(Id)


def checked_customers(customers: Sequence[str]) -> list[str]:
    """The customer ids, each a valid id of the event contract (1-255 characters, no control characters,
    no card number); duplicates once, in the order given."""
    out: list[str] = []
    for c in customers:
        try:
            _ID.validate_python(c)
        except ValidationError as exc:
            raise ConfigError(f"customer: {c!r} is not a customer id ({exc.errors()[0]['msg']})") from exc
        if looks_like_card_number(c):
            raise ConfigError("customer: the id reads as a card number; no customer id is one")
        if c not in out:
            out.append(c)
    return out


def forget(settings: Settings, customers: Sequence[str]) -> list[tuple[str, str]]:
    """Produce one signed erasure command per customer; (customer, command event id) once all are on the
    broker."""
    from confluent_kafka import KafkaException, Producer

    signer = settings.security.erasure_mac()
    commands = [erasure_command(c, signer) for c in checked_customers(customers)]
    errors: list[str] = []
    try:
        producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True, "acks": "all"})
        for _, key, value in commands:
            producer.produce(
                settings.kafka.input_topic,
                value,
                key,
                on_delivery=lambda err, _m: errors.append(str(err)) if err else None,
            )
        left = producer.flush(30)
    except KafkaException as exc:
        raise ServiceError("kafka", f"could not write the erasure commands: {exc}") from exc
    if left or errors:
        raise ServiceError(
            "kafka", f"{left} erasure command(s) not delivered in 30 s; {'; '.join(errors[:3])}".strip("; ")
        )
    return [(key.decode(), event_id) for event_id, key, _ in commands]


def cmd_forget(args: argparse.Namespace) -> int:
    from clickcash.cluster.local.stack import running_services
    from clickcash.config.settings import load_settings

    overrides = {}
    if args.local:
        endpoints = running_services()
        if endpoints is None:
            raise ConfigError("no local services running: start them with `clickcash services start`")
        overrides["kafka"] = {"bootstrap_servers": endpoints.bootstrap_servers}
    settings = load_settings(**overrides)
    for customer, event_id in forget(settings, args.customers):
        print(f"erasure of {customer} requested (command {event_id})", flush=True)
    print(
        f"the app erases them when it consumes the commands; each gives one customer.erased on "
        f"{settings.kafka.orders_topic}",
        flush=True,
    )
    return 0


def add_forget_parser(sub: argparse._SubParsersAction) -> None:
    fg = sub.add_parser(
        "forget",
        help="erase customers: state, stored responses, timers, parked records (docs/data-protection.md)",
        description="Write one signed erasure command per customer to the input topic, in order with "
        "the customer's events. The app erases the customer's state, timers, stored responses and "
        "parked records and writes one customer.erased event to the orders topic. Signed with "
        "security.erasure_command_keys; a command without a valid MAC is dead-lettered "
        "(forged_command) and erases nothing. Forgetting twice is harmless.",
    )
    fg.add_argument("customers", nargs="+", metavar="CUSTOMER", help="customer id (the Kafka key)")
    fg.add_argument("--local", action="store_true", help="use the Kafka of `clickcash services start`")
    fg.set_defaults(func=cmd_forget)
