"""Runtime settings and the domain file: defaults, precedence, and errors that name the setting."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickcash.config.domain import DEFAULT_DOMAIN_FILE, DomainConfig, load_domain_config
from clickcash.config.settings import CONFIG_FILE_ENV, Settings, load_settings
from clickcash.errors import ClickcashError, ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings read CLICKCASH_* variables: start every test without any."""
    for name in list(os.environ):
        if name.startswith("CLICKCASH_"):
            monkeypatch.delenv(name)
    yield


def test_defaults_load() -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.pipeline.shards == 4
    assert s.pipeline.max_event_bytes == 64 * 1024
    assert s.pipeline.replay_response_ttl_s <= s.pipeline.idempotency_retention_s
    assert s.kafka.input_topic == "clickcash.events"
    assert s.kafka.dlq_topic == "clickcash.dlq"
    assert s.redis.url.get_secret_value().startswith("redis://")
    assert s.domain_file.is_file()


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        s.pipeline.shards = 9  # type: ignore[misc]


def test_env_var_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKCASH_PIPELINE__SHARDS", "8")
    monkeypatch.setenv("CLICKCASH_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9092,broker-2:9092")
    s = load_settings()
    assert s.pipeline.shards == 8
    assert s.pipeline.routers == 1, "other keys of the section keep their values"
    assert s.kafka.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert s.kafka.client_config()["bootstrap.servers"] == "broker-1:9092,broker-2:9092"


def test_precedence_arguments_then_env_then_file_then_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_file = tmp_path / "clickcash.toml"
    config_file.write_text(
        '[pipeline]\nshards = 6\nrouters = 2\nmax_event_bytes = 1024\n[kafka]\ngroup_id = "from-file"\n'
    )
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config_file))
    monkeypatch.setenv("CLICKCASH_PIPELINE__ROUTERS", "3")
    monkeypatch.setenv("CLICKCASH_PIPELINE__MAX_EVENT_BYTES", "2048")
    s = load_settings(pipeline={"max_event_bytes": 4096})
    assert s.pipeline.shards == 6  # file
    assert s.pipeline.routers == 3  # env beats file
    assert s.pipeline.max_event_bytes == 4096  # argument beats env
    assert s.kafka.group_id == "from-file"
    assert s.kafka.input_topic == "clickcash.events"  # default


@pytest.mark.parametrize("value", ["0", "abc", "5000"])
def test_bad_env_value_names_the_setting_and_the_env_var(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CLICKCASH_PIPELINE__SHARDS", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "pipeline.shards" in message
    assert "CLICKCASH_PIPELINE__SHARDS" in message
    assert isinstance(info.value, ClickcashError)
    assert info.value.__cause__ is not None


def test_every_wrong_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKCASH_KAFKA__INPUT_TOPIC", "bad topic!")
    monkeypatch.setenv("CLICKCASH_REDIS__SOCKET_TIMEOUT_S", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    for dotted, env in [
        ("kafka.input_topic", "CLICKCASH_KAFKA__INPUT_TOPIC"),
        ("redis.socket_timeout_s", "CLICKCASH_REDIS__SOCKET_TIMEOUT_S"),
    ]:
        assert dotted in message
        assert env in message


def test_bad_value_in_the_config_file_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_file = tmp_path / "clickcash.toml"
    config_file.write_text("[pipeline]\nmax_inflight_batches_per_shard = 0\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config_file))
    with pytest.raises(ConfigError, match=re.escape("pipeline.max_inflight_batches_per_shard")):
        load_settings()


def test_unknown_setting_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config_file = tmp_path / "clickcash.toml"
    config_file.write_text("[pipeline]\nshard = 3\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config_file))
    with pytest.raises(ConfigError, match=re.escape("pipeline.shard")):
        load_settings()


def test_missing_config_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "clickcash.toml"
    monkeypatch.setenv(CONFIG_FILE_ENV, str(missing))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert CONFIG_FILE_ENV in str(info.value)
    assert str(missing) in str(info.value)


def test_replay_ttl_longer_than_retention_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKCASH_PIPELINE__IDEMPOTENCY_RETENTION_S", "3600")
    monkeypatch.setenv("CLICKCASH_PIPELINE__REPLAY_RESPONSE_TTL_S", "7200")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "replay_response_ttl_s" in message
    assert "idempotency_retention_s" in message


def test_replay_ttl_equal_to_retention_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKCASH_PIPELINE__IDEMPOTENCY_RETENTION_S", "3600")
    monkeypatch.setenv("CLICKCASH_PIPELINE__REPLAY_RESPONSE_TTL_S", "3600")
    assert load_settings().pipeline.replay_response_ttl_s == 3600


def test_secrets_do_not_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKCASH_REDIS__URL", "redis://:hunter2@cache:6379/0")
    monkeypatch.setenv("CLICKCASH_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CLICKCASH_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("CLICKCASH_KAFKA__SASL_USERNAME", "app")
    monkeypatch.setenv("CLICKCASH_KAFKA__SASL_PASSWORD", "s3cr3t-pw")
    s = load_settings()
    assert "hunter2" not in repr(s)
    assert "s3cr3t-pw" not in repr(s)
    assert s.kafka.client_config()["sasl.password"] == "s3cr3t-pw"


# --- the domain file ----------------------------------------------------------------------------------


def test_shipped_domain_config_loads(domain: DomainConfig) -> None:
    assert {p.name for p in domain.psps} == {"stripe", "adyen", "braintree", "paypal"}
    assert set(domain.orders.regions) == {"US", "GB", "DE", "FR", "NL"}
    assert not set(domain.dunning.hard_codes) & set(domain.dunning.technical_codes)


def test_duplicate_psp_name_is_rejected_naming_the_file(tmp_path: Path) -> None:
    text = DEFAULT_DOMAIN_FILE.read_text()
    path = tmp_path / "domain.toml"
    path.write_text(text.replace('name = "braintree"', 'name = "stripe"'))
    with pytest.raises(ConfigError) as info:
        load_domain_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "duplicate" in message
    assert "stripe" in message


def test_bad_domain_value_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "domain.toml"
    path.write_text(
        DEFAULT_DOMAIN_FILE.read_text().replace("max_quantity_per_line = 50", "max_quantity_per_line = 0")
    )
    with pytest.raises(ConfigError) as info:
        load_domain_config(path)
    assert str(path) in str(info.value)
    assert "orders.max_quantity_per_line" in str(info.value)


@pytest.mark.parametrize("content", [None, "this is [not toml"])
def test_unreadable_domain_file_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "domain.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_domain_config(path)


def test_one_setting_sizes_every_client_and_every_created_topic() -> None:
    from clickcash.cluster.topics import all_topics, topic_config

    s = load_settings(kafka={"max_message_bytes": 2_000_000})
    assert s.kafka.client_config()["message.max.bytes"] == 2_000_000
    for topic in all_topics(s):
        assert topic_config(s, topic)["max.message.bytes"] == "2000000"
    assert topic_config(s, s.kafka.input_topic)["message.timestamp.type"] == "LogAppendTime"
    assert topic_config(s, s.kafka.campaigns_topic)["cleanup.policy"] == "compact"
