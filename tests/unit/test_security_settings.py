"""Client security settings: every combination a secured cluster needs, refused when inconsistent,
and secrets kept out of reprs (secrets reach the clients only through ``client_config``/``client_url``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from clickcash.config.settings import KafkaSecuritySettings, RedisSecuritySettings, load_settings, redact_url
from clickcash.errors import ConfigError


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_scram_over_tls_with_a_private_ca_and_mtls(monkeypatch: pytest.MonkeyPatch, pem: Path) -> None:
    for key, value in {
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "SCRAM-SHA-512",
        "SASL_USERNAME": "clickcash-app",
        "SASL_PASSWORD": "pw-1",
        "SSL_CA_LOCATION": str(pem),
        "SSL_CERTIFICATE_LOCATION": str(pem),
        "SSL_KEY_LOCATION": str(pem),
        "SSL_KEY_PASSWORD": "key-pw-2",
        "CLIENT_PROPERTIES": '{"client.rack": "eu-1a"}',
    }.items():
        monkeypatch.setenv(f"CLICKCASH_KAFKA__{key}", value)
    s = load_settings()
    conf = s.kafka.client_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("clickcash-app", "pw-1")
    assert conf["ssl.ca.location"] == str(pem)
    assert conf["ssl.certificate.location"] == conf["ssl.key.location"] == str(pem)
    assert conf["ssl.key.password"] == "key-pw-2"
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert conf["client.rack"] == "eu-1a"
    assert "pw-1" not in repr(s) and "key-pw-2" not in repr(s)


def test_oauthbearer_uses_librdkafka_oidc_client_credentials() -> None:
    k = KafkaSecuritySettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_token_endpoint_url="https://idp.example/token",
        sasl_oauthbearer_client_id="clickcash",
        sasl_oauthbearer_client_secret="oidc-secret",
        sasl_oauthbearer_scope="kafka",
    )
    conf = k.client_config()
    assert conf["sasl.oauthbearer.method"] == "oidc"
    assert conf["sasl.oauthbearer.client.secret"] == "oidc-secret"
    assert conf["sasl.oauthbearer.scope"] == "kafka"
    assert "sasl.password" not in conf
    assert "oidc-secret" not in repr(k)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SECURITY_PROTOCOL": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"SASL_MECHANISM": "SCRAM-SHA-256"}, "security_protocol is PLAINTEXT"),
        ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "PLAIN"}, "clear text"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512"}, "needs sasl_username"),
        ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "OAUTHBEARER"}, "token_endpoint_url"),
        ({"SSL_CA_LOCATION": "/etc/ca.pem"}, "has no TLS"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": "/nonexistent/ca.pem"}, "ssl_ca_location"),
        ({"SECURITY_PROTOCOL": "SSL", "SSL_KEY_LOCATION": "/etc/hosts"}, "go together"),
        ({"CLIENT_PROPERTIES": '{"sasl.password": "x"}'}, "set by its own setting"),
        ({"CLIENT_PROPERTIES": '{"ssl.keystore.password": "x"}'}, "SecretStr"),
    ],
)
def test_inconsistent_kafka_security_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"CLICKCASH_KAFKA__{key}", value)
    with pytest.raises(ConfigError, match=named) as info:
        load_settings()
    assert "kafka" in str(info.value)


def test_secrets_come_from_a_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "CLICKCASH_KAFKA__SASL_PASSWORD").write_text("from-a-file\n")
    (tmp_path / "CLICKCASH_REDIS__PASSWORD").write_text("redis-file-pw")
    (tmp_path / "..data").mkdir()  # what a mounted Kubernetes Secret also holds
    monkeypatch.setenv("CLICKCASH_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("CLICKCASH_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CLICKCASH_KAFKA__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("CLICKCASH_KAFKA__SASL_USERNAME", "app")
    monkeypatch.setenv("CLICKCASH_REDIS__USERNAME", "clickcash-app")
    s = load_settings()
    assert s.kafka.client_config()["sasl.password"] == "from-a-file"
    assert "redis-file-pw" in s.redis.client_url()
    assert "from-a-file" not in repr(s) and "redis-file-pw" not in repr(s)


def test_a_missing_secrets_dir_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLICKCASH_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="CLICKCASH_SECRETS_DIR"):
        load_settings()


def test_redis_tls_and_acl_user_reach_the_client(pem: Path) -> None:
    r = RedisSecuritySettings(
        url="rediss://cache.internal:6380/0",
        username="clickcash-app",
        password="p@ss/word",
        ssl_ca_certs=pem,
    )
    kwargs = redis.connection.parse_url(r.client_url())
    assert kwargs["username"] == "clickcash-app"
    assert kwargs["password"] == "p@ss/word"
    assert kwargs["ssl_ca_certs"] == str(pem)
    assert kwargs["host"] == "cache.internal" and kwargs["port"] == 6380
    assert "p@ss" not in repr(r)
    assert r.display_url() == "rediss://cache.internal:6380/0"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"url": "redis://h:6379/0", "ssl_ca_certs": "/etc/hosts"}, "not rediss"),
        ({"url": "redis://u:p@h:6379/0", "username": "u", "password": "p"}, "give them once"),
        ({"url": "redis://h:6379/0", "username": "u"}, "needs password"),
        ({"url": "http://h", "password": "p"}, "must start with"),
    ],
)
def test_inconsistent_redis_security_is_refused(kwargs: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RedisSecuritySettings(**kwargs)


def test_redacted_urls_keep_no_credentials() -> None:
    assert redact_url("redis://user:hunter2@cache:6379/0") == "redis://***@cache:6379/0"
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


def test_compare_refuses_a_redis_password_on_its_command_line() -> None:
    import argparse

    from clickcash.loadtest.contenders.compare import cmd_compare

    args = argparse.Namespace(bootstrap="127.0.0.1:9", redis_url="redis://app:hunter2@127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match="CLICKCASH_REDIS__PASSWORD") as info:
        cmd_compare(args)
    assert "hunter2" not in str(info.value)
