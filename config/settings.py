"""Runtime settings: the one module that knows environment variable names and the config file.

Loaded once at start, frozen, validated: a wrong value stops the start with a message naming the setting
(as its environment variable), not a stack trace from deep inside the pipeline. Precedence, highest first:
explicit arguments, ``CLICKCASH_*`` environment variables (nested with ``__``, e.g.
``CLICKCASH_KAFKA__BOOTSTRAP_SERVERS``), the TOML file named by ``CLICKCASH_CONFIG_FILE`` (default
``config/clickcash.toml``), then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from clickcash._errors import ConfigError
from clickcash._timer_mac import LOCAL_STACK_TIMER_KEY, TimerMac

ENV_PREFIX = "CLICKCASH_"
CONFIG_FILE_ENV = "CLICKCASH_CONFIG_FILE"
DEFAULT_CONFIG_FILE = Path(__file__).with_name("clickcash.toml")

TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: TopicName = "clickcash.events"
    orders_topic: TopicName = "clickcash.orders"
    payments_topic: TopicName = "clickcash.payments"
    dunning_topic: TopicName = "clickcash.dunning"
    dlq_topic: TopicName = "clickcash.dlq"
    group_id: Annotated[str, Field(min_length=1)] = "clickcash"
    transactional_id_prefix: Annotated[str, Field(min_length=1)] = "clickcash"
    consume_batch_max: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    consume_timeout_ms: Annotated[int, Field(ge=1, le=10_000)] = 20
    """longest wait for a first record with nothing in flight (the router wakes on the record itself)"""
    consume_linger_ms: Annotated[int, Field(ge=0, le=1_000)] = 2
    """after a first record, how long the router waits for more to fill the round (0: take what is queued)"""
    inflight_poll_ms: Annotated[int, Field(ge=1, le=1_000)] = 2
    """with rounds in flight, how often the router looks for finished shard calls and new input"""
    commit_interval_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    """the oldest an open transaction gets while a backlog is waiting; with none waiting, a transaction
    commits as soon as its outputs are produced (see ``router._cadence``)"""
    transaction_timeout_ms: Annotated[int, Field(ge=1_000, le=900_000)] = 60_000
    transaction_call_timeout_ms: Annotated[int, Field(ge=100, le=300_000)] = 30_000
    """how long one transactional call (init, send offsets, commit, abort) may take; a call still running
    30 s past it means a wedged producer, and the router's run ends (see ``router._bounded``)"""
    max_message_bytes: Annotated[int, Field(ge=65_536, le=8 * 1024 * 1024)] = 1_048_576
    """the largest record clickcash writes or accepts: every client's ``message.max.bytes`` and, set by
    ``clickcash topics``/``ensure_topics`` on the topics it creates, their ``max.message.bytes``; a dead
    letter whose original does not fit carries a prefix of it (see ``DeadLetter.truncated``)"""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every client (connection and security)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "message.max.bytes": self.max_message_bytes,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


class RedisSettings(_Section):
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "cc"
    socket_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class PipelineSettings(_Section):
    shards: Annotated[int, Field(ge=1, le=4096)] = 4
    routers: Annotated[int, Field(ge=1, le=256)] = 1
    max_inflight_batches_per_shard: Annotated[int, Field(ge=1, le=64)] = 4
    max_event_bytes: Annotated[int, Field(ge=256, le=8 * 1024 * 1024)] = 64 * 1024
    idempotency_retention_s: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    replay_response_ttl_s: Annotated[int, Field(ge=60)] = 24 * 3600
    shard_num_cpus: Annotated[float, Field(ge=0, le=64)] = 0.5
    router_num_cpus: Annotated[float, Field(ge=0, le=64)] = 0.5
    timer_poll_interval_ms: Annotated[int, Field(ge=10, le=600_000)] = 1000
    psp_stats_refresh_ms: Annotated[int, Field(ge=0, le=600_000)] = 1000
    """How stale a shard's view of the other shards' PSP outcomes may get (0: reload every batch)."""
    state_cache_customers: Annotated[int, Field(ge=0, le=10_000_000)] = 10_000
    """Decoded customer states a shard keeps between batches (LRU; 0: none). ~4-5 KB each at the default
    mix, so ~45 MB per shard when full. Redis stays the truth: a cached state is used only when the
    loaded version and document are the ones the shard committed."""
    round_max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    """times a failing round is tried before the router isolates the failing record (and times that one
    record is tried before its customer is parked); see ``router._failures``"""
    round_retry_backoff_ms: Annotated[int, Field(ge=1, le=60_000)] = 200
    """wait before the first retry of a failed round; each next retry waits twice as long"""
    round_retry_backoff_max_ms: Annotated[int, Field(ge=1, le=600_000)] = 5_000
    """cap of the wait between retries of a failing round"""
    outage_backoff_max_ms: Annotated[int, Field(ge=1, le=600_000)] = 10_000
    """cap of the wait between attempts while Redis or the broker is unavailable (no record is blamed)"""
    fault_inject_customer_ids: str = ""
    """TESTS ONLY: comma-separated customer keys; a shard raises on every batch holding one of them, as an
    engine with a bug would. Empty (off) by default; only settings enable it, never input data"""

    @model_validator(mode="after")
    def _retention_covers_replay(self) -> PipelineSettings:
        if self.round_retry_backoff_ms > self.round_retry_backoff_max_ms:
            raise ValueError(
                "round_retry_backoff_ms must not exceed round_retry_backoff_max_ms "
                f"({self.round_retry_backoff_ms} > {self.round_retry_backoff_max_ms})"
            )
        if self.replay_response_ttl_s > self.idempotency_retention_s:
            raise ValueError(
                "replay_response_ttl_s must not exceed idempotency_retention_s "
                f"({self.replay_response_ttl_s} > {self.idempotency_retention_s})"
            )
        return self

    def required_cpus(self) -> float:
        """Ray CPUs the actors ask for; a cluster with fewer would leave some actors unscheduled."""
        return self.shards * self.shard_num_cpus + self.routers * self.router_num_cpus


class RaySettings(_Section):
    address: str | None = None
    namespace: Annotated[str, Field(min_length=1)] = "clickcash"
    num_cpus: Annotated[int, Field(ge=1, le=4096)] | None = None
    auth_mode: Literal["token", "disabled"] = "token"
    worker_niceness: Annotated[int, Field(ge=0, le=19)] = 15
    """Unix niceness of the app's Ray workers (routers, shards). Ray's default is 15, so that its own
    processes win the CPU; but routers and shards are the workload, and at 15 they lose every contended
    core to the broker, Redis or a load generator on the same node. 0 is set through the job's runtime
    environment; the default stays Ray's until a live-rescale failure seen with 0 is explained."""


class MonitoringSettings(_Section):
    """The driver's Prometheus endpoint, the stall watchdog and log output."""

    metrics_enabled: bool = True
    # Every interface by default: Prometheus scrapes the driver's pod or node address, not loopback.
    metrics_host: str = "0.0.0.0"  # noqa: S104
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] = 9464
    """0 picks a free port (tests); the bound port is logged and shown by ``clickcash status``"""
    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    stall_after_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """a partition or shard with work and no progress for this long is reported stalled"""
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


TimerKey = Annotated[SecretStr, Field(min_length=16)]


class SecuritySettings(_Section):
    """Secrets that prove where a message came from."""

    timer_command_keys: Annotated[tuple[TimerKey, ...], Field(min_length=1)] = (
        SecretStr(LOCAL_STACK_TIMER_KEY),
    )
    """HMAC-SHA256 keys of the dunning timer commands the routers append to the input topic (env
    ``CLICKCASH_SECURITY__TIMER_COMMAND_KEYS`` as a JSON list, e.g. ``'["new-key", "old-key"]'``): the
    first signs, every one verifies, so a key is rotated by putting a new one first and removing the old
    one after the commands signed with it have been applied. At least 16 characters each. The default is
    a published key for the local stack only; ``clickcash run`` against a Ray cluster refuses it."""

    def timer_mac(self) -> TimerMac:
        return TimerMac([k.get_secret_value().encode() for k in self.timer_command_keys])

    def uses_local_stack_key(self) -> bool:
        return any(k.get_secret_value() == LOCAL_STACK_TIMER_KEY for k in self.timer_command_keys)


class Settings(BaseSettings):
    """All of clickcash's settings; build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    pipeline: PipelineSettings = PipelineSettings()
    ray: RaySettings = RaySettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    security: SecuritySettings = SecuritySettings()
    domain_file: Path = Path(__file__).with_name("domain.toml")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))


def env_names() -> dict[str, str]:
    """Every setting's environment variable -> its dotted name (deployment files are checked against it)."""
    out = {}
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name in model.model_fields:
                out[ENV_PREFIX + f"{section}__{name}".upper()] = f"{section}.{name}"
        else:
            out[ENV_PREFIX + section.upper()] = section
    out[CONFIG_FILE_ENV] = "(the TOML settings file)"
    return out


def _setting_name(loc: tuple[int | str, ...]) -> str:
    dotted = ".".join(str(p) for p in loc)
    env = ENV_PREFIX + "__".join(str(p).upper() for p in loc)
    return f"{dotted} (env {env})"


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings once; raise ``ConfigError`` naming every wrong setting."""
    config_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
    if CONFIG_FILE_ENV in os.environ and not config_file.is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={config_file} is not a readable file")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{_setting_name(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc
