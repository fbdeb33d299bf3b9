"""Issue 8, worker half: every bad-input kind of ``tests/bad_inputs.py`` through a running
worker on the embedded broker, and no PII in anything the worker says at DEBUG.

One worker (``PRIVACY_PIPELINE_LOG_LEVEL=DEBUG``) gets, on one partition of the messages
topic, each bad input followed by a good record, then a record replayed once (header
``replay-attempt``) that fails again, then PII-rich events on all three input topics (some
undecodable). The table-driven test checks each kind: dead letters with reason, source
coordinates, key and bytes; envelopes (exact values for ``EXACT_VALUES``); the tombstone
skipped; the next record processed. Then: nothing lost, the worker alive, committed offsets
past every input, and no PII value in the worker's log (stdout and stderr), any dead-letter
reason or message, or ``/metrics``. The last test prints the summary line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import pytest

from agents.runner import InputEvent, OutputReader, WorkerProcess, _topic_specs
from agents.topics import consumer_config, producer_config, topic_names
from pipeline.codec import decode_object
from pipeline.processing import Processor
from pipeline.settings import Settings
from tests.bad_inputs import AC, BAD_INPUTS, EXACT_VALUES

pytestmark = pytest.mark.broker

TIMEOUT_S = 150
SUMMARY: dict[str, int] = {"kinds": 0, "lost": 0, "pii_found": 0}

#: PII values of the leak test (invented; the phone numbers are in the 555-01xx fiction range).
PII = ["Adaeze Okonkwo-Lindqvist", "+14155550187", "adaeze.lindqvist@example.org",
       "4000 0566 5566 5556", "DE89 3704 0044 0532 0130 00", "198.51.100.23", "078-05-1120",
       "221B Baker Street", "+442079460958"]


def _pii_events(names) -> list[InputEvent]:
    name, phone, email, card, iban, ip, ssn, street, phone2 = PII
    body = (f"Hi it's {name}, call me on {phone} or {phone2}, mail {email}. Card {card}, "
            f"IBAN {iban}, from {ip}, SSN {ssn}, I live at {street}.")
    acct = "AC" + "c" * 32
    msg = {"sid": "SM" + "c" * 32, "account_sid": acct, "from": phone, "to": phone2, "body": body,
           "status": "received", "x_contact": {phone: {"email": email, "note": body}},
           "error_message": f"delivery to {phone} failed for {name}"}
    call = {"sid": "CA" + "c" * 32, "account_sid": acct, "from": phone2, "to": phone,
            "caller_name": name, "status": "completed", "duration": "61",
            "transcription": {"text": body}}
    account = {"sid": acct, "friendly_name": name, "owner_email": email, "phone": phone,
               "address": {"street": street, "city": "London"}, "auth_token": "f" * 32,
               "billing": {"card": card, "iban": iban}, "last_login_ip": ip}
    def enc(d):
        return json.dumps(d).encode()

    return [
        InputEvent(names.messages, acct.encode(), enc(msg), msg["sid"], acct),
        InputEvent(names.calls, acct.encode(), enc(call), call["sid"], acct),
        InputEvent(names.accounts, acct.encode(), enc(account), acct, acct),
        # undecodable records holding PII: their dead letters must not quote it
        InputEvent(names.messages, phone.encode(), f'{{"body": "{body}", "to": '.encode(), bad=True),
        InputEvent(names.messages, None, f'{{"body": "{name} {email}'.encode() + b"\xff\"}", bad=True),
        InputEvent(names.calls, None, json.dumps([name, phone, email]).encode(), bad=True),
    ]


def _good(i: int) -> bytes:
    return json.dumps({"sid": f"SM{i:032d}", "account_sid": AC, "body": "the next record", "to": "+14155550100"}).encode()


@pytest.fixture(scope="module")
def job(broker, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(kafka_broker=broker.bootstrap, topic_prefix=f"bi{tag}.", app_id=f"bi-{tag}",
                        partitions=2, producer_max_request_size=4_000_000)
    names = topic_names(settings)
    workdir = tmp_path_factory.mktemp("bad-input-worker")
    worker = WorkerProcess(broker.bootstrap, workdir=workdir, env={
        "PRIVACY_PIPELINE_TOPIC_PREFIX": settings.topic_prefix,
        "PRIVACY_PIPELINE_APP_ID": settings.app_id,
        "PRIVACY_PIPELINE_PARTITIONS": "2",
        "PRIVACY_PIPELINE_LOG_LEVEL": "DEBUG",
        "PRIVACY_PIPELINE_SESSION_TIMEOUT_S": "6",
        "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": "1",
        "PRIVACY_PIPELINE_BATCH_SIZE": "16",
        "PRIVACY_PIPELINE_DETECTOR_PROCESSES": "1",
    }).start()
    reader = None
    producer = None
    try:
        worker.wait_ready(timeout=150)
        specs = _topic_specs(settings, Processor)
        out_topics = [s.name for s in specs if s.name not in set(names.input_families())]
        reader = OutputReader(settings, out_topics, from_beginning=True, keep=out_topics)
        from kafka import KafkaProducer

        producer = KafkaProducer(**producer_config(settings))
        sent: list[tuple[str, InputEvent, object]] = []  # (case name, event, future)
        for i, (name, value, _) in enumerate(BAD_INPUTS):
            key = f"bad-{name}".encode()
            ev = InputEvent(names.messages, key, value, bad=value is not None)
            sent.append((name, ev, producer.send(names.messages, key=key, value=value, partition=0)))
            good = InputEvent(names.messages, AC.encode(), _good(i), f"SM{i:032d}", AC)
            sent.append((f"after:{name}", good, producer.send(names.messages, key=good.key,
                                                                value=good.value, partition=0)))
        replayed = InputEvent(names.messages, b"replayed", b"still-not-json{", bad=True)
        sent.append(("replayed", replayed, producer.send(
            names.messages, key=replayed.key, value=replayed.value, partition=0,
            headers=[("replay-attempt", b"2"), ("replay-deadletter", b"x/0/1")])))
        for ev in _pii_events(names):
            sent.append(("pii", ev, producer.send(ev.topic, key=ev.key, value=ev.value)))
        producer.flush()
        coords = []
        for _, _, fut in sent:
            md = fut.get(timeout=60)
            coords.append((md.topic, md.partition, md.offset))
        events = [ev for _, ev, _ in sent]
        deadline = time.monotonic() + TIMEOUT_S
        missing = []
        while time.monotonic() < deadline:
            reader.poll(500)
            missing = reader.missing_inputs(events, coords)
            if not missing and not reader.missing_anonymised():
                break
            assert worker.alive(), f"worker died:\n{worker.log_tail()}"
        reader.poll(500)
        status, metrics = worker.get("/metrics")
        yield {"settings": settings, "names": names, "worker": worker, "reader": reader,
               "cases": {n: (c, ev) for (n, ev, _), c in zip(sent, coords)},
               "sent": [(n, ev, c) for (n, ev, _), c in zip(sent, coords)],
               "missing": missing, "metrics": (status, metrics.decode())}
    finally:
        if producer is not None:
            producer.close(timeout=10)
        if reader is not None:
            reader.close()
        code = worker.stop()
        print(f"worker exit code {code}; log {worker.log_path}")


def _by_source(reader, topic):
    out: dict = {}
    for rec in reader.records[topic]:
        if rec.value is None:
            continue
        src = decode_object(rec.value).get("source") or {}
        out.setdefault((src.get("topic"), src.get("partition"), src.get("offset")), []).append(rec)
    return out


@pytest.mark.parametrize("name, value, expected", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_through_the_worker(job, name, value, expected):
    n, reader = job["names"], job["reader"]
    coord, ev = job["cases"][name]
    dead = _by_source(reader, n.deadletter)
    if expected == "skipped":
        for topic, recs in reader.records.items():
            assert not any(r.key == ev.key for r in recs), f"the tombstone reached {topic}"
        assert coord not in reader.seen_coords
    elif expected == "envelope":
        assert coord not in dead, f"{name} was dead-lettered: {decode_object(dead[coord][0].value)['error']}"
        full = _by_source(reader, n.anonymise).get(coord)
        assert full, f"{name}: no envelope on {n.anonymise}"
        env = decode_object(full[0].value)  # exact parse: big integers stay integers
        assert env["source"] == {"topic": coord[0], "partition": coord[1], "offset": coord[2]}
        assert isinstance(env["schema_errors"], list)
        for topic, recs in reader.records.items():
            for r in recs:
                if r.value is not None and topic != n.anonymised:
                    decode_object(r.value)  # every output is a valid JSON object again
        if name in EXACT_VALUES:
            key, exact = EXACT_VALUES[name]
            assert env["record"][key] == exact and type(env["record"][key]) is type(exact)
            if isinstance(exact, int):
                assert str(exact).encode() in full[0].value, "the big integer was rounded in the bytes"
    else:
        kind = expected.split(":", 1)[1]
        assert coord in dead, f"{name}: no dead letter for {coord}"
        rec = dead[coord][0]
        doc = decode_object(rec.value)
        assert doc["error"]["kind"] == kind and doc["error"]["message"]
        assert rec.headers["deadletter-reason"] == kind.encode()
        assert doc["source"]["topic"] == coord[0] and doc["source"]["partition"] == coord[1]
        assert doc["source"]["offset"] == coord[2] and doc["source"]["timestamp"]
        assert base64.b64decode(doc["source"]["key_base64"]) == ev.key
        assert doc["raw_size"] == len(value) and doc["raw_sha256"] == hashlib.sha256(value).hexdigest()
        if doc["raw_omitted"]:
            assert doc["raw_base64"] is None and kind == "output_too_large"
        else:
            assert base64.b64decode(doc["raw_base64"]) == value
    after, good = job["cases"][f"after:{name}"]
    assert reader.accounted(after, good.event_id), f"the record after {name} was not processed"
    SUMMARY["kinds"] += 1


def test_a_replayed_record_that_fails_again_keeps_its_attempt_count(job):
    n, reader = job["names"], job["reader"]
    coord, _ = job["cases"]["replayed"]
    rec = _by_source(reader, n.deadletter)[coord][0]
    assert rec.headers["replay-attempt"] == b"2"
    assert "replay-deadletter" not in rec.headers  # only the counter is carried


def test_nothing_lost_worker_alive_and_offsets_committed(job):
    missing = job["missing"]
    SUMMARY["lost"] = len(missing)
    assert not missing, f"{len(missing)} inputs never reached an output: {missing[:5]}"
    assert job["worker"].alive(), job["worker"].log_tail()
    from kafka import KafkaConsumer, TopicPartition

    last: dict = {}
    for _, _, (t, p, o) in job["sent"]:
        last[(t, p)] = max(last.get((t, p), -1), o)
    s = job["settings"]
    consumer = KafkaConsumer(**consumer_config(s, group_id=s.app_id))
    try:
        deadline = time.monotonic() + 45
        behind = dict(last)
        while behind and time.monotonic() < deadline:
            for (t, p), o in list(behind.items()):
                committed = consumer.committed(TopicPartition(t, p))
                if committed is not None and committed > o:
                    del behind[(t, p)]
            time.sleep(1)
        assert not behind, f"committed offsets did not pass the inputs: {behind}"
    finally:
        consumer.close()


def test_no_pii_in_worker_output_deadletters_or_metrics_at_debug(job):
    worker, reader, n = job["worker"], job["reader"], job["names"]
    log_text = worker.log_path.read_text(errors="replace")
    assert " DEBUG " in log_text or "[D]" in log_text or "DEBUG" in log_text, "the worker did not log at DEBUG"
    reasons = []
    for rec in reader.records[n.deadletter]:
        doc = decode_object(rec.value)
        reasons.append(json.dumps(doc["error"], ensure_ascii=False))
        reasons.append(rec.headers.get("deadletter-reason", b"").decode())
    status, metrics = job["metrics"]
    assert status == 200
    texts = {"worker log": log_text, "dead-letter reasons": "\n".join(reasons), "/metrics": metrics}
    found = [(p, where) for p in PII for where, t in texts.items() if p in t]
    # the dead letters of the PII records were written (their reasons were searched)
    pii_dead = [c for name, ev, c in job["sent"] if name == "pii" and ev.bad]
    assert all(c in _by_source(reader, n.deadletter) for c in pii_dead)
    SUMMARY["pii_found"] += len(found)
    assert found == [], f"PII found in captured output: {found}"


def test_summary_line(capsys):
    """Prints the issue-8 worker summary: bad-input kinds tried, records lost, PII values found."""
    kinds = len({c[0] for c in BAD_INPUTS})
    with capsys.disabled():
        print(f"\nreliability-worker: bad-input kinds tried={SUMMARY['kinds']}/{kinds}, "
              f"records lost={SUMMARY['lost']}, PII values found in captured output={SUMMARY['pii_found']}")
    assert SUMMARY["kinds"] == kinds and SUMMARY["lost"] == 0 and SUMMARY["pii_found"] == 0
