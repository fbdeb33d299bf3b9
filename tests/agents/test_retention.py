"""Issue 7 on the embedded broker: retention settings and drift, account deletion (all three
signals), crypto-shredding, legal hold and consent, with exact expected topic contents.

One worker subprocess (with a configured master key) processes four phases, each produced
after the previous one is out, so the order between topics is known:

1. account events: consent granted for D, a billing usage record of A (legal hold);
2. one message per account A..E;
3. deletions: A ``action: deleted``, B ``status: closed``, C tombstone; D withdraws consent;
4. one more message per account, a second billing record of A.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml

from agents.runner import OutputReader, WorkerProcess, _topic_specs, produce_events, InputEvent
from agents.topics import describe, ensure_topics, topic_names
from pipeline.codec import decode_object, encode
from pipeline.policy.loader import default_policy_path
from pipeline.processing import Processor
from pipeline.settings import Settings
from pipeline.shredding import KeyRing, KeyShreddedError

pytestmark = pytest.mark.broker

A, B, C, D, E = ("AC" + c * 32 for c in "abcde")
ACCOUNTS = (A, B, C, D, E)
MASTER = {"PRIVACY_PIPELINE_MASTER_KEY": "retention-test-master-secret", "PRIVACY_PIPELINE_MASTER_KEY_ID": "t1"}
PHASE_TIMEOUT_S = 60
GRANT, WITHDRAW = "CE" + "1" * 32, "CE" + "2" * 32  # consent event ids of D


def sid(prefix: str, account: str, n: int) -> str:
    return f"{prefix}{n}{account[2:33]}"


def message(account: str, n: int) -> dict:
    return {"sid": sid("SM", account, n), "account_sid": account, "from": "+14155550100", "to": "+14155550199",
            "body": f"secret plan {n} for {account[:4]}", "status": "delivered", "direction": "outbound-api",
            "num_segments": "1", "price": "-0.0079"}


def billing(n: int) -> dict:
    return {"sid": sid("UR", A, n), "account_sid": A, "category": "sms", "description": "SMS messages",
            "usage": str(100 + n), "usage_unit": "segments", "price": "0.95", "price_unit": "usd"}


@pytest.fixture(scope="module")
def job(broker, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    settings = Settings(kafka_broker=broker.bootstrap, topic_prefix=f"rt{tag}.", app_id=f"rt-{tag}", partitions=2,
                        session_timeout_s=6, heartbeat_interval_s=1, master_key=MASTER["PRIVACY_PIPELINE_MASTER_KEY"],
                        master_key_id="t1")
    n = topic_names(settings)
    marketing = settings.topic_prefix + "privacy.marketing.v1"
    worker = WorkerProcess(broker.bootstrap, workdir=tmp_path_factory.mktemp("retention"), env={
        "PRIVACY_PIPELINE_TOPIC_PREFIX": settings.topic_prefix, "PRIVACY_PIPELINE_APP_ID": settings.app_id,
        "PRIVACY_PIPELINE_PARTITIONS": "2", "PRIVACY_PIPELINE_SESSION_TIMEOUT_S": "6",
        "PRIVACY_PIPELINE_HEARTBEAT_INTERVAL_S": "1", "PRIVACY_PIPELINE_BATCH_SIZE": "16",
        "PRIVACY_PIPELINE_DETECTOR_PROCESSES": "1", **MASTER,
    }).start()
    reader = None
    try:
        worker.wait_ready(timeout=120)
        specs = _topic_specs(settings, Processor)
        outs = [s.name for s in specs if s.name not in n.input_families()]
        reader = OutputReader(settings, outs, from_beginning=True, keep=outs)

        def phase(events: list[InputEvent], done) -> None:
            produce_events(settings, events)
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            while time.monotonic() < deadline:
                reader.poll(300)
                if done():
                    return
                assert worker.alive(), worker.log_tail()
            raise AssertionError(f"phase not done in {PHASE_TIMEOUT_S} s; outputs {dict(reader.counts)}; "
                                 f"worker log {worker.log_path}")

        def seen(topic: str, *ids: str):
            return lambda: set(ids) <= reader.seen_ids[topic]

        acc = n.accounts
        phase([InputEvent(acc, D.encode(), encode({"id": GRANT, "account_sid": D, "consents": {"marketing": True}})),
               InputEvent(acc, A.encode(), encode(billing(1)))],
              seen(n.retention_account, GRANT, sid("UR", A, 1)))
        phase([InputEvent(n.messages, a.encode(), encode(message(a, 1))) for a in ACCOUNTS],
              seen(n.anonymise, *(sid("SM", a, 1) for a in ACCOUNTS)))
        phase([InputEvent(acc, A.encode(), encode({"sid": A, "action": "deleted"})),
               InputEvent(acc, B.encode(), encode({"sid": B, "status": "closed"})),
               InputEvent(acc, C.encode(), None),
               InputEvent(acc, D.encode(), encode({"id": WITHDRAW, "account_sid": D,
                                                   "consents": {"marketing": "withdrawn"}}))],
              lambda: {A.encode(), B.encode(), C.encode()} <= reader.deletion_keys
              and WITHDRAW in reader.seen_ids[n.retention_account] and len(reader.records[n.keys]) >= 8)
        phase([InputEvent(n.messages, a.encode(), encode(message(a, 2))) for a in ACCOUNTS]
              + [InputEvent(acc, A.encode(), encode(billing(2)))],
              seen(n.anonymise, *(sid("SM", a, 2) for a in ACCOUNTS)))
        phase([], seen(n.legal_hold, sid("UR", A, 2)))
        reader.poll(1000)
        yield {"settings": settings, "n": n, "reader": reader, "marketing": marketing, "worker": worker}
    finally:
        if reader is not None:
            reader.close()
        print(f"worker exit code {worker.stop()}; log {worker.log_path}")


def docs(job, topic):
    return [(r.key.decode() if r.key else None, None if r.value is None else json.loads(r.value))
            for r in job["reader"].records[topic]]


def ids(job, topic) -> set[str]:
    return {d["event_id"] for _, d in docs(job, topic) if d is not None}


def test_deletion_signals_emit_events_and_account_tombstones(job):
    n = job["n"]
    events = {k: (d["signal"], d["legal_holds"]) for k, d in docs(job, n.deletions)}
    assert events == {A: ("event", ["billing-usage"]), B: ("event", ["billing-usage"]),
                      C: ("tombstone", ["billing-usage"])}
    tombs = sorted(k for k, d in docs(job, n.retention_account) if d is None)
    assert tombs == [A, B, C]


def test_deleted_accounts_are_not_retained_after_deletion_only_anonymised(job):
    n = job["n"]
    first = {sid("SM", a, 1) for a in ACCOUNTS}
    kept = {sid("SM", a, 2) for a in (D, E)}
    assert ids(job, n.retention_content) == first | kept
    assert {i for i in ids(job, n.retention_usage) if i.startswith("SM")} == first | kept
    assert {sid("SM", a, 2) for a in ACCOUNTS} <= ids(job, n.anonymise)


def test_key_topic_holds_one_key_per_account_and_tombstones_of_deleted_ones(job):
    recs = docs(job, job["n"].keys)
    live = [k for k, v in recs if v is not None]
    assert sorted(k.split("/")[0] for k in live) == sorted(ACCOUNTS)  # one data key each, none after deletion
    assert all(v["kid"] == "t1" and "wrapped" in v for _, v in recs if v is not None)
    tombstoned = sorted(k for k, v in recs if v is None)
    assert tombstoned == sorted(k for k in live if k.split("/")[0] in (A, B, C))


def test_a_fresh_process_cannot_decrypt_deleted_accounts_content(job):
    n, reader = job["n"], job["reader"]
    ring = KeyRing.from_settings(job["settings"])  # what a new process rebuilds from the topic
    for r in reader.records[n.keys]:
        ring.apply(r.key, r.value)
    sealed = [(t, k, d) for t in (n.retention_content, n.retention_usage) for k, d in docs(job, t) if d]
    assert sealed and all("record" not in d for _, _, d in sealed)
    readable = {}
    for topic, account, d in sealed:
        try:
            readable[(topic, d["event_id"])] = json.loads(ring.decrypt(account, d["record_encrypted"]))
        except KeyShreddedError:
            assert account in (A, B, C)
        else:
            assert account in (D, E)
    assert readable[(n.retention_content, sid("SM", D, 2))] == {"body": f"secret plan 2 for {D[:4]}"}
    assert readable[(n.retention_usage, sid("SM", E, 1))]["price"] == "-0.0079"
    assert {i for t, i in readable if t == n.retention_content} == {sid("SM", a, k) for a in (D, E) for k in (1, 2)}
    for topic in (n.retention_content, n.retention_usage):
        assert all(b"secret plan" not in (r.value or b"") for r in reader.records[topic])


def test_legal_hold_keeps_billing_in_clear_and_is_audited(job):
    n = job["n"]
    held = {d["event_id"]: d for _, d in docs(job, n.legal_hold)}
    assert set(held) == {sid("UR", A, 1), sid("UR", A, 2)}
    assert held[sid("UR", A, 2)]["record"]["price"] == "0.95" and held[sid("UR", A, 2)]["legal_hold"] == "billing-usage"
    audits = sorted((k, d["reason"], d["event_id"]) for k, d in docs(job, n.audit) if d.get("action") == "legal_hold")
    assert audits == sorted([(A, "account_deleted", A), (B, "account_deleted", B), (C, "account_deleted", f"tombstone:{C}"),
                             (A, "held_after_deletion", sid("UR", A, 2))])


def test_consent_gates_the_marketing_route(job):
    recs = docs(job, job["marketing"])
    assert [(k, d["event_id"]) for k, d in recs] == [(D, sid("SM", D, 1))]
    assert "record_encrypted" in recs[0][1] and {f["category"] for f in recs[0][1]["fields"].values()} == {"usage"}


def test_topics_carry_the_policy_settings(job):
    statuses = {st.name: st for st in describe(job["settings"], _topic_specs(job["settings"], Processor))}
    n = job["n"]
    assert statuses[n.keys].effective["cleanup.policy"] == "compact"
    assert statuses[n.anonymise].effective["retention.ms"] == "3600000"
    assert statuses[n.deadletter].effective["retention.ms"] == "604800000"
    assert statuses[n.legal_hold].effective["retention.ms"] == "315360000000"
    assert statuses[job["marketing"]].effective["retention.ms"] == "34560000000"
    assert all(st.action == "ok" for st in statuses.values())


def test_policy_change_is_applied_idempotently_and_topics_shows_drift(broker, tmp_path, monkeypatch, capsys):
    from agents.cli import main

    prefix = f"pc{uuid.uuid4().hex[:6]}."
    data = yaml.safe_load(default_policy_path().read_text())
    data["categories"]["content"]["retention_ms"] = 86400000  # 30 days -> 1 day
    data["routes"]["purposes"][0]["retention_ms"] = 7776000000
    changed = tmp_path / "policy.yaml"
    changed.write_text(yaml.safe_dump(data))
    base = Settings(kafka_broker=broker.bootstrap, topic_prefix=prefix, partitions=1)
    ensure_topics(base, _topic_specs(base, Processor))  # a worker started with the default policy

    monkeypatch.setenv("PRIVACY_PIPELINE_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("PRIVACY_PIPELINE_KAFKA_BROKER", broker.bootstrap)
    monkeypatch.setenv("PRIVACY_PIPELINE_PARTITIONS", "1")
    monkeypatch.setenv("COLUMNS", "250")
    capsys.readouterr()
    assert main(["topics"]) == 0
    out = capsys.readouterr().out
    assert f"{prefix}privacy.keys.v1" in out and "compact" in out and "differs" not in out
    assert main(["topics", "--policy", str(changed)]) == 1  # drift from the new policy
    out = capsys.readouterr().out
    assert "differs" in out and "(policy 86400000)" in out and "(policy 7776000000)" in out

    new = Settings(kafka_broker=broker.bootstrap, topic_prefix=prefix, partitions=1, policy=changed)
    specs = _topic_specs(new, Processor)
    actions = {st.name: st.action for st in ensure_topics(new, specs)}  # the worker's start-up step
    assert actions[f"{prefix}privacy.retention.content.v1"] == "altered"
    assert actions[f"{prefix}privacy.marketing.v1"] == "altered"
    assert {a for t, a in actions.items() if "content" not in t and "marketing" not in t} == {"ok"}
    assert {st.action for st in ensure_topics(new, specs)} == {"ok"}  # idempotent
    assert main(["topics", "--policy", str(changed)]) == 0
    assert "differs" not in capsys.readouterr().out
