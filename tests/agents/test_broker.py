"""The embedded broker launcher (agents/broker.py)."""

from __future__ import annotations

import socket

import pytest

from agents.broker import (
    BrokerError,
    BrokerNotInstalledError,
    EmbeddedBroker,
    free_port,
    kafka_ready,
)


def test_kafka_ready_is_false_on_a_closed_port():
    assert kafka_ready("127.0.0.1", free_port(), timeout=0.2) is False


def test_kafka_ready_is_false_for_a_server_that_is_not_kafka():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        # Accepts TCP but never answers: not ready.
        assert kafka_ready("127.0.0.1", port, timeout=0.3) is False


def test_missing_binary_is_a_clear_config_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    with pytest.raises(BrokerNotInstalledError, match="Tansu"):
        EmbeddedBroker(log_dir=tmp_path).start()


def test_broker_that_exits_at_start_names_its_log(tmp_path):
    b = EmbeddedBroker(log_dir=tmp_path, binary="/bin/false", start_timeout=5)
    with pytest.raises(BrokerError, match=str(b.log_path)):
        b.start()
    assert not b.running


@pytest.mark.broker
def test_start_answers_metadata_keeps_log_and_stops(tmp_path):
    with EmbeddedBroker(log_dir=tmp_path) as b:
        assert b.running
        assert kafka_ready(b.host, b.port)
        assert b.bootstrap == f"127.0.0.1:{b.port}"
        assert b.url == f"kafka://127.0.0.1:{b.port}"
        pid = b.pid
        assert pid
    assert not b.running
    assert not kafka_ready("127.0.0.1", b.port, timeout=0.3)
    assert b.log_path.is_file()
    assert "tansu" in b.log_path.read_text().lower()
    b.stop()  # idempotent


@pytest.mark.broker
def test_session_broker_fixture_serves_kafka(broker):
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()


@pytest.mark.broker
def test_broker_dies_with_a_killed_parent(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys, time; from agents.broker import EmbeddedBroker; "
            f"b = EmbeddedBroker(log_dir={str(tmp_path)!r}).start(); print(b.port, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        port = int(parent.stdout.readline())
        assert kafka_ready("127.0.0.1", port)
        parent.send_signal(signal.SIGKILL)  # no cleanup runs in the parent
        parent.wait(10)
        deadline = time.monotonic() + 10
        while kafka_ready("127.0.0.1", port, timeout=0.3) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not kafka_ready("127.0.0.1", port, timeout=0.3)
    finally:
        parent.kill()
        parent.wait(10)
