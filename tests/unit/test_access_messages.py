"""What a refused or failed Kafka connection is reported as (librdkafka's error lines as input)."""

from __future__ import annotations

from pydantic import SecretStr

from clickcash.cluster.access import connection_message, principal_of
from clickcash.config.settings import KafkaSecuritySettings

SCRAM = KafkaSecuritySettings(
    bootstrap_servers="b:9093",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="clickcash-app",
    sasl_password=SecretStr("pw"),
)


def test_an_untrusted_certificate_is_a_tls_problem_even_on_a_sasl_listener() -> None:
    line = (
        "sasl_ssl://127.0.0.1:42611/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
        "certificate "
        "verify failed (after 107ms in state SSL_HANDSHAKE)"
    )
    message = connection_message(
        SCRAM, ["Failed to get metadata: Local: Broker transport failure", line, line]
    )
    assert message.startswith("TLS handshake failed") and "kafka.ssl_ca_location" in message
    assert message.count("certificate verify failed") == 1, "repeats of one error are shown once"
    assert "Broker transport failure" not in message, "the telling error, not the generic one"


def test_a_rejected_password_names_the_principal_and_the_settings() -> None:
    line = (
        "sasl_ssl://b:9093/bootstrap: SASL authentication error: Authentication failed during authentication"
    )
    message = connection_message(SCRAM, [line])
    assert message.startswith("authentication of User:clickcash-app failed")
    assert "kafka.sasl_password" in message and "pw" not in message.split("(")[0]


def test_no_answer_names_the_brokers() -> None:
    assert connection_message(SCRAM, []) == "cannot reach Kafka at b:9093: no answer from any broker"


def test_principal_of_each_kind_of_client() -> None:
    assert principal_of(SCRAM) == "User:clickcash-app"
    assert principal_of(KafkaSecuritySettings()) == "User:ANONYMOUS"
