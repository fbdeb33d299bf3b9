"""Client configuration from settings (security reaches every client) and topic management."""

from __future__ import annotations

import ssl
import uuid

import pytest

from agents.topics import (
    admin_config,
    consumer_config,
    describe,
    ensure_topics,
    faust_client_options,
    faust_credentials,
    kafka_client_config,
    producer_config,
    topic_names,
)
from pipeline.errors import ConfigError
from pipeline.records import TopicSpec
from pipeline.settings import Settings


def _settings(**kw) -> Settings:
    kw.setdefault("kafka_broker", "kafka://b1:9092,b2:9093")
    return Settings(**kw)


# -- client configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol, mechanism", [
    ("SASL_PLAINTEXT", "PLAIN"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
])
def test_sasl_settings_reach_every_kafka_python_client(protocol, mechanism):
    s = _settings(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="svc",
                  sasl_password="s3cret")
    for conf in (kafka_client_config(s), producer_config(s), consumer_config(s), admin_config(s)):
        assert conf["bootstrap_servers"] == ["b1:9092", "b2:9093"]
        assert conf["security_protocol"] == protocol
        assert conf["sasl_mechanism"] == mechanism
        assert conf["sasl_plain_username"] == "svc"
        assert conf["sasl_plain_password"] == "s3cret"


@pytest.mark.parametrize("protocol, mechanism, expected_protocol", [
    ("SASL_PLAINTEXT", "PLAIN", "SASL_PLAINTEXT"),
    ("SASL_PLAINTEXT", "SCRAM-SHA-256", "SASL_PLAINTEXT"),
    ("SASL_SSL", "SCRAM-SHA-512", "SASL_SSL"),
])
def test_sasl_settings_reach_faust(protocol, mechanism, expected_protocol):
    s = _settings(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="svc",
                  sasl_password="s3cret")
    creds = faust_credentials(s)
    assert creds.username == "svc" and creds.password == "s3cret"
    assert creds.mechanism.value == mechanism
    assert creds.protocol.value == expected_protocol
    opts = faust_client_options(s)
    assert opts["broker_credentials"] is not None
    assert opts["broker"] == "kafka://b1:9092;kafka://b2:9093"
    # The aiokafka arguments Faust derives from the credentials carry them too.
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == expected_protocol
    assert auth["sasl_plain_username"] == "svc" and auth["sasl_plain_password"] == "s3cret"


def test_tls_files_reach_kafka_python_and_faust(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(_self_signed_ca(tmp_path))
    s = _settings(security_protocol="SSL", ssl_cafile=ca)
    conf = producer_config(s)
    assert conf["security_protocol"] == "SSL" and conf["ssl_cafile"] == str(ca)
    creds = faust_credentials(s)
    assert creds.protocol.value == "SSL"
    assert isinstance(creds.context, ssl.SSLContext)


def _self_signed_ca(tmp_path) -> str:
    """A throwaway self-signed certificate (PEM) made with `cryptography`."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_plaintext_has_no_credentials_and_no_secret_in_config():
    s = _settings()
    conf = kafka_client_config(s)
    assert conf["security_protocol"] == "PLAINTEXT"
    assert not any(k.startswith("sasl") for k in conf)
    assert faust_credentials(s) is None


@pytest.mark.parametrize("kw, match", [
    ({"security_protocol": "SASL_PLAINTEXT"}, "SASL_MECHANISM"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "SASL_USERNAME"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"}, "SASL_PASSWORD"),
])
def test_incomplete_sasl_settings_fail_naming_the_variable(kw, match):
    with pytest.raises(ConfigError, match=match):
        kafka_client_config(_settings(**kw))


def test_secret_password_is_not_in_settings_repr():
    s = _settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                  sasl_password="hunter2-very-secret")
    assert "hunter2-very-secret" not in repr(s)


@pytest.mark.parametrize("acks, kp, faust_acks", [("all", "all", -1), ("-1", "all", -1), ("1", 1, 1), ("0", 0, 0)])
def test_producer_tuning(acks, kp, faust_acks):
    s = _settings(producer_acks=acks, producer_max_request_size=2_000_000, producer_linger_ms=20,
                  session_timeout_s=7, heartbeat_interval_s=1)
    conf = producer_config(s)
    assert conf["acks"] == kp
    assert conf["enable_idempotence"] is False  # Tansu has no idempotent producer (BROKER.md)
    assert conf["max_request_size"] == 2_000_000 and conf["linger_ms"] == 20
    opts = faust_client_options(s)
    assert opts["producer_acks"] == faust_acks
    assert opts["producer_max_request_size"] == 2_000_000
    assert opts["producer_linger"] == pytest.approx(0.02)
    assert opts["broker_session_timeout"] == 7 and opts["broker_heartbeat_interval"] == 1
    assert opts["processing_guarantee"] == "at_least_once"


def test_no_broker_is_a_config_error_naming_the_variable():
    with pytest.raises(ConfigError, match="PRIVACY_PIPELINE_KAFKA_BROKER"):
        kafka_client_config(Settings(kafka_broker=None))


def test_topic_names_apply_the_prefix():
    names = topic_names(_settings(topic_prefix="acme."))
    assert names.messages == "acme.cpaas.messages.v1"
    assert names.deadletter == "acme.privacy.deadletter.v1"


# -- topics on a real broker ------------------------------------------------------------------


@pytest.mark.broker
def test_ensure_topics_creates_aligns_and_is_idempotent(broker):
    s = _settings(kafka_broker=broker.bootstrap)
    p = f"t{uuid.uuid4().hex[:8]}."
    specs = [
        TopicSpec(p + "retained", 3, {"retention.ms": "86400000", "cleanup.policy": "delete"}),
        TopicSpec(p + "compacted", 2, {"retention.ms": "-1", "cleanup.policy": "compact"}),
        TopicSpec(p + "plain", 1, {}),
    ]
    first = ensure_topics(s, specs)
    assert [st.action for st in first] == ["created"] * 3
    assert [st.actual_partitions for st in first] == [3, 2, 1]
    assert first[0].effective["retention.ms"] == "86400000"
    assert first[1].effective["cleanup.policy"] == "compact"

    again = ensure_topics(s, specs)
    assert [st.action for st in again] == ["ok"] * 3

    changed = [TopicSpec(p + "retained", 3, {"retention.ms": "3600000", "cleanup.policy": "delete"})]
    before = describe(s, changed)
    assert before[0].action == "differs"
    assert before[0].differences == {"retention.ms": ("3600000", "86400000")}
    after = ensure_topics(s, changed)
    assert after[0].action == "altered"
    assert after[0].effective["retention.ms"] == "3600000"
    assert describe(s, changed)[0].action == "ok"


@pytest.mark.broker
def test_describe_reports_missing_topics(broker):
    s = _settings(kafka_broker=broker.bootstrap)
    st = describe(s, [TopicSpec(f"absent-{uuid.uuid4().hex[:8]}", 1, {"retention.ms": "1000"})])[0]
    assert st.action == "missing" and not st.exists and st.differences == {}
