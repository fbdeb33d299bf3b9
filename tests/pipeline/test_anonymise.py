"""Anonymisation: each operator's exact output, overlapping spans, code-point offsets,
pseudonym scopes, key rotation, envelopes, the anonymise agent's batch and the offline
``anonymise`` / ``deanonymise`` logic."""

from __future__ import annotations

import io
import json
import re

import pytest
import yaml

from pipeline.anonymise import (
    Anonymiser,
    Pseudonymiser,
    ReidentificationError,
    SivCipher,
    mask,
    truncate_ip,
)
from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import decode_object, encode
from pipeline.errors import ConfigError, PolicyError
from pipeline.offline_anonymise import anonymise_stream, deanonymise_stream
from pipeline.policy import default_policy_path, parse_policy
from pipeline.policy.model import Policy
from pipeline.records import SourceRecord
from pipeline.settings import Settings

AC = "AC" + "0123456789abcdef" * 2
AC2 = "AC" + "fedcba9876543210" * 2
SM = "SM" + "fedcba9876543210" * 2
PKEY, MKEY = b"test-pseudonym-key", b"test-master-key"
PHONE_TEXT = "Call +1 415 555 0142 now"
PHONE = [{"type": "PHONE_NUMBER", "start": 5, "end": 20, "score": 0.9}]
PHONE_PS = "<PHONE_NUMBER:ps:k1:b2b8560ecbce2ad3>"  # key b"test-pseudonym-key", scope (AC1, analytics)
PHONE_ENC = "<PHONE_NUMBER:enc:m1:V5_mv-xyuK5YYFhk01nCKeMq_k2pE0lJmhfVllZRAw>"  # key b"test-master-key"


def _policy_data() -> dict:
    return yaml.safe_load(default_policy_path().read_text())


def policy_with(entity_ops: dict | None = None, **anonymisation) -> Policy:
    data = _policy_data()
    if entity_ops:
        data["anonymisation"]["entity_operators"].update(entity_ops)
    data["anonymisation"].update(anonymisation)
    return Policy.model_validate(data)


def anonymiser(policy: Policy | None = None, **kw) -> Anonymiser:
    return Anonymiser(policy or policy_with(), Pseudonymiser(PKEY, "k1"), cipher=SivCipher(MKEY, "m1"), **kw)


@pytest.fixture(scope="module")
def default_anon() -> Anonymiser:
    return anonymiser()


# -- each operator, exact output -------------------------------------------------------------
@pytest.mark.parametrize(
    "op, text, entities, expected",
    [
        ({"operator": "replace"}, PHONE_TEXT, PHONE, "Call <PHONE_NUMBER> now"),
        ({"operator": "redact"}, PHONE_TEXT, PHONE, "Call  now"),
        ({"operator": "mask", "keep_last": 4}, PHONE_TEXT, PHONE, "Call +* *** *** 0142 now"),
        ({"operator": "mask", "keep_last": 0, "masking_char": "#"}, PHONE_TEXT, PHONE, "Call +# ### ### #### now"),
        ({"operator": "mask", "keep_last": 99}, "pin 1234", [{"type": "PHONE_NUMBER", "start": 4, "end": 8}], "pin **34"),
        ({"operator": "pseudonymise", "purpose": "analytics"}, PHONE_TEXT, PHONE, f"Call {PHONE_PS} now"),
        ({"operator": "encrypt"}, PHONE_TEXT, PHONE, f"Call {PHONE_ENC} now"),
        ({"operator": "keep"}, PHONE_TEXT, PHONE, PHONE_TEXT),
        ({"operator": "truncate_ip"}, "from 203.0.113.77 ok", [{"type": "PHONE_NUMBER", "start": 5, "end": 17}],
         "from 203.0.113.0/24 ok"),
    ],
)
def test_operator_on_a_span(op, text, entities, expected):
    anon = anonymiser(policy_with({"PHONE_NUMBER": op}))
    assert anon.anonymise_text(text, entities, "AC1") == expected


@pytest.mark.parametrize(
    "value, expected",
    [("203.0.113.7", "203.0.113.0/24"), ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
     ("::ffff:10.1.2.3", "10.1.2.0/24"), (" 198.51.100.200 ", "198.51.100.0/24"), ("not-an-ip", "<IP_ADDRESS>")],
)
def test_truncate_ip(value, expected):
    assert truncate_ip(value) == expected


@pytest.mark.parametrize(
    "value, keep, expected",
    [("5500-0000-0000-0004", 4, "****-****-****-0004"), ("ana@example.com", 3, "***@*******.com"),
     ("1234", 4, "**34"), ("", 4, ""), ("ab", 0, "**")],
)
def test_mask_keeps_shape_and_never_more_than_half(value, keep, expected):
    assert mask(value, keep) == expected


# -- overlapping and nested entities ---------------------------------------------------------
def _e(typ, start, end, score=0.8):
    return {"type": typ, "start": start, "end": end, "score": score}


CARD_DOMAIN = "pay 5500-0000-0000-0004.io today"


@pytest.mark.parametrize(
    "text, entities, expected",
    [
        # a card running into a domain: one placeholder for the whole overlap
        (CARD_DOMAIN, [_e("CREDIT_CARD", 4, 23), _e("URL", 19, 26)], "pay <CREDIT_CARD> today"),
        # nested: the container and the contained, same operator strength -> the longer
        ("at Maria Lopez Street 5", [_e("LOCATION", 3, 23), _e("PERSON", 3, 14)], "at <LOCATION>"),
        # same span, two types: the more concealing operator (replace > pseudonymise)
        ("+14155550100", [_e("PHONE_NUMBER", 0, 12), _e("US_SSN", 0, 12)], "<US_SSN>"),
        # touching spans stay separate
        ("Ana+14155550100", [_e("PERSON", 0, 3), _e("PHONE_NUMBER", 3, 15)],
         "<PERSON><PHONE_NUMBER:ps:k1:f1a38c13c9cef371>"),
        # same type separated by a space: not merged, each number its own pseudonym
        ("+14155550100 +14155550199", [_e("PHONE_NUMBER", 0, 12), _e("PHONE_NUMBER", 13, 25)],
         "<PHONE_NUMBER:ps:k1:f1a38c13c9cef371> <PHONE_NUMBER:ps:k1:b9e66aeed9ab3353>"),
        # a kept id overlapping a phone number: the kept rest of the id stays around the pseudonym
        ("ref SM14155550100", [_e("CPAAS_SID", 4, 17), _e("PHONE_NUMBER", 6, 17)],
         "ref SM<PHONE_NUMBER:ps:k1:f1a38c13c9cef371>"),
        # three-way chain of overlaps -> one placeholder
        ("abcdefghij", [_e("PERSON", 0, 4), _e("LOCATION", 3, 7), _e("PERSON", 6, 10)], "<PERSON>"),
        # offsets past the end are clamped, empty and malformed spans ignored
        ("hi Bob", [_e("PERSON", 3, 99), _e("PERSON", 2, 2), {"type": "PERSON"}], "hi <PERSON>"),
    ],
)
def test_overlapping_entities_give_clean_output(default_anon, text, entities, expected):
    out = default_anon.anonymise_text(text, entities, "AC1")
    assert out == expected
    # no nested or broken placeholders
    assert not re.search(r"<[^<>]*<|>[^<>]*>", out.replace("><", "> <"))


def test_overlap_operator_receives_exactly_its_entity_text():
    """Whatever overlaps it, the card operator gets the card number and nothing else."""
    seen = []
    anon = anonymiser(policy_with({"CREDIT_CARD": {"operator": "mask", "keep_last": 4},
                                   "URL": {"operator": "mask", "keep_last": 4}}))
    real = anon.apply

    def spy(op, text, entity, account_id):
        seen.append((entity, text))
        return real(op, text, entity, account_id)

    anon.apply = spy
    out = anon.anonymise_text(CARD_DOMAIN, [_e("CREDIT_CARD", 4, 23), _e("URL", 19, 26)], "AC1")
    assert seen == [("CREDIT_CARD", "5500-0000-0000-0004")]
    assert out == "pay ****-****-****-0004 today"


def test_emoji_before_an_entity_never_shifts_the_mask():
    text = "👋🏽🇵🇹 ligue +351 912 345 678 já"
    start = text.index("+351")
    ents = [_e("PHONE_NUMBER", start, start + len("+351 912 345 678"))]
    anon = anonymiser(policy_with({"PHONE_NUMBER": {"operator": "mask", "keep_last": 3}}))
    assert anon.anonymise_text(text, ents, "AC1") == "👋🏽🇵🇹 ligue +*** *** *** 678 já"


def test_emoji_offsets_through_the_real_detector(processor):
    body = "😀😀 call me on +1 415 555 0142 🙏"
    env = _process(processor, {"sid": SM, "account_sid": AC, "direction": "inbound", "body": body}).envelope
    out = processor.anonymiser.anonymise_envelope(env)["record"]["body"]
    token = processor.anonymiser.pseudonymise("+1 415 555 0142", entity="PHONE_NUMBER", account_id=AC,
                                              purpose="analytics")
    assert out == f"😀😀 call me on {token} 🙏"


def test_card_running_into_a_domain_through_the_real_detector(processor):
    env = _process(processor, {"sid": SM, "account_sid": AC, "direction": "inbound",
                               "body": "card 5500-0000-0000-0004.io thanks"}).envelope
    out = processor.anonymiser.anonymise_envelope(env)["record"]["body"]
    assert "5500" not in out and "0004" not in out
    assert out.startswith("card <CREDIT_CARD>") and out.count("<") == 1


# -- pseudonyms: determinism within a scope, separation across scopes --------------------------
def test_pseudonym_same_scope_same_value(default_anon):
    ps = default_anon.pseudonymise
    a = ps("+14155550142", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    assert a == ps("+14155550142", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    # the formatted number in a body joins the structured /to value
    assert a == ps("+1 (415) 555-0142", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    assert re.fullmatch(r"<PHONE_NUMBER:ps:k1:[0-9a-f]{16}>", a)


@pytest.mark.parametrize(
    "other",
    [{"account_id": AC2, "purpose": "analytics"}, {"account_id": AC, "purpose": "fraud"},
     {"account_id": None, "purpose": "analytics"}],
)
def test_pseudonym_differs_across_scopes(default_anon, other):
    ps = default_anon.pseudonymise
    base = ps("+14155550142", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    assert base != ps("+14155550142", entity="PHONE_NUMBER", **other)


def test_pseudonym_key_rotation_keeps_old_ids_checkable():
    old = Pseudonymiser(b"old-key", "k1")
    token = old("ana@example.com", entity="EMAIL_ADDRESS", account_id=AC, purpose="analytics")
    new = Pseudonymiser(b"new-key", "k2", {"k1": b"old-key"})
    fresh = new("ana@example.com", entity="EMAIL_ADDRESS", account_id=AC, purpose="analytics")
    assert fresh.startswith("<EMAIL_ADDRESS:ps:k2:") and fresh != token
    assert new.matches(token, "Ana@Example.com", account_id=AC, purpose="analytics")
    assert not new.matches(token, "bob@example.com", account_id=AC, purpose="analytics")
    assert not Pseudonymiser(b"new-key", "k2").matches(token, "ana@example.com", account_id=AC, purpose="analytics")
    assert "old-key" not in repr(new)


# -- AES-SIV: deterministic, reversible, key ids ---------------------------------------------
def test_siv_is_deterministic_and_reversible():
    c = SivCipher(MKEY, "m1")
    token = c.encrypt("+1 415 555 0142", entity="PHONE_NUMBER")
    assert token == PHONE_ENC == c.encrypt("+1 415 555 0142", entity="PHONE_NUMBER")
    assert c.decrypt(token) == "+1 415 555 0142"
    assert c.encrypt("+1 415 555 0142", entity="PERSON") != token  # entity type is associated data


def test_siv_key_rotation_old_key_id_still_readable():
    old = SivCipher(b"master-2024", "m1")
    token = old.encrypt("Maria Lopez", entity="PERSON")
    rotated = SivCipher(b"master-2025", "m2", {"m1": b"master-2024"})
    assert rotated.encrypt("Maria Lopez", entity="PERSON").startswith("<PERSON:enc:m2:")
    assert rotated.decrypt(token) == "Maria Lopez"
    with pytest.raises(ReidentificationError, match="no master key with id 'm1'"):
        SivCipher(b"master-2025", "m2").decrypt(token)
    with pytest.raises(ReidentificationError, match="failed authentication"):
        SivCipher(b"not-the-key", "m1").decrypt(token)
    tampered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(ReidentificationError):
        rotated.decrypt(tampered)


def test_encrypt_operator_without_master_key_fails_fast():
    with pytest.raises(ConfigError, match="MASTER_KEY"):
        Anonymiser(policy_with({"PERSON": {"operator": "encrypt"}}), Pseudonymiser(PKEY, "k1"))


@pytest.mark.parametrize("section, op", [("category_operators", "keep"), ("secret_operator", "mask"),
                                         ("account_id_operator", "truncate_ip")])
def test_policy_refuses_account_data_in_clear(section, op):
    text = default_policy_path().read_text()
    data = yaml.safe_load(text)
    if section == "category_operators":
        data["anonymisation"]["category_operators"]["account"] = {"operator": op}
    else:
        data["anonymisation"][section] = {"operator": op}
    with pytest.raises(PolicyError, match="account data never in clear"):
        parse_policy(yaml.safe_dump(data), "p.yaml")


# -- envelopes --------------------------------------------------------------------------------
MESSAGE = {
    "sid": SM, "account_sid": AC, "to": "+14155550100", "from": "whatsapp:+14155550199",
    "body": "hello", "direction": "outbound-api", "status": "sent", "num_segments": "1",
    "uri": f"/2010-04-01/Accounts/{AC}/Messages/{SM}.json", "ip_address": "203.0.113.7",
    "auth_token": "tok-9f8e7d6c5b4a", "meta": {"customer_email": "ana@example.com", "ok": True},
}


def _classify(record: dict, family: str = "message", policy: Policy | None = None) -> dict:
    clf = Classifier(policy or policy_with(), None, secret_key=b"k", secret_key_id="s0")
    return clf.classify_batch([ClassifyInput(record, family, encode(record))])[0]


def test_envelope_fields_anonymised_by_their_tags(default_anon):
    env = _classify(MESSAGE)
    out = default_anon.anonymise_envelope(env)
    rec, ps = out["record"], default_anon.pseudonymise
    assert rec["to"] == ps("+14155550100", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    assert rec["from"] == "whatsapp:" + ps("+14155550199", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    assert rec["ip_address"] == "203.0.113.0/24"
    assert rec["account_sid"] is None and rec["auth_token"] is None  # account field, secret
    assert rec["meta"]["customer_email"] is None and rec["meta"]["ok"] is True
    assert (rec["body"], rec["status"], rec["num_segments"], rec["sid"]) == ("hello", "sent", "1", SM)
    account_token = ps(AC, entity="ACCOUNT", account_id=None, purpose="account")
    assert out["account_id"] == account_token
    assert rec["uri"] == f"/2010-04-01/Accounts/{account_token}/Messages/{SM}.json"
    assert out["fields"]["/to"] == {"category": "usage", "source": "rule", "rule": "message-endpoints",
                                    "entities": ["PHONE_NUMBER"], "operators": ["pseudonymise"]}
    assert out["fields"]["/auth_token"]["operators"] == ["redact"] and out["fields"]["/auth_token"]["secret"]
    assert out["anonymised"] is True
    dumped = encode(out).decode()
    for clear in (AC, "tok-9f8e7d6c5b4a", "ana@example.com", "+14155550100", "203.0.113.7"):
        assert clear not in dumped
    assert env["record"]["to"] == "+14155550100"  # the input envelope is not modified


def test_account_category_replace_uses_the_declared_entity():
    anon = anonymiser(policy_with(category_operators={"account": {"operator": "replace"},
                                                      "usage": {"operator": "keep"},
                                                      "content": {"operator": "keep"}}))
    env = _classify({"sid": AC, "friendly_name": "Acme", "phone_number": "+14155550100", "street": "1 Main St",
                     "balance": 12}, "account")
    rec = anon.anonymise_envelope(env)["record"]
    assert (rec["friendly_name"], rec["phone_number"], rec["street"]) == ("<ACCOUNT>", "<PHONE_NUMBER>", "<LOCATION>")


def test_anonymise_batch_keys_by_account_pseudonym_and_dead_letters_non_envelopes(processor):
    env = _process(processor, MESSAGE).envelope
    good = SourceRecord("privacy.anonymise.v1", 0, 1, AC.encode(), encode(env))
    bad = SourceRecord("privacy.anonymise.v1", 0, 2, AC.encode(), b'{"not": "an envelope"}')
    res_good, res_bad = processor.anonymise_batch([good, bad])
    (out,) = res_good.outputs
    anon = decode_object(out.value)
    assert out.topic == "privacy.anonymised.v1" and out.key == anon["account_id"].encode()
    assert AC.encode() not in out.value and b"+14155550100" not in out.value
    headers = dict(out.headers)
    assert headers["event-id"] == SM.encode() and headers["privacy-entities"] == b"IP_ADDRESS,PHONE_NUMBER"
    assert res_bad.outcome == "deadletter" and res_bad.outputs[0].topic == "privacy.deadletter.v1"


# -- offline anonymise / deanonymise -------------------------------------------------------------
def _process(processor, record, topic="cpaas.messages.v1"):
    return processor.process_batch([SourceRecord(topic, 0, 7, b"k", encode(record))])[0]


def test_anonymise_stream_events_envelopes_and_errors_in_order(processor):
    env = _process(processor, dict(MESSAGE, body="mail ana@example.com")).envelope
    lines = [encode(MESSAGE), encode(env), b"not json {", encode({"sid": AC, "email": "x@example.org"})]
    out = io.BytesIO()
    counts = anonymise_stream(io.BytesIO(b"\n".join(lines) + b"\n"), out, processor=processor)
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(got) == 4
    assert [g.get("event_id") for g in got] == [SM, SM, None, got[3]["account_id"]]
    assert got[0]["anonymised"] and got[1]["record"]["body"].startswith("mail <EMAIL_ADDRESS:ps:k0:")
    assert got[2] == {"envelope_version": 1, "line": 3,
                      "error": {"kind": "invalid_json", "message": "line 3 is not an event (invalid_json)"}}
    assert got[3]["record"]["email"] is None and got[3]["account_id"] != AC
    assert counts["lines"] == 4 and counts["anonymised"] == 3 and counts["errors"] == 1
    assert counts["envelopes_in"] == 1 and counts["events_in"] == 3
    assert b"not json" not in out.getvalue() and AC.encode() not in out.getvalue()


@pytest.mark.parametrize("bad", [
    b"not json {\"to\": \"+15035550199\"",                      # invalid JSON
    b"\"ZEBRA +15035550199 canary.person@example.org\"",       # not an object
    b'{"a":' * 600 + b"1" + b"}" * 600,                          # too deep
    b"\xff\xfe ana@example.com +15035550199",                  # invalid UTF-8
])
def test_classify_dead_letters_piped_to_anonymise_become_error_lines(processor, bad):
    """``classify | anonymise``: a dead letter carries the original bytes (``raw_base64``);
    anonymise gives an error line for it (and for its own error lines fed back), never an
    "anonymised" record holding those bytes."""
    from pipeline.offline import classify_stream

    classified = io.BytesIO()
    classify_stream(io.BytesIO(encode(MESSAGE) + b"\n" + bad + b"\n"), classified, processor=processor)
    dead = json.loads(classified.getvalue().splitlines()[1])
    assert dead["raw_base64"] or dead["raw_omitted"]  # the dead letter does hold the bytes
    out = io.BytesIO()
    counts = anonymise_stream(io.BytesIO(classified.getvalue()), out, processor=processor)
    first, second = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["anonymised"] and first["event_id"] == SM
    assert second == {"envelope_version": 1, "line": 2, "error": {
        "kind": "error_record", "message": "line 2 is an error record (a dead letter or an error line), not an event"}}
    assert counts["errors"] == 1 and counts["anonymised"] == 1
    again = io.BytesIO()
    anonymise_stream(io.BytesIO(out.getvalue()), again, processor=processor)
    assert json.loads(again.getvalue().splitlines()[1])["error"]["kind"] == "error_record"
    for text in (b"15035550199", b"example.org", b"example.com", dead.get("raw_base64", "").encode() or b"\0"):
        assert text not in out.getvalue() and text not in again.getvalue()


def test_deanonymise_stream_reverses_encrypted_values_with_the_key():
    settings = Settings(master_key="test-master-key", master_key_id="m1")
    anon = anonymiser(policy_with({"PHONE_NUMBER": {"operator": "encrypt"}}))
    out1 = anon.anonymise_envelope(_classify(MESSAGE))
    assert out1["record"]["to"].startswith("<PHONE_NUMBER:enc:m1:")
    lines = encode(out1) + b"\n" + b"[1]\n"
    out = io.BytesIO()
    counts = deanonymise_stream(io.BytesIO(lines), out, settings=settings)
    back, err = [json.loads(line) for line in out.getvalue().splitlines()]
    assert back["record"]["to"] == "+14155550100" and back["record"]["from"] == "whatsapp:+14155550199"
    assert err["error"]["kind"] == "not_object"
    assert counts == {"lines": 2, "decrypted": 2, "errors": 1}
    # a rotated key: the old id still reads, an unknown id is left as is and counted
    rotated = Settings(master_key="new-key", master_key_id="m2", master_old_keys={"m1": "test-master-key"})
    out2 = io.BytesIO()
    assert deanonymise_stream(io.BytesIO(encode(out1) + b"\n"), out2, settings=rotated)["decrypted"] == 2
    out3 = io.BytesIO()
    counts3 = deanonymise_stream(io.BytesIO(encode(out1) + b"\n"), out3,
                                 settings=Settings(master_key="new-key", master_key_id="m2"))
    assert counts3["unknown_key"] == 2 and b"+14155550100" not in out3.getvalue()


def test_deanonymise_requires_the_key():
    with pytest.raises(ConfigError, match="PRIVACY_PIPELINE_MASTER_KEY"):
        deanonymise_stream(io.BytesIO(b"{}\n"), io.BytesIO(), settings=Settings())


def test_keys_that_are_data_are_pseudonymised(default_anon):
    rec = {"sid": SM, "account_sid": AC, "body": "ok", "direction": "inbound",
           "x_routing": {"+12125550144": {"note": "vip"}, "MediaUrl0": "1", "ana@example.com": "y"},
           "per_account": {AC: 3}, "list": [[1, 2]]}
    out = default_anon.anonymise_envelope(_classify(rec))
    ps = default_anon.pseudonymise
    phone_key = ps("+12125550144", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    email_key = ps("ana@example.com", entity="EMAIL_ADDRESS", account_id=AC, purpose="analytics")
    assert out["record"]["x_routing"] == {phone_key: {"note": "vip"}, "MediaUrl0": "1", email_key: "y"}
    assert out["record"]["per_account"] == {out["account_id"]: 3} and out["record"]["list"] == [[1, 2]]
    assert f"/x_routing/{phone_key}/note" in out["fields"] and "/list/0/1" in out["fields"]
    dumped = encode(out).decode()
    assert "+12125550144" not in dumped and "ana@example.com" not in dumped and AC not in dumped
