"""Security settings beyond tests/agents/test_topics.py (which checks that SASL PLAIN/SCRAM and
a TLS CA reach kafka-python and Faust): secrets from ``_FILE`` variables, mutual TLS files,
secrets never taken from the policy, and never in ``repr``, logs or error messages."""

from __future__ import annotations

import logging

import pytest
import yaml

from agents.topics import (
    consumer_config,
    faust_client_options,
    faust_credentials,
    kafka_client_config,
    producer_config,
)
from pipeline.errors import ConfigError, PolicyError
from pipeline.policy.loader import default_policy_path, parse_policy
from pipeline.settings import Settings, load_settings

SECRET = "pa55-Very-Secret-7731"
KEY = "k3y-material-not-to-be-logged-9917"


@pytest.fixture
def env(monkeypatch):
    for var in ("PRIVACY_PIPELINE_SASL_PASSWORD", "PRIVACY_PIPELINE_PSEUDONYM_KEY",
                "PRIVACY_PIPELINE_MASTER_KEY", "PRIVACY_PIPELINE_SECRET_HASH_KEY", "KAFKA_BROKER"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var + "_FILE", raising=False)
    monkeypatch.setenv("PRIVACY_PIPELINE_KAFKA_BROKER", "b1:9093")
    return monkeypatch


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_password_from_a_file_reaches_kafka_python_and_faust(env, tmp_path, mechanism):
    f = tmp_path / "kafka-password"
    f.write_text(SECRET + "\n")
    env.setenv("PRIVACY_PIPELINE_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("PRIVACY_PIPELINE_SASL_MECHANISM", mechanism)
    env.setenv("PRIVACY_PIPELINE_SASL_USERNAME", "privacy-pipeline")
    env.setenv("PRIVACY_PIPELINE_SASL_PASSWORD_FILE", str(f))
    s = load_settings()
    assert s.sasl_password.get_secret_value() == SECRET  # trailing newline stripped
    for conf in (producer_config(s), consumer_config(s)):
        assert conf["sasl_plain_password"] == SECRET and conf["sasl_mechanism"] == mechanism
    creds = faust_credentials(s)
    assert creds.password == SECRET and creds.mechanism.value == mechanism
    assert creds.protocol.value == "SASL_SSL"
    assert faust_client_options(s)["broker_credentials"] is creds or \
        faust_client_options(s)["broker_credentials"].password == SECRET


def test_keys_from_files(env, tmp_path):
    for name in ("PSEUDONYM_KEY", "MASTER_KEY", "SECRET_HASH_KEY"):
        f = tmp_path / name.lower()
        f.write_text(f"{KEY}-{name}")
        env.setenv(f"PRIVACY_PIPELINE_{name}_FILE", str(f))
    s = load_settings()
    assert s.pseudonym_key.get_secret_value() == f"{KEY}-PSEUDONYM_KEY"
    assert s.master_key.get_secret_value() == f"{KEY}-MASTER_KEY"
    assert s.secret_hash_key.get_secret_value() == f"{KEY}-SECRET_HASH_KEY"
    text = repr(s) + str(s) + str(s.model_dump())
    assert KEY not in text


def test_environment_value_wins_over_the_file(env, tmp_path):
    f = tmp_path / "pw"
    f.write_text("from-file")
    env.setenv("PRIVACY_PIPELINE_SASL_PASSWORD", "from-env")
    env.setenv("PRIVACY_PIPELINE_SASL_PASSWORD_FILE", str(f))
    assert load_settings().sasl_password.get_secret_value() == "from-env"


def test_unreadable_secret_file_names_the_variable_not_a_value(env, tmp_path):
    env.setenv("PRIVACY_PIPELINE_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "PRIVACY_PIPELINE_SASL_PASSWORD_FILE" in str(err.value)


def test_mutual_tls_files_reach_kafka_python_and_faust(tmp_path):
    from tests.agents.test_topics import _self_signed_ca

    ca = tmp_path / "ca.pem"
    ca.write_text(_self_signed_ca(tmp_path))
    cert, key = _client_cert(tmp_path)
    s = Settings(kafka_broker="b1:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                 sasl_username="u", sasl_password=SECRET, ssl_cafile=ca, ssl_certfile=cert, ssl_keyfile=key)
    conf = kafka_client_config(s)
    assert (conf["ssl_cafile"], conf["ssl_certfile"], conf["ssl_keyfile"]) == (str(ca), str(cert), str(key))
    creds = faust_credentials(s)
    assert creds.ssl_context is not None and creds.protocol.value == "SASL_SSL"


def _client_cert(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "privacy-pipeline")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(2).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(k, hashes.SHA256()))
    c, kf = tmp_path / "client.pem", tmp_path / "client.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kf.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return c, kf


@pytest.mark.parametrize("key", ["sasl_password", "pseudonym_key", "master_key", "kafka"])
def test_the_policy_cannot_carry_secrets(key):
    doc = yaml.safe_load(default_policy_path().read_text())
    doc[key] = {"password": SECRET} if key == "kafka" else SECRET
    with pytest.raises(PolicyError) as err:
        parse_policy(yaml.safe_dump(doc), "p.yaml")
    assert SECRET not in str(err.value), "a policy error quoted the secret value"


def test_secrets_never_logged_or_in_errors(caplog):
    s = Settings(kafka_broker="b1:9093", security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                 sasl_username="u", sasl_password=SECRET, pseudonym_key=KEY, master_key=KEY)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("privacy_pipeline").debug("settings: %r", s)
        logging.getLogger("privacy_pipeline").debug("settings: %s", s)
        producer_config(s)
        faust_client_options(s)
        # a SASL protocol without the password fails naming the variable, not a value
        with pytest.raises(ConfigError) as err:
            kafka_client_config(s.model_copy(update={"sasl_password": None}))
        # an invalid setting: the message names the variable, never another setting's secret
        with pytest.raises(ConfigError) as err2:
            load_settings(sasl_password=SECRET, web_port=-1)
    texts = [caplog.text, repr(s), str(s), str(err.value), str(err2.value)]
    assert not any(SECRET in t or KEY in t for t in texts)
    assert "PRIVACY_PIPELINE_WEB_PORT" in str(err2.value)


def test_kafka_client_debug_logs_are_capped():
    """The Kafka clients log whole requests (SASL handshakes, record values) at DEBUG: the
    worker and the ops commands drop those records (pipeline.logsafety)."""
    from pipeline.logsafety import cap_text_logging_libraries

    cap_text_logging_libraries()
    for name in ("kafka.net.connection", "kafka.producer.kafka", "aiokafka.conn", "aiokafka.producer.producer"):
        rec = logging.LogRecord(name, logging.DEBUG, __file__, 1, "Request 1: %s", (SECRET,), None)
        assert not logging.getLogger(name).filter(rec), name
