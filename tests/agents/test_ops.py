"""Operations commands (issue 12): ``replay`` (dead letters back to their input topic with an
attempt counter) and ``backfill`` (history re-classified under a new policy version)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from agents.cli import build_parser, main
from agents.ops import (
    BACKFILL_HEADER,
    REPLAY_ATTEMPT_HEADER,
    backfill,
    backfill_group,
    decide_replay,
    parse_timestamp,
    replay_group,
)
from agents.runner import OutputReader, _topic_specs
from agents.topics import ensure_topics, producer_config, topic_names
from pipeline.codec import encode
from pipeline.deadletter import build_deadletter
from pipeline.errors import ConfigError
from pipeline.policy import load_policy
from pipeline.processing import Processor
from pipeline.records import SourceRecord
from pipeline.settings import Settings

INPUTS = {"cpaas.messages.v1", "cpaas.calls.v1", "cpaas.accounts.v1"}


# -- pure parts -------------------------------------------------------------------------------


def test_parse_timestamp_forms():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    ms = int(now.timestamp() * 1000)
    assert parse_timestamp("2026-11-30T12:00:00Z") == ms
    assert parse_timestamp("2026-11-30T13:00:00+01:00") == ms
    assert parse_timestamp("2026-11-30T12:00:00") == ms  # no zone: UTC
    assert parse_timestamp("2026-11-30") == ms - 12 * 3600 * 1000
    assert parse_timestamp(str(ms // 1000)) == ms
    assert parse_timestamp(str(ms)) == ms
    assert parse_timestamp("2h", now=now) == ms - 2 * 3600 * 1000
    assert parse_timestamp("7d", now=now) == ms - 7 * 86400 * 1000
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_timestamp("yesterday-ish")


def _dl(kind="invalid_json", raw=b"not-json{", topic="cpaas.messages.v1", key=b"k1", max_bytes=None):
    return encode(build_deadletter(SourceRecord(topic, 1, 42, key, raw, 1_700_000_000_000), kind,
                                   "at byte 8", max_bytes=max_bytes))


def test_decide_replay():
    d = decide_replay(_dl(), (), input_topics=INPUTS, max_attempts=3)
    assert (d.action, d.topic, d.key, d.value, d.attempt) == ("replay", "cpaas.messages.v1", b"k1", b"not-json{", 1)
    assert d.source == ("cpaas.messages.v1", 1, 42)
    d = decide_replay(_dl(key=None, raw=b""), ((REPLAY_ATTEMPT_HEADER, b"2"),), input_topics=INPUTS, max_attempts=3)
    assert (d.action, d.key, d.value, d.attempt) == ("replay", None, b"", 3)
    over = decide_replay(_dl(), ((REPLAY_ATTEMPT_HEADER, b"3"),), input_topics=INPUTS, max_attempts=3)
    assert over.action == "max_attempts" and "limit 3" in over.detail
    assert decide_replay(_dl(), ((REPLAY_ATTEMPT_HEADER, b"x"),), input_topics=INPUTS,
                         max_attempts=3).action == "max_attempts"
    omitted = decide_replay(_dl(kind="output_too_large", raw=b"y" * 5000, max_bytes=5000), (),
                            input_topics=INPUTS, max_attempts=3)
    assert omitted.action == "raw_omitted" and "5000 bytes" in omitted.detail
    assert decide_replay(_dl(topic="privacy.anonymise.v1"), (), input_topics=INPUTS,
                         max_attempts=3).action == "not_input_topic"
    assert decide_replay(b"{nope", (), input_topics=INPUTS, max_attempts=3).action == "unreadable"
    assert decide_replay(_dl(), (), input_topics=INPUTS, max_attempts=3,
                         reasons=["empty"]).action == "filtered"


def test_worker_carries_the_attempt_header_into_a_new_dead_letter():
    settings = Settings()
    proc = Processor(load_policy(None), settings, None)
    rec = SourceRecord("cpaas.messages.v1", 0, 5, b"k", b"still-not-json{", 1,
                       headers=((REPLAY_ATTEMPT_HEADER, b"2"), ("replay-deadletter", b"x/0/1"), ("other", b"v")))
    out = proc.process_batch([rec])[0].outputs[0]
    headers = dict(out.headers)
    assert headers[REPLAY_ATTEMPT_HEADER] == b"2" and headers["deadletter-reason"] == b"invalid_json"
    assert "other" not in headers and "replay-deadletter" not in headers
    plain = proc.process_batch([SourceRecord("cpaas.messages.v1", 0, 6, b"k", b"{", 1)])[0].outputs[0]
    assert REPLAY_ATTEMPT_HEADER not in dict(plain.headers)


def test_group_names_match_the_acls():
    s = Settings()
    assert replay_group(s) == "privacy-pipeline-replay"
    assert backfill_group(s, "2026.12.01-1").startswith("privacy-pipeline-backfill")


@pytest.mark.parametrize("argv, message", [
    (["replay", "--max-attempts", "0"], "--max-attempts must be at least 1"),
    (["replay"], "no broker"),
    (["backfill", "--from", "2h"], "no broker"),
    (["backfill", "--from", "2h", "--policy", "/nonexistent.yaml"], "no such policy file"),
])
def test_usage_errors_say_what_to_do(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("PRIVACY_PIPELINE_KAFKA_BROKER", raising=False)
    monkeypatch.delenv("KAFKA_BROKER", raising=False)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_timestamp_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("PRIVACY_PIPELINE_KAFKA_BROKER", "127.0.0.1:1")
    assert main(["backfill", "--from", "last tuesday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_help_lists_the_ops_commands():
    text = build_parser().format_help()
    assert "replay" in text and "backfill" in text


# -- replay on the broker ---------------------------------------------------------------------


def _setup_topics(broker, tag: str) -> Settings:
    settings = Settings(kafka_broker=broker.bootstrap, topic_prefix=f"ops{tag}.", app_id=f"privacy-pipeline-{tag}",
                        partitions=1, detector_processes=1)
    ensure_topics(settings, _topic_specs(settings, Processor))
    return settings


def _read_all(settings, topics, expect: int = 0, timeout: float = 20.0):
    reader = OutputReader(settings, topics, from_beginning=True, keep=topics)
    try:
        deadline = time.monotonic() + timeout
        reader.poll(1000)
        while sum(len(v) for v in reader.records.values()) < expect and time.monotonic() < deadline:
            reader.poll(500)
        reader.poll(300)
        return reader.records
    finally:
        reader.close()


@pytest.mark.broker
def test_replay_end_to_end(broker, monkeypatch, capsys):
    tag = uuid.uuid4().hex[:8]
    settings = _setup_topics(broker, tag)
    n = topic_names(settings)
    from kafka import KafkaProducer

    prod = KafkaProducer(**producer_config(settings))
    dls = [
        (_dl(topic=n.messages, key=b"m1"), []),                                          # replayed, attempt 1
        (_dl(kind="invalid_utf8", topic=n.calls, key=None, raw=b'{"a":"\xff"}'),
         [(REPLAY_ATTEMPT_HEADER, b"1")]),                                               # replayed, attempt 2
        (_dl(topic=n.messages), [(REPLAY_ATTEMPT_HEADER, b"3")]),                        # over the limit
        (_dl(kind="output_too_large", topic=n.accounts, raw=b"z" * 9000, max_bytes=9000), []),  # raw omitted
        (_dl(kind="not_envelope", topic=n.anonymise), []),                               # not an input topic
        (b"garbage", []),                                                                # unreadable
    ]
    for value, headers in dls:
        prod.send(n.deadletter, value=value, headers=headers)
    prod.flush()
    prod.close()
    monkeypatch.setenv("PRIVACY_PIPELINE_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("PRIVACY_PIPELINE_APP_ID", settings.app_id)
    base = ["replay", "--broker", broker.bootstrap, "--idle", "1"]

    assert main(base + ["--dry-run"]) == 0
    out = capsys.readouterr()
    assert "would replay to" in out.out and "(dry run)" in out.out
    assert "raw bytes omitted" in out.err and "already replayed 3 time(s), limit 3" in out.err
    assert not any(_read_all(settings, [n.messages, n.calls, n.accounts], timeout=2).values())

    assert main(base + ["--reason", "invalid_utf8"]) == 0  # filtered: produces, keeps the position
    capsys.readouterr()
    assert main(base) == 0
    out = capsys.readouterr()
    assert "replayed to" in out.out
    recs = _read_all(settings, [n.messages, n.calls, n.accounts], expect=3)
    msgs, calls = recs[n.messages], recs[n.calls]
    assert [(r.key, r.value, r.headers[REPLAY_ATTEMPT_HEADER]) for r in msgs] == [(b"m1", b"not-json{", b"1")]
    assert [(r.key, r.value, r.headers[REPLAY_ATTEMPT_HEADER]) for r in calls] == \
        [(None, b'{"a":"\xff"}', b"2")] * 2  # once by the --reason run, once by the full run
    assert not recs[n.accounts]
    assert msgs[0].headers["replay-deadletter"].startswith(n.deadletter.encode() + b"/0/")

    assert main(base) == 0  # the group's committed offset: nothing left
    out = capsys.readouterr()
    assert "replayed to" not in out.out
    assert len(_read_all(settings, [n.messages, n.calls], expect=3)[n.calls]) == 2


# -- backfill on the broker -------------------------------------------------------------------


@pytest.mark.broker
def test_backfill_reclassifies_history_under_a_new_policy(broker, tmp_path, monkeypatch, capsys):
    import yaml

    tag = uuid.uuid4().hex[:8]
    settings = _setup_topics(broker, tag)
    n = topic_names(settings)
    from pipeline.policy.loader import default_policy_path

    policy = yaml.safe_load(default_policy_path().read_text())
    version = f"2099.01.01-{tag}"
    policy["version"] = version
    policy_path = tmp_path / "new-policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))

    now = int(time.time() * 1000)
    old_ts, new_ts = now - 3 * 3600_000, now - 600_000
    deleted_acct, live_acct = "AC" + "d" * 32, "AC" + "e" * 32

    def msg(i, acct):
        return json.dumps({"sid": f"SM{tag}{i:024d}", "account_sid": acct, "from": "+14155550100",
                           "to": "+14155550101", "body": f"backfill text {i}", "status": "sent"}).encode()

    from kafka import KafkaProducer

    prod = KafkaProducer(**producer_config(settings))
    for i in range(3):  # before --from: not re-classified
        prod.send(n.messages, key=live_acct.encode(), value=msg(i, live_acct), timestamp_ms=old_ts + i)
    for i in range(3, 9):
        acct = deleted_acct if i % 3 == 0 else live_acct
        prod.send(n.messages, key=acct.encode(), value=msg(i, acct), timestamp_ms=new_ts + i)
    prod.send(n.calls, value=b"not-json{", timestamp_ms=new_ts + 20)
    prod.send(n.deletions, key=deleted_acct.encode(), value=b'{"account_id": "x"}')
    prod.flush()
    prod.close()

    prefix = f"privacy-pipeline-backfill-{tag}."
    report = backfill(settings, from_ms=now - 3600_000, policy=policy_path, topic_prefix=prefix, idle_s=1.5)
    assert report.ok and report.policy_version == version
    assert report.group == f"{settings.app_id}-backfill-{version}"
    assert report.read == 7 and report.deleted_accounts == 1
    assert report.outcomes == {"classified": 6, "deadletter": 1}

    out_topics = sorted(report.produced)
    # the key topic is shared (shredding must reach the backfill's copies too); the rest is prefixed
    assert all(t.startswith(prefix) for t in out_topics if t != n.keys)
    assert report.produced[n.keys] == 1, "one new data key, for the live account"
    recs = _read_all(settings, out_topics, expect=sum(report.produced.values()))
    assert sum(len(v) for v in recs.values()) == sum(report.produced.values()) > 0
    for topic, rs in recs.items():
        if topic == n.keys:  # wrapped data keys: no envelope headers
            continue
        for r in rs:
            assert r.headers["privacy-policy"] == version.encode(), topic
            assert r.headers[BACKFILL_HEADER] == report.group.encode(), topic
    content = [json.loads(r.value) for r in recs[prefix + n.retention_content]]
    assert all("record_encrypted" in d and "record" not in d for d in content), "retained content is sealed"
    assert {d["policy_version"] for d in content} == {version}
    assert {d["source"]["offset"] for d in content} == {3, 4, 5, 6, 7, 8} - {3, 6}  # deleted account withheld
    assert len(recs[prefix + n.anonymised]) == 6, "anonymised in process"
    assert len(recs[prefix + n.deadletter]) == 1
    from kafka import KafkaConsumer

    from agents.topics import consumer_config

    c = KafkaConsumer(**consumer_config(settings))  # the prefixed anonymise topic is never created
    assert not c.partitions_for_topic(prefix + n.anonymise)
    c.close()

    # Same policy version again: the group resumes after what it did; the CLI prints the report.
    monkeypatch.setenv("PRIVACY_PIPELINE_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("PRIVACY_PIPELINE_APP_ID", settings.app_id)
    monkeypatch.setenv("PRIVACY_PIPELINE_DETECTOR_PROCESSES", "1")
    code = main(["backfill", "--broker", broker.bootstrap, "--from", "1h", "--policy", str(policy_path),
                 "--topic-prefix", prefix, "--idle", "1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    text = " ".join(out.out.split())
    assert f"policy version │ {version}" in text and "input records │ 0 │" in text


def test_dead_letter_base64_key_round_trip():
    raw = _dl(key=b"\x00\xffkey")
    doc = json.loads(raw)
    assert base64.b64decode(doc["source"]["key_base64"]) == b"\x00\xffkey"
    assert decide_replay(raw, (), input_topics=INPUTS, max_attempts=1).key == b"\x00\xffkey"
