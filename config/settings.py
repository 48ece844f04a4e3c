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
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from clickcash.erasure_mac import LOCAL_STACK_ERASURE_KEY, ErasureMac
from clickcash.errors import ConfigError
from clickcash.timer_mac import LOCAL_STACK_TIMER_KEY, TimerMac

ENV_PREFIX = "CLICKCASH_"
CONFIG_FILE_ENV = "CLICKCASH_CONFIG_FILE"
SECRETS_DIR_ENV = "CLICKCASH_SECRETS_DIR"
DEFAULT_CONFIG_FILE = Path(__file__).with_name("clickcash.toml")

TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- client security --------------------------------------------------------------------------------
# Every Kafka client (router, monitor, verifier, output reader, topic admin, load generators, benchmark
# contenders) gets its connection and security properties from ``KafkaSecuritySettings.client_config``
# (tests/unit/test_client_config_sources.py proves it), and every Redis client its URL from
# ``RedisSecuritySettings.client_url``: a cluster with a private CA, mTLS, SCRAM or OAuth is configured
# once, here, and reached by all of them.

SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

_TYPED_KAFKA_PROPERTIES = frozenset(
    {
        "bootstrap.servers",
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "sasl.oauthbearer.method",
        "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.oauthbearer.scope",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "ssl.endpoint.identification.algorithm",
    }
)
"""librdkafka properties a typed setting owns: ``client_properties`` may not set them (one source each)"""

_SECRET_PROPERTY_WORDS = ("password", "secret", "jaas", ".pem", "token")
"""a ``client_properties`` key holding one of these is a secret (or inline key material), which that plain
map would show in reprs and logs: such values go through the typed ``SecretStr`` settings or files"""


def _existing_file(path: Path | None, name: str) -> None:
    if path is not None and not path.is_file():
        raise ValueError(f"{name}: {path} is not a readable file")


class KafkaSecuritySettings(_Section):
    """How every Kafka client reaches and authenticates to the brokers (see docs/security.md)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_oauthbearer_token_endpoint_url: str | None = None
    """OIDC token endpoint: with OAUTHBEARER, librdkafka fetches and refreshes tokens itself (client
    credentials grant)"""
    sasl_oauthbearer_client_id: str | None = None
    sasl_oauthbearer_client_secret: SecretStr | None = None
    sasl_oauthbearer_scope: str | None = None
    ssl_ca_location: Path | None = None
    """PEM bundle of the CA(s) that signed the brokers' certificates (a private CA); unset: the system's"""
    ssl_certificate_location: Path | None = None
    """client certificate (PEM) for mutual TLS, with ``ssl_key_location``"""
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_endpoint_identification_algorithm: Literal["https", "none"] = "https"
    """``https`` checks the broker's host name against its certificate; ``none`` only for test CAs"""
    client_properties: dict[str, str] = Field(default_factory=dict)
    """any other librdkafka property, given to every client (e.g. ``{"client.rack": "eu-west-1a"}``);
    not for secrets nor for properties a setting above owns"""

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaSecuritySettings:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism is set but security_protocol is {self.security_protocol}")
        if self.sasl_mechanism == "PLAIN" and not tls:
            raise ValueError(
                "sasl_mechanism PLAIN sends the password in clear text: use security_protocol SASL_SSL"
            )
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and (
            not self.sasl_username or self.sasl_password is None
        ):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password")
        if self.sasl_mechanism == "OAUTHBEARER" and not (
            self.sasl_oauthbearer_token_endpoint_url
            and self.sasl_oauthbearer_client_id
            and self.sasl_oauthbearer_client_secret is not None
        ):
            raise ValueError(
                "sasl_mechanism OAUTHBEARER needs sasl_oauthbearer_token_endpoint_url, "
                "sasl_oauthbearer_client_id and sasl_oauthbearer_client_secret"
            )
        tls_files = (self.ssl_ca_location, self.ssl_certificate_location, self.ssl_key_location)
        if not tls and any(f is not None for f in tls_files):
            raise ValueError(f"ssl_* files are set but security_protocol {self.security_protocol} has no TLS")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location go together (mutual TLS)")
        _existing_file(self.ssl_ca_location, "ssl_ca_location")
        _existing_file(self.ssl_certificate_location, "ssl_certificate_location")
        _existing_file(self.ssl_key_location, "ssl_key_location")
        for key in self.client_properties:
            if key in _TYPED_KAFKA_PROPERTIES:
                raise ValueError(f"client_properties[{key!r}]: set by its own setting, not here")
            if any(word in key.lower() for word in _SECRET_PROPERTY_WORDS):
                raise ValueError(f"client_properties[{key!r}]: secrets go through their SecretStr settings")
        return self

    def client_config(self) -> dict[str, Any]:
        """librdkafka connection and security properties of every client: the one place they are built."""
        conf: dict[str, Any] = {
            **self.client_properties,
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism is not None:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_mechanism == "OAUTHBEARER":
            conf["sasl.oauthbearer.method"] = "oidc"
            conf["sasl.oauthbearer.token.endpoint.url"] = self.sasl_oauthbearer_token_endpoint_url
            conf["sasl.oauthbearer.client.id"] = self.sasl_oauthbearer_client_id
            assert self.sasl_oauthbearer_client_secret is not None  # checked by the validator
            conf["sasl.oauthbearer.client.secret"] = self.sasl_oauthbearer_client_secret.get_secret_value()
            if self.sasl_oauthbearer_scope:
                conf["sasl.oauthbearer.scope"] = self.sasl_oauthbearer_scope
        elif self.sasl_mechanism is not None:
            conf["sasl.username"] = self.sasl_username
            assert self.sasl_password is not None  # checked by the validator
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            conf["ssl.endpoint.identification.algorithm"] = self.ssl_endpoint_identification_algorithm
            if self.ssl_ca_location is not None:
                conf["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location is not None and self.ssl_key_location is not None:
                conf["ssl.certificate.location"] = str(self.ssl_certificate_location)
                conf["ssl.key.location"] = str(self.ssl_key_location)
                if self.ssl_key_password is not None:
                    conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf


class RedisSecuritySettings(_Section):
    """How every Redis client reaches and authenticates to Redis: TLS (``rediss://``) and an ACL user."""

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """``redis://`` or ``rediss://`` (TLS); a secret, since it may carry a password"""
    username: str | None = None
    """Redis ACL user (Redis 6+); with ``password``"""
    password: SecretStr | None = None
    ssl_ca_certs: Path | None = None
    """PEM bundle of the CA that signed Redis's certificate (``rediss://`` only)"""
    ssl_certfile: Path | None = None
    """client certificate for mutual TLS, with ``ssl_keyfile``"""
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _consistent_security(self) -> RedisSecuritySettings:
        parts = urlsplit(self.url.get_secret_value())
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        tls_files = (self.ssl_ca_certs, self.ssl_certfile, self.ssl_keyfile)
        if parts.scheme != "rediss" and any(f is not None for f in tls_files):
            raise ValueError("ssl_* files are set but url is not rediss:// (TLS)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        if (self.username is not None or self.password is not None) and (parts.username or parts.password):
            raise ValueError("credentials are given both in url and in username/password: give them once")
        if self.username is not None and self.password is None:
            raise ValueError("username needs password")
        _existing_file(self.ssl_ca_certs, "ssl_ca_certs")
        _existing_file(self.ssl_certfile, "ssl_certfile")
        _existing_file(self.ssl_keyfile, "ssl_keyfile")
        return self

    def client_url(self) -> str:
        """The URL every Redis client connects with (``redis.Redis.from_url``): ``url`` plus the ACL user
        and TLS files. A secret: never log it."""
        parts = urlsplit(self.url.get_secret_value())
        netloc = parts.netloc
        if self.password is not None:
            user = quote(self.username or "", safe="")
            netloc = f"{user}:{quote(self.password.get_secret_value(), safe='')}@{netloc}"
        query = dict(parse_qsl(parts.query))
        for key, path in (
            ("ssl_ca_certs", self.ssl_ca_certs),
            ("ssl_certfile", self.ssl_certfile),
            ("ssl_keyfile", self.ssl_keyfile),
        ):
            if path is not None:
                query[key] = str(path)
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))

    def display_url(self) -> str:
        """``url`` without credentials, for logs and reports."""
        return redact_url(self.url.get_secret_value())


def redact_url(url: str) -> str:
    """A URL with any user and password replaced by ``***`` (for logs and reports)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


class KafkaSettings(KafkaSecuritySettings):
    input_topic: TopicName = "clickcash.events"
    orders_topic: TopicName = "clickcash.orders"
    payments_topic: TopicName = "clickcash.payments"
    dunning_topic: TopicName = "clickcash.dunning"
    dlq_topic: TopicName = "clickcash.dlq"
    campaigns_topic: TopicName = "clickcash.campaigns"
    """the campaign ledger's ``campaign.snapshot`` events (compacted: the latest record per campaign)"""
    group_id: Annotated[str, Field(min_length=1)] = "clickcash"
    transactional_id_prefix: Annotated[str, Field(min_length=1)] = "clickcash"
    consume_batch_max: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    consume_backlog_batch_max: Annotated[int, Field(ge=1, le=100_000)] = 8_000
    """records one round may take while a backlog waits (at least ``consume_batch_max`` is used): fewer,
    larger shard calls under load, where a call's fixed cost is most of the router's and Ray's CPU"""
    consume_timeout_ms: Annotated[int, Field(ge=1, le=10_000)] = 20
    """longest wait for a first record with nothing in flight (the router wakes on the record itself)"""
    consume_linger_ms: Annotated[int, Field(ge=0, le=1_000)] = 2
    """after a first record, how long the router waits for more to fill the round (0: take what is queued)"""
    inflight_poll_ms: Annotated[int, Field(ge=1, le=1_000)] = 2
    """with rounds in flight, how often the router looks for finished shard calls and new input"""
    commit_interval_ms: Annotated[int, Field(ge=1, le=60_000)] = 100
    """the oldest an open transaction gets while a backlog is waiting; with none waiting, a transaction
    commits as soon as its outputs are produced (see ``clickcash.router._cadence``)"""
    transaction_timeout_ms: Annotated[int, Field(ge=1_000, le=900_000)] = 60_000
    transaction_call_timeout_ms: Annotated[int, Field(ge=100, le=300_000)] = 30_000
    """how long one transactional call (init, send offsets, commit, abort) may take; a call still running
    30 s past it means a wedged producer, and the router's run ends (see ``clickcash.router._bounded``)"""
    max_message_bytes: Annotated[int, Field(ge=65_536, le=8 * 1024 * 1024)] = 1_048_576
    """the largest record clickcash writes or accepts: every client's ``message.max.bytes`` and, set by
    ``clickcash topics``/``ensure_topics`` on the topics it creates, their ``max.message.bytes``; a dead
    letter whose original does not fit carries a prefix of it (see ``DeadLetter.truncated``)"""

    def client_config(self) -> dict[str, Any]:
        """Every Kafka client's librdkafka settings: connection and security, plus the record size limit."""
        return {**super().client_config(), "message.max.bytes": self.max_message_bytes}

    def router_transactional_id(self, router_index: int) -> str:
        """Router ``router_index``'s transactional id: stable across restarts, so a restarted router's
        producer fences the one it replaces (``router_transactional_id_prefix`` + index)."""
        return f"{router_transactional_id_prefix(self.transactional_id_prefix, self.group_id)}{router_index}"


def router_transactional_id_prefix(transactional_id_prefix: str, group_id: str) -> str:
    """What every router's transactional id starts with (the prefixed ACL of docs/security.md)."""
    return f"{transactional_id_prefix}-{group_id}-router-"


class RedisSettings(RedisSecuritySettings):
    key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "cc"
    socket_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0


class PipelineSettings(_Section):
    shards: Annotated[int, Field(ge=1, le=4096)] = 4
    routers: Annotated[int, Field(ge=1, le=256)] = 1
    max_inflight_batches_per_shard: Annotated[int, Field(ge=1, le=64)] = 4
    max_event_bytes: Annotated[int, Field(ge=256, le=8 * 1024 * 1024)] = 64 * 1024
    idempotency_retention_s: Annotated[int, Field(ge=60)] = 7 * 24 * 3600
    replay_response_ttl_s: Annotated[int, Field(ge=60)] = 24 * 3600
    customer_ttl_s: Annotated[int, Field(ge=0)] = 400 * 24 * 3600
    """a customer's state (``<prefix>:cust:<customer>``) expires this long after the customer's last event
    (every write sets it afresh); 400 days outlives a yearly customer and any dunning plan. 0: never"""
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
    record is tried before its customer is parked); see ``clickcash.router._failures``"""
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
    max_inline_object_bytes: Annotated[int, Field(ge=0, le=64 * 1024 * 1024)] = 1024 * 1024
    """Ray's ``max_direct_call_object_size`` for a local instance: a call's argument or result up to this
    size travels inside the call instead of through the object store. Ray's default is 100 KB, which a shard
    batch passes at ~200 events; a 200 KB batch and its 400 KB result then cost ~4.1 ms of CPU per call over
    every process (1.6 of it the raylet's), against ~1.9 ms inline; from ~1 MB on, inline costs more (a
    1 MB batch and 2 MB result: 5.7 ms through the store, 6.5 inline). 0 keeps Ray's default. A joined
    cluster keeps its own: set ``RAY_max_direct_call_object_size`` on its nodes (the KubeRay files do)."""


class MonitoringSettings(_Section):
    """The driver's Prometheus endpoint, the stall watchdog and log output."""

    metrics_enabled: bool = True
    # Loopback by default: /metrics, /healthz and /status are unauthenticated. In Kubernetes the pod
    # address (0.0.0.0, with a NetworkPolicy) lets Prometheus scrape it: cluster/deploy/kuberay/params.env.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] = 9464
    """0 picks a free port (tests); the bound port is logged and shown by ``clickcash status``"""
    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    stall_after_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """a partition or shard with work and no progress for this long is reported stalled"""
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class LedgerSettings(_Section):
    """The campaign ledger (``clickcash.cluster.ledger``): per-campaign totals, ``kafka.campaigns_topic``."""

    enabled: bool = True
    """``clickcash run`` starts the ledger actor beside the routers (off: no ledger, no snapshots)"""
    num_cpus: Annotated[float, Field(ge=0, le=64)] = 0.0
    """Ray CPUs reserved for the ledger actor; 0 by default: it folds a few dicts per committed output"""
    recent_ids_per_campaign: Annotated[int, Field(ge=100, le=1_000_000)] = 5_000
    """counted input event ids a campaign remembers to skip a re-sent input (about 40 bytes each in the
    snapshot); a re-send arrives within one producer retry, far inside this window"""
    commit_interval_ms: Annotated[int, Field(ge=0, le=60_000)] = 1_000
    """the ledger folds what it reads for this long before one transaction publishes the changed campaigns'
    snapshots with its offsets (0: one transaction per read batch); each snapshot re-encodes a campaign's
    open orders and recent ids, so this bounds that cost, and how far a published snapshot trails"""
    metrics_top_campaigns: Annotated[int, Field(ge=1, le=200)] = 10
    """campaigns exported by name to Prometheus (the largest by orders placed); the rest are ``other``"""


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

    erasure_command_keys: Annotated[tuple[TimerKey, ...], Field(min_length=1)] = (
        SecretStr(LOCAL_STACK_ERASURE_KEY),
    )
    """HMAC-SHA256 keys of the customer erasure commands ``clickcash forget`` writes to the input topic
    (env ``CLICKCASH_SECURITY__ERASURE_COMMAND_KEYS`` as a JSON list): the first signs, every one
    verifies (rotation as for the timer keys). Needed by the app (to verify) and by whoever runs
    ``clickcash forget`` (to sign), never by a producer of ordinary events. At least 16 characters each.
    The default is a published key for the local stack only; ``clickcash run`` against a Ray cluster
    refuses it."""

    def timer_mac(self) -> TimerMac:
        return TimerMac([k.get_secret_value().encode() for k in self.timer_command_keys])

    def erasure_mac(self) -> ErasureMac:
        return ErasureMac([k.get_secret_value().encode() for k in self.erasure_command_keys])

    def uses_local_stack_key(self) -> bool:
        return any(k.get_secret_value() == LOCAL_STACK_TIMER_KEY for k in self.timer_command_keys)

    def uses_local_stack_erasure_key(self) -> bool:
        return any(k.get_secret_value() == LOCAL_STACK_ERASURE_KEY for k in self.erasure_command_keys)


class AccessSettings(_Section):
    """Who is who: the Kafka user (SCRAM user name or certificate CN) and Redis ACL user of each role, from
    which ``clickcash acls`` computes least-privilege ACLs (see docs/security.md)."""

    principals: dict[str, str] = Field(
        default_factory=lambda: {
            "app": "clickcash-app",
            "loadgen": "clickcash-loadgen",
            "operator": "clickcash-operator",
            "orders": "clickcash-orders-consumer",
            "payments": "clickcash-payments-consumer",
            "dunning": "clickcash-dunning-consumer",
        }
    )
    """role -> principal name; roles: app, loadgen, operator, orders, payments, dunning"""

    @model_validator(mode="after")
    def _every_role_named(self) -> AccessSettings:
        roles = {"app", "loadgen", "operator", "orders", "payments", "dunning"}
        if set(self.principals) != roles:
            raise ValueError(f"principals must name exactly the roles {sorted(roles)}")
        return self


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
    access: AccessSettings = AccessSettings()
    ledger: LedgerSettings = LedgerSettings()
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
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if SECRETS_DIR_ENV in os.environ:
            sources.append(_SecretsDirSource(settings_cls, Path(os.environ[SECRETS_DIR_ENV])))
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file))
        return tuple(sources)


class _SecretsDirSource(PydanticBaseSettingsSource):
    """Settings from a directory of files, each named like the setting's environment variable (e.g.
    ``CLICKCASH_KAFKA__SASL_PASSWORD``) and holding its value: a Kubernetes Secret mounted as a volume,
    so secrets reach the process through neither its environment nor its command line."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path) -> None:
        super().__init__(settings_cls)
        self._directory = directory

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole directory at once

    def __call__(self) -> dict[str, Any]:
        if not self._directory.is_dir():
            raise ConfigError(f"{SECRETS_DIR_ENV}={self._directory} is not a directory")
        out: dict[str, Any] = {}
        for path in sorted(self._directory.iterdir()):
            parts = path.name.upper().removeprefix(ENV_PREFIX).lower().split("__")
            if not path.name.upper().startswith(ENV_PREFIX) or not path.is_file() or len(parts) != 2:
                continue  # Kubernetes' own ..data links and unrelated files
            out.setdefault(parts[0], {})[parts[1]] = path.read_text().strip()
        return out


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
    out[SECRETS_DIR_ENV] = "(a directory of secret files named like these variables)"
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
