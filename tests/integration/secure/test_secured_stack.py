"""Proof on the secured stack: least privilege holds, refusals are clear, secrets stay secret, and the
pipeline keeps its exactly-once guarantees with every role on its own principal."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from pydantic import SecretStr

from clickcash.cluster.access import check_connection, check_read, new_group
from clickcash.cluster.local.stack import LocalStack
from clickcash.cluster.topics import ensure_topics
from clickcash.config.settings import KafkaSecuritySettings
from clickcash.errors import ServiceError
from tests.integration.secure.conftest import RoleSettings

DOWNSTREAM = ("orders", "payments", "dunning")


@pytest.fixture(scope="module")
def topics(role_settings: RoleSettings) -> None:
    """The operator creates the topics (the app and the other roles may not)."""
    ensure_topics(role_settings("operator"), partitions=2, replication_factor=1)


@pytest.mark.parametrize("kind", DOWNSTREAM)
def test_a_downstream_consumer_reads_its_topic_and_nothing_else(
    role_settings: RoleSettings, topics: None, kind: str
) -> None:
    k = role_settings(kind).kafka
    own = getattr(k, f"{kind}_topic")
    check_read(k, own, new_group(f"{own}."))
    for other in (k.input_topic, k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic):
        if other == own:
            continue
        with pytest.raises(ServiceError) as info:
            check_read(k, other, new_group(f"{own}."))
        message = str(info.value)
        assert f"User:{k.sasl_username}" in message and f"topic {other}" in message, message
        assert "TOPIC_AUTHORIZATION_FAILED" in message, message


def test_a_downstream_consumer_may_not_use_another_teams_group(
    role_settings: RoleSettings, topics: None
) -> None:
    k = role_settings("payments").kafka
    with pytest.raises(ServiceError, match=r"User:clickcash-payments-consumer is not allowed to read group"):
        check_read(k, k.payments_topic, new_group(f"{k.orders_topic}."))


def _produce(k: KafkaSecuritySettings, topic: str) -> str | None:
    """Produce one record; the delivery error's name, or None when it was written."""
    errors: list[str] = []
    p = Producer(
        {**k.client_config(), "enable.idempotence": True, "acks": "all", "message.timeout.ms": 20000}
    )
    p.produce(
        topic, b"probe", key=b"probe", on_delivery=lambda err, _m: errors.append(err.name()) if err else None
    )
    assert p.flush(30) == 0
    return errors[0] if errors else None


def test_the_load_generator_can_only_write_the_input(role_settings: RoleSettings, topics: None) -> None:
    k = role_settings("loadgen").kafka
    for topic in (k.orders_topic, k.payments_topic, k.dunning_topic, k.dlq_topic):
        assert _produce(k, topic) == "TOPIC_AUTHORIZATION_FAILED", topic
    with pytest.raises(ServiceError, match=r"User:clickcash-loadgen is not allowed to read"):
        check_read(k, k.input_topic, new_group("clickcash-"))
    # and the input it may write (the app dead-letters this malformed record like any other)
    assert _produce(k, k.input_topic) is None


def test_a_wrong_password_fails_fast_with_a_clear_message(role_settings: RoleSettings) -> None:
    k = role_settings("operator").kafka.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    with pytest.raises(ServiceError, match=r"authentication of User:clickcash-operator failed"):
        check_connection(k, timeout_s=60)


def test_an_untrusted_certificate_fails_fast_with_a_clear_message(
    role_settings: RoleSettings, secure_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from clickcash.cluster.local._secure import make_tls

    other_ca = make_tls(tmp_path_factory.mktemp("other-ca")).ca_cert
    k = role_settings("operator").kafka.model_copy(update={"ssl_ca_location": other_ca})
    with pytest.raises(ServiceError, match=r"TLS handshake failed: the broker's certificate is not trusted"):
        check_connection(k, timeout_s=60)


def test_the_app_refuses_to_start_with_a_wrong_password(
    role_settings: RoleSettings, ray_session: None
) -> None:
    from clickcash.cluster.app import App

    app_settings = role_settings("app", ray={"namespace": "secure-wrong-password"})
    wrong = app_settings.model_copy(
        update={"kafka": app_settings.kafka.model_copy(update={"sasl_password": SecretStr("nope")})}
    )
    app = App(wrong)
    with pytest.raises(ServiceError, match=r"authentication of User:clickcash-app failed"):
        app.start()
    assert app.shards == [] and app.routers == [], "nothing was started"
