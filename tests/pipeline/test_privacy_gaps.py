"""Kinds of privacy gap found by a fresh user trying to break the tool (one case per line).

- every leaf under a credential-named key is a secret, not only a leaf with that name;
- a value carrying a credential (URL userinfo, an HTTP auth scheme with a token) is a secret
  wherever it stands, except in content (a body still reaches the operator);
- a customer's name, email or address below a usage rule's subtree (``/to/**``) is account;
- text kept in fields nobody scanned (usage ``error_message``, notes, array items) is scanned
  before anonymisation;
- a number outside the double range is a dead letter (its output could not be valid JSON).
"""

from __future__ import annotations

import pytest

from pipeline.classify import ClassifyInput
from pipeline.codec import decode_object, encode
from pipeline.errors import DecodeError
from pipeline.records import SourceRecord

SM = "SM" + "7" * 32
AC = "AC" + "1" * 32


@pytest.mark.parametrize(
    "record, pointer, category, secret",
    [
        ({"credentials": {"username": "u", "pass": "p"}}, "/credentials/pass", "account", True),
        ({"credentials": {"username": "u", "pass": "p"}}, "/credentials/username", "account", True),
        ({"authorization": {"type": "Bearer", "value": "eyJTOKEN3"}}, "/authorization/value", "account", True),
        ({"token": {"id": "tid", "data": "SECRET5"}}, "/token/data", "account", True),
        ({"status_callback": "https://user:hunter2@example.com/cb"}, "/status_callback", "account", True),
        ({"error_message": "auth failed for Bearer eyJhbGciOiJIUzI1NiJ9x"}, "/error_message", "account", True),
        ({"body": "Basic subscription is 10 dollars"}, "/body", "content", False),
        ({"body": "my login is https://ann:pw123@example.com"}, "/body", "content", False),
        ({"direction": "outbound-api", "to": {"number": "+14155550100", "email": "to@example.com"}},
         "/to/email", "account", False),
        ({"direction": "outbound-api", "to": {"number": "+14155550100", "customer_name": "Jane Roe"}},
         "/to/customer_name", "account", False),
        ({"direction": "outbound-api", "to": {"number": "+14155550100"}}, "/to/number", "usage", False),
        ({"to": [{"phone_number": "+14155550100", "status": "queued"}]}, "/to/0/phone_number", "usage", False),
    ],
)
def test_field_kinds(processor, record, pointer, category, secret):
    env = processor.classifier.classify_batch([ClassifyInput(dict(record, sid=SM), "message")])[0]
    field = env["fields"][pointer]
    assert (field["category"], bool(field.get("secret"))) == (category, secret)


def test_carrier_never_gets_a_customer_email_under_to(processor):
    rec = {"sid": SM, "account_sid": AC, "direction": "outbound-api", "body": "hi",
           "to": {"number": "+14155550100", "email": "to@example.com", "customer_name": "Jane Roe"}}
    res = processor.process_batch([SourceRecord("cpaas.messages.v1", 0, 1, None, encode(rec))])[0]
    carrier = [decode_object(o.value) for o in res.outputs if o.topic == "privacy.carrier.v1"]
    assert carrier and carrier[0]["record"]["to"] == {"number": "+14155550100"}


@pytest.mark.parametrize(
    "field, value, gone",
    [
        ("error_message", "Delivery to john.doe@example.com failed from 198.51.100.23", "john.doe@example.com"),
        ("error_message", "card 4111111111111111 declined", "4111111111111111"),
        ("notes", "customer ssn 078-05-1120 on file", "078-05-1120"),
        ("customer_ip", "203.0.113.7", "203.0.113.7"),
        ("extra", ["4111 1111 1111 1111"], "4111 1111 1111 1111"),
    ],
)
def test_anonymised_feed_scans_unscanned_text(processor, field, value, gone):
    rec = {"sid": SM, "account_sid": AC, "body": "hello", "to": "+14155550100", field: value}
    res = processor.process_batch([SourceRecord("cpaas.messages.v1", 0, 1, None, encode(rec))])[0]
    anon_in = [o for o in res.outputs if o.topic == "privacy.anonymise.v1"]
    out = processor.anonymise_batch([SourceRecord("privacy.anonymise.v1", 0, 1, o.key, o.value) for o in anon_in])
    assert out and out[0].outcome == "classified"
    assert gone.encode() not in out[0].outputs[0].value


@pytest.mark.parametrize("raw", [b'{"p": 1e400}', b'{"n": 123456789012345678901234567890, "p": -1e999}'])
def test_number_out_of_double_range_is_a_dead_letter(raw):
    from pipeline.codec import decode_object as decode

    with pytest.raises(DecodeError) as err:
        decode(raw)
    assert err.value.kind == "number_out_of_range"


class _CountingDetector:
    """Wraps the real detector and records the texts it is asked to scan."""

    def __init__(self, inner):
        self.inner, self.texts = inner, []

    def analyze_batch(self, texts, **kw):
        self.texts.extend(texts)
        return self.inner.analyze_batch(texts, **kw)


def test_rescan_skips_scanned_fields_and_resource_paths(processor):
    rec = {"sid": SM, "account_sid": AC, "to": "+14155550100",
           "body": "Your verification code is 671894. Do not share it",
           "uri": f"/2010-04-01/Accounts/{AC}/Messages/{SM}.json",
           "error_message": "Delivery to john.doe@example.com failed"}
    env = processor.process_batch([SourceRecord("cpaas.messages.v1", 0, 1, None, encode(rec))])[0].envelope
    spy = _CountingDetector(processor.anonymiser.detector)
    anonymiser = processor.anonymiser
    anonymiser.detector = spy
    try:
        anonymiser.rescan(env)
    finally:
        anonymiser.detector = spy.inner
    assert spy.texts == ["Delivery to john.doe@example.com failed"]
