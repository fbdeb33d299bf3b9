"""End to end on the embedded broker (issue 3): a real worker subprocess classifies real SMS
texts in Twilio-shaped events plus undecodable records and tombstones; every output topic is
read with manual partition assignment."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from agents.runner import (
    InputEvent,
    OutputReader,
    WorkerProcess,
    _topic_specs,
    parse_metrics,
    produce_events,
    sample_inputs,
)
from agents.topics import describe, topic_names
from pipeline.processing import Processor
from pipeline.settings import Settings

pytestmark = pytest.mark.broker

N_EVENTS = 600
N_BAD = 8
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def job(broker, shared_data, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(kafka_broker=broker.bootstrap, topic_prefix=f"it{tag}.", app_id=f"it-{tag}",
                        partitions=4, session_timeout_s=6, heartbeat_interval_s=1)
    names = topic_names(settings)
    events = sample_inputs(settings, N_EVENTS, seed=11, sms_path=shared_data / "sms_spam_collection.tsv",
                           bad=N_BAD)
    tomb_account = "AC" + "7" * 32
    mid = len(events) // 2
    events[mid:mid] = [
        InputEvent(names.messages, b"AC" + b"1" * 32, None),  # skipped, counted
        InputEvent(names.accounts, tomb_account.encode(), None, account_id=tomb_account,
                   deletes_account=True),  # deletion request
    ]
    workdir = tmp_path_factory.mktemp("worker")
    worker = WorkerProcess(broker.bootstrap, workdir=workdir, env={
        "PRIVACY_PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
        "PRIVACY_PIPELINE_APP_ID": settings.app_id,
        "PRIVACY_PIPELINE_SESSION_TIMEOUT_S": "6",
        "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": "1",
        "PRIVACY_PIPELINE_BATCH_SIZE": "64",
    }).start()
    reader = None
    try:
        worker.wait_ready(timeout=120)  # the worker creates the topics before it subscribes
        specs = _topic_specs(settings, Processor)
        inputs = set(names.input_families())
        out_topics = [s.name for s in specs if s.name not in inputs]
        reader = OutputReader(settings, out_topics, from_beginning=True, keep=out_topics)
        coords = produce_events(settings, events)
        import time

        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            reader.poll(500)
            if not reader.missing_inputs(events, coords) and not reader.missing_anonymised():
                break
            assert worker.alive(), f"worker died:\n{worker.log_tail()}"
        reader.poll(500)
        status, metrics = worker.get("/metrics")
        health, _ = worker.get("/healthz")
        yield {
            "settings": settings, "names": names, "events": events, "coords": coords,
            "reader": reader, "specs": specs, "metrics": (status, metrics.decode()),
            "health": health, "worker": worker, "tomb_account": tomb_account,
        }
    finally:
        if reader is not None:
            reader.close()
        code = worker.stop()
        print(f"worker exit code {code}; log {worker.log_path}")


def _doc(rec):
    return json.loads(rec.value)


def _ids(reader, topic):
    return reader.seen_ids[topic]


def _good(job):
    return [(c, e) for c, e in zip(job["coords"], job["events"]) if not e.bad and e.value is not None]


def test_everything_is_accounted_for(job):
    reader = job["reader"]
    missing = reader.missing_inputs(job["events"], job["coords"])
    assert not missing, f"{len(missing)} inputs never reached an output, e.g. {missing[:3]}"
    assert not reader.missing_anonymised()


def test_every_message_and_call_is_in_anonymise_or_deadletter(job):
    n, reader = job["names"], job["reader"]
    dead_sources = {(d["source"]["topic"], d["source"]["partition"], d["source"]["offset"])
                    for d in map(_doc, reader.records[n.deadletter])}
    anonymise_ids = _ids(reader, n.anonymise)
    checked = 0
    for coord, ev in zip(job["coords"], job["events"]):
        if ev.value is None:
            continue
        if ev.bad:
            assert coord in dead_sources, coord
        elif ev.topic in (n.messages, n.calls):
            assert ev.event_id in anonymise_ids or coord in dead_sources, ev.event_id
            checked += 1
    assert checked > N_EVENTS // 2


def test_account_events_reach_the_account_retention_or_deletion_topic(job):
    n, reader = job["names"], job["reader"]
    landed = _ids(reader, n.retention_account) | _ids(reader, n.deletions)
    for _, ev in _good(job):
        if ev.topic == n.accounts:
            assert ev.event_id in landed, ev.event_id


def test_every_event_is_retained_unless_its_account_was_deleted(job):
    n, reader = job["names"], job["reader"]
    deleted = {e.account_id for e in job["events"] if e.deletes_account}
    retained = set().union(*(_ids(reader, n.retention(c)) for c in ("content", "usage", "account")))
    missing = [ev.event_id for _, ev in _good(job)
               if ev.account_id not in deleted and ev.event_id not in retained]
    assert not missing, missing[:5]
    for cat in ("content", "usage", "account"):
        assert reader.counts[n.retention(cat)] > 0, cat


def test_carrier_topic_holds_no_account_field_and_no_secret(job):
    n, reader = job["names"], job["reader"]
    carrier = reader.records[n.carrier]
    assert carrier, "nothing reached the carrier topic"
    secrets = {json.loads(e.value)["auth_token"] for _, e in _good(job)
               if e.topic == n.accounts and b"auth_token" in e.value}
    assert secrets
    account_ids = {e.account_id for e in job["events"] if e.account_id}
    for rec in carrier:
        doc = _doc(rec)
        assert "account_id" not in doc
        for ptr, field in doc.get("fields", {}).items():
            assert field["category"] != "account", ptr
        raw = rec.value.decode()
        assert not any(s in raw for s in secrets)
        assert not any(a in raw for a in account_ids), "an account id reached the carrier topic"
        assert rec.key == rec.headers["event-id"]


def test_no_route_forwards_a_secret_in_clear(job):
    n, reader = job["names"], job["reader"]
    secrets = {json.loads(e.value)["auth_token"] for _, e in _good(job)
               if e.topic == n.accounts and b"auth_token" in e.value}
    for topic, recs in reader.records.items():
        for rec in recs:
            raw = (rec.value or b"").decode("utf-8", "replace")
            assert not any(s in raw for s in secrets), topic


def test_topics_carry_the_policy_retention_and_cleanup(job):
    statuses = describe(job["settings"], job["specs"])
    assert all(st.exists for st in statuses)
    for st in statuses:
        for key, want in st.config.items():
            assert st.effective.get(key) == want, (st.name, key)
    retention = {st.name: st for st in statuses}
    n = job["names"]
    for cat in ("content", "usage", "account"):
        assert retention[n.retention(cat)].config.get("retention.ms"), cat


def test_events_after_a_bad_record_are_processed(job):
    reader = job["reader"]
    pairs = list(zip(job["coords"], job["events"]))
    bad = [c for c, e in pairs if e.bad]
    assert len(bad) == N_BAD
    followers = 0
    for (t, p, o) in bad:
        for c, e in pairs:
            if c[0] == t and c[1] == p and c[2] > o and not e.bad and e.value is not None:
                assert reader.accounted(c, e.event_id), c
                followers += 1
    assert followers > 0


def test_undecodable_records_are_dead_lettered_with_reason_source_and_bytes(job):
    n, reader = job["names"], job["reader"]
    import base64

    by_source = {}
    for d in map(_doc, reader.records[n.deadletter]):
        s = d["source"]
        by_source[(s["topic"], s["partition"], s["offset"])] = d
    for c, e in zip(job["coords"], job["events"]):
        if e.bad:
            d = by_source[c]
            assert d["error"]["kind"] and d["error"]["message"]
            assert base64.b64decode(d["raw_base64"]) == e.value


_PHONE = re.compile(r"\+1\d{3}5550\d{3}")
_EMAIL = re.compile(r"[a-z]+\.[a-z]+@example\.com")


def _strings(obj, keys: bool):
    """Every string value (``keys=False``) or every object key (``keys=True``) in a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if keys:
                yield k
            yield from _strings(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, keys)
    elif isinstance(obj, str) and not keys:
        yield obj


def test_anonymised_topic_holds_no_raw_phone_number_or_email(job):
    n, reader = job["names"], job["reader"]
    recs = reader.records[n.anonymised]
    assert recs
    for rec in recs:
        for value in _strings(_doc(rec), keys=False):
            assert not _PHONE.search(value), "a raw sample phone number was not anonymised"
            assert not _EMAIL.search(value), "a raw sample email was not anonymised"


def test_anonymised_topic_holds_no_phone_number_in_object_keys(job):
    """The sample's unknown field ``x_routing`` is keyed by a phone number (DESIGN: keys can
    be phone numbers)."""
    n, reader = job["names"], job["reader"]
    for rec in reader.records[n.anonymised]:
        for key in _strings(_doc(rec), keys=True):
            assert not _PHONE.search(key), "a phone number used as a key was not anonymised"


def test_tombstones(job):
    n, reader = job["names"], job["reader"]
    tomb = job["tomb_account"].encode()
    deletions = [r for r in reader.records[n.deletions] if r.key == tomb]
    assert deletions, "the account tombstone did not produce a deletion event"
    assert any(r.key == tomb and r.value is None for r in reader.records[n.retention_account]), \
        "no tombstone written to the compacted account retention topic"
    assert not any(r.key == b"AC" + b"1" * 32 for recs in reader.records.values() for r in recs)
    deleted = {e.account_id for e in job["events"] if e.deletes_account}
    keys = {r.key.decode() for r in reader.records[n.deletions] if r.key}
    assert deleted <= keys


def test_outputs_carry_the_design_headers(job):
    n, reader = job["names"], job["reader"]
    required = {"event-id", "privacy-categories", "privacy-entities", "privacy-policy", "envelope-version"}
    for topic in (n.retention_content, n.retention_usage, n.retention_account, n.anonymise, n.carrier):
        for rec in reader.records[topic]:
            if rec.value is None:
                continue
            assert required <= set(rec.headers), (topic, set(rec.headers))


def test_worker_serves_metrics_and_health(job):
    status, text = job["metrics"]
    assert status == 200 and job["health"] == 200
    m = parse_metrics(text)
    routes = {labels["route"] for labels, v in m["privacy_events_total"] if v > 0}
    n = job["names"]
    assert {n.anonymise, n.deadletter, n.anonymised, n.retention_usage} <= routes
    assert sum(v for _, v in m["privacy_deadletter_total"]) >= N_BAD
    assert sum(v for _, v in m["privacy_fields_total"]) > 0
    assert any(labels.get("entity_type") == "PHONE_NUMBER" for labels, _ in m["privacy_entities_total"])
    assert m["privacy_classify_seconds_count"][0][1] > 0
    for labels, _ in m["privacy_unknown_fields_total"]:
        assert set(labels) == {"event_type"}
    lag_topics = {labels["topic"] for labels, _ in m["privacy_consumer_lag"]}
    assert lag_topics and lag_topics <= {n.messages, n.calls, n.accounts, n.anonymise}
