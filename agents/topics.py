"""Kafka client configuration and topic management, in one place.

* ``kafka_client_config`` / ``producer_config`` / ``consumer_config`` / ``admin_config``:
  kafka-python keyword arguments built from :class:`~pipeline.settings.Settings`, with the
  security settings (SASL PLAIN/SCRAM, TLS) applied the same way for every client.
* ``faust_client_options``: the same settings as Faust ``App`` options (credentials, producer
  and consumer tuning), so the worker and the helper clients cannot disagree.
* ``ensure_topics`` creates missing topics from ``processor.topic_specs()`` (partitions,
  ``retention.ms``, ``cleanup.policy``) and aligns the configs of existing ones; ``describe``
  reports the effective topic settings next to what the policy asks for.

Secrets are read from ``SecretStr`` only when building a client; they are never logged.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.errors import ConfigError, PipelineError
from pipeline.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "TopicStatus",
    "TopicsError",
    "admin_config",
    "consumer_config",
    "describe",
    "ensure_topics",
    "faust_client_options",
    "kafka_client_config",
    "producer_config",
    "ssl_context",
    "topic_names",
]

CLIENT_ID = "privacy-pipeline"


class TopicsError(PipelineError):
    """Topic creation or configuration failed on the cluster (names the topic)."""


class TopicSpecLike(Protocol):
    name: str
    partitions: int
    config: dict[str, str]


def topic_names(settings: Settings):
    """Full topic names (``pipeline.topics.TopicNames`` with the settings' prefix applied)."""
    names = getattr(settings, "topic_names", None)
    if names is not None:
        return names
    from pipeline.topics import TopicNames

    return TopicNames().prefixed(settings.topic_prefix)


# --------------------------------------------------------------------------------------------
# Client configuration
# --------------------------------------------------------------------------------------------


def _bootstrap(settings: Settings, bootstrap: str | None = None) -> list[str]:
    servers = bootstrap or settings.kafka_broker
    if not servers:
        raise ConfigError(
            "no Kafka broker configured: set PRIVACY_PIPELINE_KAFKA_BROKER (or KAFKA_BROKER) "
            "to host:port[,host:port], or use `privacy-pipeline run` without --broker for an "
            "embedded broker"
        )
    return [s.strip() for s in servers.replace("kafka://", "").split(",") if s.strip()]


def _check_security(settings: Settings) -> None:
    proto = settings.security_protocol
    if proto.startswith("SASL_"):
        if not settings.sasl_mechanism:
            raise ConfigError(
                f"PRIVACY_PIPELINE_SECURITY_PROTOCOL={proto} needs PRIVACY_PIPELINE_SASL_MECHANISM "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )
        if not settings.sasl_username or settings.sasl_password is None:
            raise ConfigError(
                f"PRIVACY_PIPELINE_SECURITY_PROTOCOL={proto} needs PRIVACY_PIPELINE_SASL_USERNAME "
                "and PRIVACY_PIPELINE_SASL_PASSWORD (or PRIVACY_PIPELINE_SASL_PASSWORD_FILE)"
            )
    elif settings.sasl_mechanism and proto in ("PLAINTEXT", "SSL"):
        log.warning(
            "PRIVACY_PIPELINE_SASL_MECHANISM is set but the security protocol is %s: "
            "SASL is not used", proto,
        )


def kafka_client_config(settings: Settings, *, bootstrap: str | None = None) -> dict[str, Any]:
    """kafka-python keyword arguments common to producer, consumer and admin clients."""
    _check_security(settings)
    conf: dict[str, Any] = {
        "bootstrap_servers": _bootstrap(settings, bootstrap),
        "client_id": CLIENT_ID,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.startswith("SASL_"):
        conf["sasl_mechanism"] = settings.sasl_mechanism
        conf["sasl_plain_username"] = settings.sasl_username
        conf["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_cafile:
            conf["ssl_cafile"] = str(settings.ssl_cafile)
        if settings.ssl_certfile:
            conf["ssl_certfile"] = str(settings.ssl_certfile)
        if settings.ssl_keyfile:
            conf["ssl_keyfile"] = str(settings.ssl_keyfile)
    return conf


def _acks(settings: Settings) -> int | str:
    return "all" if settings.producer_acks in ("all", "-1") else int(settings.producer_acks)


def producer_config(settings: Settings, *, bootstrap: str | None = None) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` keyword arguments."""
    conf = kafka_client_config(settings, bootstrap=bootstrap)
    conf.update(
        acks=_acks(settings),
        enable_idempotence=settings.producer_idempotence,
        max_request_size=settings.producer_max_request_size,
        linger_ms=settings.producer_linger_ms,
    )
    return conf


def consumer_config(settings: Settings, *, bootstrap: str | None = None, **extra: Any) -> dict[str, Any]:
    """kafka-python ``KafkaConsumer`` keyword arguments (no group: callers assign partitions)."""
    conf = kafka_client_config(settings, bootstrap=bootstrap)
    conf.update(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
    )
    conf.update(extra)
    return conf


def admin_config(settings: Settings, *, bootstrap: str | None = None) -> dict[str, Any]:
    """kafka-python ``KafkaAdminClient`` keyword arguments."""
    return kafka_client_config(settings, bootstrap=bootstrap)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context from the ``ssl_*`` settings (``None`` without TLS)."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        )
        if settings.ssl_certfile:
            ctx.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files named by PRIVACY_PIPELINE_SSL_*: {exc}") from None
    return ctx


def faust_credentials(settings: Settings):
    """Faust ``broker_credentials`` for the settings (``None`` for PLAINTEXT)."""
    _check_security(settings)
    proto = settings.security_protocol
    if proto == "PLAINTEXT":
        return None
    import faust

    ctx = ssl_context(settings)
    if proto == "SSL":
        return faust.SSLCredentials(ctx)
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        ssl_context=ctx,  # SASL_SSL when set, SASL_PLAINTEXT otherwise
        mechanism=settings.sasl_mechanism,
    )


def faust_client_options(settings: Settings, *, bootstrap: str | None = None) -> dict[str, Any]:
    """Faust ``App`` keyword arguments for the broker connection, producer and consumer."""
    servers = _bootstrap(settings, bootstrap)
    return {
        "broker": ";".join(f"kafka://{s}" for s in servers),
        "broker_client_id": CLIENT_ID,
        "broker_credentials": faust_credentials(settings),
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "producer_acks": -1 if settings.producer_acks in ("all", "-1") else int(settings.producer_acks),
        "producer_max_request_size": settings.producer_max_request_size,
        "producer_linger": settings.producer_linger_ms / 1000.0,
        "processing_guarantee": settings.processing_guarantee,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
    }


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------


@dataclass
class TopicStatus:
    """One topic: what the policy asks for next to what the cluster has."""

    name: str
    partitions: int
    config: dict[str, str]
    exists: bool = False
    actual_partitions: int | None = None
    effective: dict[str, str] = field(default_factory=dict)
    action: str = "ok"  # ok | created | altered | differs

    @property
    def differences(self) -> dict[str, tuple[str, str | None]]:
        """``{key: (wanted, effective)}`` for every policy key the cluster disagrees on."""
        if not self.exists:
            return {}
        return {k: (v, self.effective.get(k)) for k, v in self.config.items()
                if self.effective.get(k) != v}


def _admin(settings: Settings, bootstrap: str | None = None):
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(**admin_config(settings, bootstrap=bootstrap))
    except KafkaError as exc:
        raise TopicsError(
            f"cannot reach the Kafka cluster at {','.join(_bootstrap(settings, bootstrap))}: "
            f"{type(exc).__name__}"
        ) from None


def _effective_configs(admin, names: Sequence[str]) -> dict[str, dict[str, str]]:
    from kafka.admin import ConfigResource, ConfigResourceType

    if not names:
        return {}
    # kafka-python 3 returns nothing unless config_filter='all' (BROKER.md).
    raw = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in names], config_filter="all"
    )
    out: dict[str, dict[str, str]] = {}
    if isinstance(raw, dict):
        for name, entries in (raw.get("topic") or raw.get("TOPIC") or {}).items():
            out[name] = {k: (e.get("value") if isinstance(e, dict) else e) for k, e in entries.items()}
    return out


def _partition_counts(admin, names: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for meta in admin.describe_topics(list(names)):
        if meta.get("error_code", 0) == 0:
            counts[meta.get("name") or meta.get("topic")] = len(meta.get("partitions") or [])
    return counts


def _status(admin, specs: Sequence[TopicSpecLike]) -> list[TopicStatus]:
    existing = set(admin.list_topics())
    present = [s.name for s in specs if s.name in existing]
    counts = _partition_counts(admin, present) if present else {}
    effective = _effective_configs(admin, present)
    return [
        TopicStatus(
            name=s.name, partitions=s.partitions, config=dict(s.config),
            exists=s.name in existing, actual_partitions=counts.get(s.name),
            effective=effective.get(s.name, {}),
        )
        for s in specs
    ]


def describe(settings: Settings, specs: Iterable[TopicSpecLike], *, bootstrap: str | None = None,
             admin=None) -> list[TopicStatus]:
    """Effective topic settings on the cluster next to the policy's (read-only)."""
    own = admin is None
    admin = admin or _admin(settings, bootstrap)
    try:
        statuses = _status(admin, list(specs))
        for st in statuses:
            st.action = "missing" if not st.exists else ("differs" if st.differences else "ok")
        return statuses
    finally:
        if own:
            admin.close()


def ensure_topics(settings: Settings, specs: Iterable[TopicSpecLike], *, bootstrap: str | None = None,
                  admin=None, alter: bool = True, timeout_s: float = 30.0) -> list[TopicStatus]:
    """Create missing topics and align the configs of existing ones; idempotent.

    Partition counts of existing topics are never changed (that reshuffles keys; and Tansu has
    no CreatePartitions): a mismatch is logged. A config the cluster refuses to alter is logged
    and reported as ``differs``; a topic that cannot be created raises :class:`TopicsError`.
    Returns one :class:`TopicStatus` per spec.
    """
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    specs = list(specs)
    own = admin is None
    admin = admin or _admin(settings, bootstrap)
    try:
        statuses = _status(admin, specs)
        missing = [st for st in statuses if not st.exists]
        if missing:
            new = [NewTopic(st.name, st.partitions, settings.replication_factor,
                            topic_configs=dict(st.config)) for st in missing]
            try:
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000), raise_errors=False)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another worker
            except KafkaError as exc:
                raise TopicsError(
                    f"creating topics {', '.join(st.name for st in missing)} failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            _wait_for_topics(admin, [st.name for st in missing], timeout_s)
            for st in missing:
                st.action = "created"
        for st in statuses:
            if not st.exists:
                continue
            if st.actual_partitions is not None and st.actual_partitions != st.partitions:
                log.warning("topic %s has %d partitions, the policy asks for %d: left as is",
                            st.name, st.actual_partitions, st.partitions)
            diff = st.differences
            if diff and alter:
                try:
                    admin.alter_configs([ConfigResource(
                        ConfigResourceType.TOPIC, st.name, configs=dict(st.config))])
                except KafkaError as exc:  # e.g. no AlterConfigs ACL: run on, loudly
                    log.warning("topic %s: could not align %s with the policy: %s", st.name,
                                ", ".join(diff), type(exc).__name__)
                    st.action = "differs"
                    continue
                log.info("topic %s: config aligned with the policy (%s)", st.name, ", ".join(diff))
                st.action = "altered"
            elif diff:
                st.action = "differs"
        # Re-read the effective settings so callers see the cluster's view.
        fresh = {st.name: st for st in _status(admin, specs)}
        for st in statuses:
            st.exists = fresh[st.name].exists
            st.actual_partitions = fresh[st.name].actual_partitions
            st.effective = fresh[st.name].effective
        return statuses
    finally:
        if own:
            admin.close()


def _wait_for_topics(admin, names: Sequence[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while pending and time.monotonic() < deadline:
        pending -= set(admin.list_topics())
        if pending:
            time.sleep(0.1)
    if pending:
        raise TopicsError(f"topics not visible after {timeout_s:.0f} s: {', '.join(sorted(pending))}")
