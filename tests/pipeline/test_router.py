"""Router: routes, keys and headers for message, call, account and deletion events; the
carrier projection per family and direction; regulatory address sharing; audit records;
Twilio-style redaction on the stored routes."""

from __future__ import annotations

import pytest
import yaml

from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import decode_object, encode
from pipeline.policy import default_policy_path
from pipeline.policy.model import Policy
from pipeline.records import SourceRecord
from pipeline.router import Router, obfuscate_number
from pipeline.topics import TopicNames

AC = "AC" + "0123456789abcdef" * 2
SM = "SM" + "fedcba9876543210" * 2
CA = "CA" + "00112233445566778899aabbccddeeff"
AD = "AD" + "00112233445566778899aabbccddeeff"

OUT_MSG = {
    "sid": SM, "account_sid": AC, "to": "+14155550100", "from": "+14155550199",
    "body": "Your code is 1234", "status": "queued", "direction": "outbound-api", "num_segments": "1",
    "encoding": "GSM-7", "price": "-0.0075", "messaging_service_sid": "MG" + "1" * 32,
    "media": [{"url": "https://media.example.com/Media/ME1.jpg", "content_type": "image/jpeg"}],
    "uri": f"/2010-04-01/Accounts/{AC}/Messages/{SM}.json",
}
IN_MSG = {"MessageSid": SM, "AccountSid": AC, "From": "+14155550100", "To": "+14155550199", "Body": "hi there"}
OUT_CALL = {
    "sid": CA, "account_sid": AC, "to": "+14155550100", "from": "+14155550199", "direction": "outbound-dial",
    "status": "ringing", "caller_name": "MARIA LOPEZ", "trunk_sid": "TK" + "2" * 32, "duration": "0",
}
ACCOUNT = {"sid": AC, "friendly_name": "Acme Corp", "status": "active", "auth_token": "tok-9f8e7d6c5b4a",
           "email": "ops@example.com"}
PROVISIONING = {
    "sid": AD, "account_sid": AC, "purpose": "number-provisioning", "customer_name": "Acme GmbH",
    "street": "Hauptstrasse 1", "city": "Berlin", "postal_code": "10115", "iso_country": "DE",
    "phone_number": "+4930123456", "carrier": "DTAG", "email": "ops@example.com", "auth_token": "tok-x",
}


def policy_from(update) -> Policy:
    data = yaml.safe_load(default_policy_path().read_text())
    update(data["routes"])
    return Policy.model_validate(data)


DEFAULT = policy_from(lambda r: None)


def route(record: dict, family: str, policy: Policy = DEFAULT, *, deleted: bool = False):
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    env = clf.classify_batch([ClassifyInput(record, family, encode(record))])[0]
    outs = Router(policy, TopicNames()).route(env, input_key=b"in-key", deleted=deleted)
    return env, outs


def by_topic(outs) -> dict:
    got: dict = {}
    for o in outs:
        got.setdefault(o.topic, []).append(o)
    return got


def value(out) -> dict:
    return decode_object(out.value)


# -- routes and keys ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record, family, topics",
    [
        (OUT_MSG, "message", ["privacy.retention.content.v1", "privacy.retention.usage.v1",
                              "privacy.retention.account.v1", "privacy.anonymise.v1", "privacy.carrier.v1",
                              "privacy.audit.v1"]),
        (IN_MSG, "message", ["privacy.retention.content.v1", "privacy.retention.usage.v1",
                             "privacy.retention.account.v1", "privacy.anonymise.v1"]),
        (OUT_CALL, "call", ["privacy.retention.usage.v1", "privacy.retention.account.v1", "privacy.anonymise.v1",
                            "privacy.carrier.v1", "privacy.audit.v1"]),
        (ACCOUNT, "account", ["privacy.retention.usage.v1", "privacy.retention.account.v1"]),
        (PROVISIONING, "account", ["privacy.retention.content.v1", "privacy.retention.usage.v1",
                                   "privacy.retention.account.v1",
                                   "privacy.carrier.address.v1", "privacy.audit.v1"]),
        ({"sid": AC, "status": "closed"}, "account", ["privacy.deletions.v1", "privacy.retention.account.v1",
                                                      "privacy.audit.v1"]),  # legal hold audit (issue 7)
    ],
)
def test_routes_in_produce_order(record, family, topics):
    env, outs = route(record, family)
    assert [o.topic for o in outs] == topics
    assert env["routes"] == list(dict.fromkeys(topics))


def test_keys_and_headers_for_an_outbound_message():
    _, outs = route(OUT_MSG, "message")
    t = by_topic(outs)
    for topic in ("privacy.retention.content.v1", "privacy.retention.usage.v1", "privacy.anonymise.v1",
                  "privacy.audit.v1"):
        assert t[topic][0].key == AC.encode()
    assert t["privacy.carrier.v1"][0].key == SM.encode()
    h = dict(t["privacy.retention.usage.v1"][0].headers)
    assert h == {"event-id": SM.encode(), "privacy-categories": b"usage", "privacy-entities": b"PHONE_NUMBER",
                 "privacy-policy": DEFAULT.version.encode(), "envelope-version": b"1"}
    h = dict(t["privacy.retention.content.v1"][0].headers)
    assert h["privacy-categories"] == b"content" and h["privacy-entities"] == b"URL"
    h = dict(t["privacy.carrier.v1"][0].headers)
    assert h["privacy-categories"] == b"content,usage" and h["event-id"] == SM.encode()
    content = value(t["privacy.retention.content.v1"][0])
    assert content["categories"] == ["content"] and set(content["fields"]) == {"/body", "/media/0/url"}


def test_input_key_when_account_unknown_and_deleted_account_skips_retention():
    _, outs = route({"sid": SM, "body": "hi", "direction": "inbound"}, "message")
    assert {o.key for o in outs} == {b"in-key"}
    _, outs = route(IN_MSG, "message", deleted=True)
    assert [o.topic for o in outs] == ["privacy.anonymise.v1"]


def test_deletion_event_and_tombstone():
    _, outs = route({"sid": AC, "action": "deleted"}, "account")
    (dele, tomb, hold_audit) = outs
    assert (dele.key, tomb.key, tomb.value) == (AC.encode(), AC.encode(), None)
    assert value(dele) == {"envelope_version": 1, "account_id": AC, "event_id": AC, "requested_at": value(dele)["requested_at"],
                           "signal": "event", "policy_version": DEFAULT.version, "legal_holds": ["billing-usage"]}
    assert (hold_audit.topic, value(hold_audit)["reason"]) == ("privacy.audit.v1", "account_deleted")
    assert dict(dele.headers)["event-id"] == AC.encode()


# -- carrier projection ------------------------------------------------------------------------
def test_outbound_message_projection():
    _, outs = route(OUT_MSG, "message")
    t = by_topic(outs)
    carrier = value(t["privacy.carrier.v1"][0])
    assert "account_id" not in carrier and carrier["schema_errors"] == []
    assert set(carrier["fields"]) == {"/to", "/from", "/body", "/num_segments", "/encoding", "/media/0/url",
                                      "/media/0/content_type"}
    assert carrier["record"] == {"to": "+14155550100", "from": "+14155550199", "body": "Your code is 1234",
                                 "num_segments": "1", "encoding": "GSM-7", "media": [
                                     {"url": "https://media.example.com/Media/ME1.jpg", "content_type": "image/jpeg"}]}
    raw = t["privacy.carrier.v1"][0].value
    assert AC.encode() not in raw


def test_outbound_call_projection_withholds_caller_name_and_account():
    _, outs = route(OUT_CALL, "call")
    t = by_topic(outs)
    carrier = value(t["privacy.carrier.v1"][0])
    assert set(carrier["record"]) == {"to", "from", "trunk_sid"}
    audit = value(t["privacy.audit.v1"][0])
    assert audit["route"] == "privacy.carrier.v1" and audit["event_id"] == CA
    assert set(audit["pointers_sent"]) == {"/to", "/from", "/trunk_sid"}
    assert {"/account_sid", "/caller_name", "/sid"} <= set(audit["pointers_withheld"])


def test_audit_holds_pointers_never_values():
    _, outs = route(dict(OUT_MSG, tags={"+14155550123": "vip"}), "message")
    audit_out = by_topic(outs)["privacy.audit.v1"][0]
    audit = value(audit_out)
    assert set(audit) == {"envelope_version", "event_id", "event_type", "account_id", "route", "policy_version",
                          "shared_at", "shared", "pointers_sent", "pointers_withheld"}
    assert audit["policy_version"] == DEFAULT.version and audit["shared"] is True
    assert "/tags/*" in audit["pointers_withheld"]
    for clear in (b"+14155550100", b"+14155550123", b"Your code", b"GSM-7"):
        assert clear not in audit_out.value


def test_allow_list_never_sends_account_or_secret_fields():
    def update(r):
        r["carrier"]["allow"]["message"] = {"outbound": ["/**"]}
    policy = policy_from(update)
    rec = dict(OUT_MSG, auth_token="tok-1", email="ops@example.com")
    _, outs = route(rec, "message", policy)
    carrier = value(by_topic(outs)["privacy.carrier.v1"][0])
    assert {"account_sid", "auth_token", "email", "uri"} & set(carrier["record"]) == set()  # /uri holds the AC
    assert carrier["record"]["status"] == "queued"
    assert all(f["category"] != "account" and not f.get("secret") for f in carrier["fields"].values())


def test_allow_list_per_direction():
    def update(r):
        r["carrier"]["allow"]["message"] = {"inbound": ["/**/to", "/**/from"]}
    policy = policy_from(update)
    _, outs = route(dict(IN_MSG, Direction="inbound"), "message", policy)
    assert set(value(by_topic(outs)["privacy.carrier.v1"][0])["record"]) == {"From", "To"}
    _, outs = route(OUT_MSG, "message", policy)
    assert "privacy.carrier.v1" not in by_topic(outs)
    # a plain list is the outbound allow-list
    legacy = policy_from(lambda r: r["carrier"]["allow"].update(message=["/**/to"]))
    _, outs = route(OUT_MSG, "message", legacy)
    assert value(by_topic(outs)["privacy.carrier.v1"][0])["record"] == {"to": "+14155550100"}


def test_carrier_key_and_event_id_never_carry_the_account_id():
    rec = {"sid": AC, "account_sid": AC, "to": "+14155550100", "direction": "outbound-api"}
    _, outs = route(rec, "message")
    out = by_topic(outs)["privacy.carrier.v1"][0]
    assert AC.encode() not in out.key and AC.encode() not in out.value
    assert value(out)["event_id"].startswith("sha256:")


def test_cloudevents_payload_projection():
    ce = {"specversion": "1.0", "type": "com.twilio.messaging.message.sent", "source": "/x", "id": "EZ" + "1" * 32,
          "data": {"messageSid": SM, "accountSid": AC, "to": "+14155550100", "from": "+14155550199",
                   "body": "hello", "direction": "outbound-api"}}
    _, outs = route(ce, "message")
    carrier = value(by_topic(outs)["privacy.carrier.v1"][0])
    assert carrier["record"] == {"data": {"to": "+14155550100", "from": "+14155550199", "body": "hello"}}


# -- regulatory address sharing -----------------------------------------------------------------
def test_carrier_address_only_for_marked_provisioning_events():
    _, outs = route(PROVISIONING, "account")
    t = by_topic(outs)
    (msg,) = t["privacy.carrier.address.v1"]
    shared = value(msg)
    assert msg.key == AD.encode() and "account_id" not in shared
    assert shared["record"] == {"customer_name": "Acme GmbH", "street": "Hauptstrasse 1", "city": "Berlin",
                                "postal_code": "10115", "iso_country": "DE", "phone_number": "+4930123456",
                                "carrier": "DTAG"}
    assert b"tok-x" not in msg.value and b"ops@example.com" not in msg.value and AC.encode() not in msg.value
    (audit_out,) = t["privacy.audit.v1"]
    audit = value(audit_out)
    assert audit_out.key == AC.encode()
    assert audit["route"] == "privacy.carrier.address.v1" and audit["account_id"] == AC
    assert {"/auth_token", "/email", "/account_sid"} <= set(audit["pointers_withheld"])
    assert b"Hauptstrasse" not in audit_out.value


@pytest.mark.parametrize(
    "record, family",
    [(dict(PROVISIONING, purpose="marketing"), "account"),
     ({k: v for k, v in PROVISIONING.items() if k != "purpose"}, "account"),
     (dict(PROVISIONING, direction="outbound-api"), "message"),
     (dict(PROVISIONING, status="closed"), "account")],
)
def test_no_address_sharing_without_the_marker(record, family):
    _, outs = route(record, family)
    assert "privacy.carrier.address.v1" not in [o.topic for o in outs]


def test_address_event_is_audited_even_when_nothing_is_shared():
    _, outs = route({"sid": AD, "account_sid": AC, "purpose": "regulatory", "auth_token": "t"}, "account")
    assert [o.topic for o in outs][-1] == "privacy.audit.v1"
    audit = value(outs[-1])
    assert audit["shared"] is False and audit["pointers_sent"] == []
    assert audit["route"] == "privacy.carrier.address.v1"


# -- redaction ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value_in, expected",
    [("+14155550100", "+1415555XXXX"), ("whatsapp:+14155550100", "whatsapp:+1415555XXXX"),
     ("+1 (415) 555-0100", "+1 (415) 555-XXXX"), ("12345", "XXXXX"), ("no digits", "no digits")],
)
def test_obfuscate_number(value_in, expected):
    assert obfuscate_number(value_in) == expected


def test_record_flags_redact_stored_routes_not_the_carrier():
    rec = dict(OUT_MSG, ContentRetention="discard", AddressRetention="obfuscate")
    _, outs = route(rec, "message")
    t = by_topic(outs)
    content = value(t["privacy.retention.content.v1"][0])
    assert content["record"]["body"] == "" and content["record"]["media"] == [{"url": ""}]
    assert content["fields"]["/body"]["redacted"] == "discard" and content["fields"]["/body"]["entities"] == []
    usage = value(t["privacy.retention.usage.v1"][0])
    assert usage["record"]["to"] == "+1415555XXXX" and usage["record"]["from"] == "+14155550199"
    account = value(t["privacy.retention.account.v1"][0])
    assert account["record"]["AddressRetention"] == "obfuscate"  # the flag itself is kept
    anon = value(t["privacy.anonymise.v1"][0])
    assert anon["record"]["body"] == "" and anon["record"]["to"] == "+1415555XXXX"
    carrier = value(t["privacy.carrier.v1"][0])
    assert carrier["record"]["body"] == "Your code is 1234" and carrier["record"]["to"] == "+14155550100"
    for o in t["privacy.retention.content.v1"] + t["privacy.retention.usage.v1"]:
        assert b"Your code" not in o.value and b"+14155550100" not in o.value


def test_inbound_address_obfuscation_hides_the_sender():
    _, outs = route(dict(IN_MSG, AddressRetention="obfuscate", Direction="inbound"), "message")
    usage = value(by_topic(outs)["privacy.retention.usage.v1"][0])
    assert usage["record"]["From"] == "+1415555XXXX" and usage["record"]["To"] == "+14155550199"
    # no direction: both ends are obfuscated (the safe side)
    _, outs = route(dict(IN_MSG, AddressRetention="obfuscate"), "message")
    usage = value(by_topic(outs)["privacy.retention.usage.v1"][0])
    assert usage["record"]["From"] == "+1415555XXXX" and usage["record"]["To"] == "+1415555XXXX"


def test_per_account_and_policy_default_redaction():
    per_account = policy_from(lambda r: r["redaction"]["accounts"].update({AC: {"content": "discard"}}))
    _, outs = route(OUT_MSG, "message", per_account)
    assert value(by_topic(outs)["privacy.retention.content.v1"][0])["record"]["body"] == ""
    _, outs = route(dict(OUT_MSG, account_sid="AC" + "9" * 32), "message", per_account)
    assert value(by_topic(outs)["privacy.retention.content.v1"][0])["record"]["body"] == "Your code is 1234"
    everyone = policy_from(lambda r: r["redaction"].update(address="obfuscate", apply_to=["retention"]))
    _, outs = route(OUT_MSG, "message", everyone)
    t = by_topic(outs)
    assert value(t["privacy.retention.usage.v1"][0])["record"]["to"] == "+1415555XXXX"
    assert value(t["privacy.anonymise.v1"][0])["record"]["to"] == "+14155550100"


def test_real_processor_routes_and_redacts(processor):
    rec = SourceRecord("cpaas.messages.v1", 0, 1, b"k", encode(dict(OUT_MSG, ContentRetention="discard")))
    res = processor.process_batch([rec])[0]
    t = by_topic(res.outputs)
    assert value(t["privacy.retention.content.v1"][0])["record"]["body"] == ""
    assert value(t["privacy.carrier.v1"][0])["record"]["body"] == "Your code is 1234"
