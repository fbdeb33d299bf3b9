"""Classifier and router on Twilio-shaped records: categories, entities, routes, keys, headers."""

from __future__ import annotations

import pytest

from pipeline.records import SourceRecord
from pipeline.codec import decode_object, encode

AC = "AC" + "0123456789abcdef" * 2
SM = "SM" + "fedcba9876543210" * 2
CA = "CA" + "00112233445566778899aabbccddeeff"

MESSAGE_REST = {
    "sid": SM, "account_sid": AC, "to": "+14155550100", "from": "+14155550199",
    "body": "Hi, this is Maria Lopez, call me back at +1 415 555 0142", "status": "sent",
    "direction": "outbound-api", "num_segments": "1", "price": "-0.00750", "price_unit": "USD",
    "date_created": "Thu, 30 Jul 2015 20:12:31 +0000", "error_code": None,
    "uri": f"/2010-04-01/Accounts/{AC}/Messages/{SM}.json",
}
MESSAGE_WEBHOOK = {
    "MessageSid": SM, "AccountSid": AC, "From": "+14155550100", "To": "+14155550199",
    "Body": "see you at 5", "NumMedia": "1", "MediaUrl0": "https://api.example.com/Media/ME1",
    "FromCity": "SAN FRANCISCO", "SmsStatus": "received",
}
CALL_REST = {
    "sid": CA, "account_sid": AC, "to": "+14155550100", "from": "+14155550199", "status": "completed",
    "duration": "15", "direction": "outbound-api", "price": "-0.03000", "start_time": "2024-01-01T10:00:00Z",
    "caller_name": "MARIA LOPEZ",
}
ACCOUNT = {
    "sid": AC, "friendly_name": "Acme Corp", "status": "active", "auth_token": "tok-9f8e7d6c5b4a",
    "email": "ops@example.com", "owner_account_sid": AC,
}
CLOUDEVENT = {
    "specversion": "1.0", "type": "com.twilio.messaging.message.delivered", "source": "/2010-04-01/Accounts",
    "id": "EZ" + "1" * 32, "time": "2024-01-01T10:00:00Z",
    "data": {"messageSid": SM, "accountSid": AC, "to": "+14155550100", "from": "+14155550199",
             "body": "hello from the other side", "direction": "outbound-api"},
}
UNKNOWN_NESTED = {
    "sid": SM, "account_sid": AC, "body": "ok",
    "meta": {"customer_email": "ana@example.com", "retry_count": 3, "notes": "she asked us to call back later today",
             "tags": ["vip", "+14155550123"], "delivered_at": "2024-01-01T10:00:00Z"},
}


def _process(processor, record, topic="cpaas.messages.v1", event_type=None):
    raw = encode(record)
    rec = SourceRecord(topic, 0, 7, b"input-key", raw, 1_700_000_000_000)
    return processor.process_batch([rec], event_type=event_type)[0]


@pytest.mark.parametrize(
    "record, topic, pointer, category, source",
    [
        (MESSAGE_REST, "cpaas.messages.v1", "/body", "content", "rule"),
        (MESSAGE_REST, "cpaas.messages.v1", "/to", "usage", "rule"),
        (MESSAGE_REST, "cpaas.messages.v1", "/from", "usage", "rule"),
        (MESSAGE_REST, "cpaas.messages.v1", "/account_sid", "account", "rule"),
        (MESSAGE_REST, "cpaas.messages.v1", "/status", "usage", "rule"),
        (MESSAGE_REST, "cpaas.messages.v1", "/price", "usage", "rule"),
        (MESSAGE_REST, "cpaas.messages.v1", "/error_code", "usage", "rule"),
        (MESSAGE_WEBHOOK, "cpaas.messages.v1", "/Body", "content", "rule"),
        (MESSAGE_WEBHOOK, "cpaas.messages.v1", "/From", "usage", "rule"),
        (MESSAGE_WEBHOOK, "cpaas.messages.v1", "/AccountSid", "account", "rule"),
        (MESSAGE_WEBHOOK, "cpaas.messages.v1", "/MediaUrl0", "content", "rule"),
        (MESSAGE_WEBHOOK, "cpaas.messages.v1", "/FromCity", "usage", "rule"),
        (CALL_REST, "cpaas.calls.v1", "/duration", "usage", "rule"),
        (CALL_REST, "cpaas.calls.v1", "/to", "usage", "rule"),
        (CALL_REST, "cpaas.calls.v1", "/account_sid", "account", "rule"),
        (ACCOUNT, "cpaas.accounts.v1", "/friendly_name", "account", "rule"),
        (ACCOUNT, "cpaas.accounts.v1", "/email", "account", "rule"),
        (ACCOUNT, "cpaas.accounts.v1", "/auth_token", "account", "rule"),
        (CLOUDEVENT, "cpaas.messages.v1", "/data/body", "content", "rule"),
        (CLOUDEVENT, "cpaas.messages.v1", "/data/to", "usage", "rule"),
        (CLOUDEVENT, "cpaas.messages.v1", "/data/accountSid", "account", "rule"),
        (CLOUDEVENT, "cpaas.messages.v1", "/type", "usage", "rule"),
        (UNKNOWN_NESTED, "cpaas.messages.v1", "/meta/customer_email", "account", "name"),
        (UNKNOWN_NESTED, "cpaas.messages.v1", "/meta/notes", "content", "name"),
        (UNKNOWN_NESTED, "cpaas.messages.v1", "/meta/delivered_at", "usage", "name"),
    ],
)
def test_field_category(processor, record, topic, pointer, category, source):
    env = _process(processor, record, topic).envelope
    field = env["fields"][pointer]
    assert (field["category"], field["source"]) == (category, source)


def test_every_leaf_is_tagged(processor):
    env = _process(processor, UNKNOWN_NESTED).envelope
    assert set(env["fields"]) == {
        "/sid", "/account_sid", "/body", "/meta/customer_email", "/meta/retry_count", "/meta/notes",
        "/meta/tags/0", "/meta/tags/1", "/meta/delivered_at",
    }


def test_phone_in_to_is_declared_and_in_body_is_detected(processor):
    env = _process(processor, MESSAGE_REST).envelope
    assert env["fields"]["/to"]["entities"] == [
        {"type": "PHONE_NUMBER", "start": 0, "end": 12, "score": 1.0, "recognizer": "rule"}]
    body = MESSAGE_REST["body"]
    phones = [e for e in env["fields"]["/body"]["entities"] if e["type"] == "PHONE_NUMBER"]
    assert len(phones) == 1
    assert body[phones[0]["start"]:phones[0]["end"]].replace(" ", "") == "+14155550142"
    persons = [e for e in env["fields"]["/body"]["entities"] if e["type"] == "PERSON"]
    assert [body[p["start"]:p["end"]] for p in persons] == ["Maria Lopez"]


def test_envelope_identity_and_metadata(processor):
    res = _process(processor, MESSAGE_REST)
    env = res.envelope
    assert (env["event_id"], env["account_id"], env["event_type"]) == (SM, AC, "message")
    assert env["envelope_version"] == 1
    assert env["source"] == {"topic": "cpaas.messages.v1", "partition": 0, "offset": 7}
    assert env["categories"] == ["account", "content", "usage"]
    assert env["record"] == MESSAGE_REST
    assert env["classified_at"].endswith("Z")


def test_cloudevents_identity_prefers_payload_sid(processor):
    env = _process(processor, CLOUDEVENT, event_type="auto").envelope
    assert (env["event_id"], env["account_id"], env["event_type"]) == (SM, AC, "message")


@pytest.mark.parametrize(
    "record, family",
    [(MESSAGE_REST, "message"), (MESSAGE_WEBHOOK, "message"), (CALL_REST, "call"), (ACCOUNT, "account"),
     (CLOUDEVENT, "message"), ({"foo": "bar"}, "unknown")],
)
def test_auto_event_type(processor, record, family):
    assert _process(processor, record, topic="-", event_type="auto").envelope["event_type"] == family


def test_routes_keys_and_headers_for_outbound_message(processor):
    res = _process(processor, MESSAGE_REST)
    topics = [o.topic for o in res.outputs]
    assert topics == ["privacy.retention.content.v1", "privacy.retention.usage.v1",
                      "privacy.retention.account.v1", "privacy.anonymise.v1", "privacy.carrier.v1",
                      "privacy.audit.v1"]
    by_topic = {o.topic: o for o in res.outputs}
    assert by_topic["privacy.retention.content.v1"].key == AC.encode()
    assert by_topic["privacy.carrier.v1"].key == SM.encode()
    content = decode_object(by_topic["privacy.retention.content.v1"].value)
    assert set(content["fields"]) == {"/body"} and content["record"] == {"body": MESSAGE_REST["body"]}
    assert content["categories"] == ["content"]
    headers = dict(by_topic["privacy.retention.usage.v1"].headers)
    assert headers["event-id"] == SM.encode()
    assert headers["privacy-categories"] == b"usage"
    assert headers["privacy-entities"] == b"PHONE_NUMBER"
    assert headers["privacy-policy"] == processor.policy.version.encode()
    assert headers["envelope-version"] == b"1"
    carrier = decode_object(by_topic["privacy.carrier.v1"].value)
    assert "account_id" not in carrier
    assert all(f["category"] != "account" for f in carrier["fields"].values())
    assert set(carrier["record"]) <= {"to", "from", "body", "num_segments"}
    audit = decode_object(by_topic["privacy.audit.v1"].value)
    assert "/account_sid" in audit["pointers_withheld"] and "/to" in audit["pointers_sent"]
    assert "+14155550100" not in by_topic["privacy.audit.v1"].value.decode()


def test_secret_never_leaves_in_clear(processor):
    res = _process(processor, ACCOUNT, topic="cpaas.accounts.v1")
    assert res.envelope["fields"]["/auth_token"]["secret"] is True
    for out in res.outputs:
        assert b"tok-9f8e7d6c5b4a" not in (out.value or b"")
    assert res.envelope["record"]["auth_token"].startswith("[secret:hmac-sha256:k0:")


def test_inbound_message_not_shared_with_carrier(processor):
    res = _process(processor, MESSAGE_WEBHOOK)
    assert "privacy.carrier.v1" not in [o.topic for o in res.outputs]


def test_account_records_do_not_reach_anonymise_or_carrier(processor):
    topics = [o.topic for o in _process(processor, ACCOUNT, topic="cpaas.accounts.v1").outputs]
    assert topics == ["privacy.retention.usage.v1", "privacy.retention.account.v1"]


def test_deleted_account_only_reaches_anonymisation(processor):
    rec = SourceRecord("cpaas.messages.v1", 0, 1, None, encode(MESSAGE_WEBHOOK))
    res = processor.process_batch([rec], deleted_accounts={AC})[0]
    assert [o.topic for o in res.outputs] == ["privacy.anonymise.v1"]


@pytest.mark.parametrize("signal", [{"status": "closed"}, {"action": "deleted"}])
def test_account_deletion_event(processor, signal):
    res = _process(processor, {"sid": AC, **signal}, topic="cpaas.accounts.v1")
    assert res.outcome == "deletion"
    assert [(o.topic, o.key, o.value is None) for o in res.outputs] == [
        ("privacy.deletions.v1", AC.encode(), False), ("privacy.retention.account.v1", AC.encode(), True),
        ("privacy.audit.v1", AC.encode(), False)]  # the legal hold (issue 7)


def test_tombstones(processor):
    acc = SourceRecord("cpaas.accounts.v1", 0, 3, AC.encode(), None)
    msg = SourceRecord("cpaas.messages.v1", 0, 4, b"k", None)
    res_acc, res_msg = processor.process_batch([acc, msg])
    assert res_acc.outcome == "deletion"
    assert [(o.topic, o.value is None) for o in res_acc.outputs] == [
        ("privacy.deletions.v1", False), ("privacy.retention.account.v1", True),
        ("privacy.audit.v1", False)]  # the legal hold (issue 7)
    assert decode_object(res_acc.outputs[0].value)["signal"] == "tombstone"
    assert (res_msg.outcome, res_msg.outputs) == ("tombstone_skipped", [])


def test_bad_records_dead_lettered_in_place(processor):
    good = encode(MESSAGE_REST)
    recs = [SourceRecord("cpaas.messages.v1", 2, i, b"k%d" % i, v, 1000 + i)
            for i, v in enumerate([good, b"not-json{", b"[]", b"\xff", good])]
    results = processor.process_batch(recs)
    assert [r.outcome for r in results] == ["classified", "deadletter", "deadletter", "deadletter", "classified"]
    dl = decode_object(results[1].outputs[0].value)
    assert dl["error"]["kind"] == "invalid_json"
    assert dl["source"] == {"topic": "cpaas.messages.v1", "partition": 2, "offset": 1,
                            "key_base64": "azE=", "timestamp": 1001}
    assert dl["raw_base64"] == "bm90LWpzb257"


def test_output_over_producer_limit_is_dead_lettered(processor):
    big = dict(MESSAGE_REST, blob="x" * 1_500_000)  # ~1.5 MB, over the 1 MiB default
    res = _process(processor, big)
    dls = [o for o in res.outputs if o.topic == "privacy.deadletter.v1"]
    assert dls, "an oversized output must become a dead letter"
    dl = decode_object(dls[0].value)
    assert dl["error"]["kind"] == "output_too_large"
    assert dl["raw_omitted"] is True and dl["raw_base64"] is None and dl["raw_size"] > 1_000_000
    assert dl["source"]["offset"] == 7
    assert all(len(o.value or b"") < processor.max_bytes for o in res.outputs)
