"""Structured-event fast paths give exactly what the generic paths give: routed messages
assembled from pre-encoded pieces (pipeline/router.py ``_Assembler``), schema checks compiled
per layout (schemas ``SchemaChecker.for_shape``), records with data-like keys (generic
path), the drift checks' lazy value kind."""

from __future__ import annotations

import pytest

from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import decode_object, encode
from pipeline.drift import pii_kinds
from pipeline.plans import data_like_signature, signature
from pipeline.policy import load_policy
from pipeline.router import Router
from pipeline.topics import TopicNames
from schemas import SchemaChecker
from tests.pipeline.test_plans import _samples

AC = "AC" + "0123456789abcdef" * 2
CA = "CA" + "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _call(**extra):
    rec = {"sid": CA, "account_sid": AC, "from": "+14155550199", "to": "+14155550100",
           "direction": "outbound-dial", "status": "completed", "duration": "15",
           "custom_data": {"crm_contact": "ops@example.com", "queue": "sales"}}
    rec.update(extra)
    return rec


def _deep(levels: int):
    node: dict = {"leaf": "x"}
    for _ in range(levels):
        node = {"n": node}
    return node


_ODD = [
    _call(),
    _call(direction="inbound"),
    _call(note="caf\u00e9 \u2603 \U0001f600 \"quoted\" \\ back"),
    _call(big=12345678901234567890123),                  # beyond 64 bits: encode's fallback
    _call(note="lone \ud83d surrogate"),                  # orjson refuses: the fallback
    _call(**{"k\ud83d": "surrogate in a key"}),
    _call(ratio=0.1, f=1e300, n=-0.0, t=True, z=None, e={}, a=[]),
    _call(nested=_deep(70)),                              # deeper than the assembly limit
    _call(to=f"sip:{AC}@example.com"),                    # a carrier field holding the account id
    _call(forwarded_from=4155550100),
]


@pytest.mark.parametrize("deleted", [False, True])
def test_assembled_messages_equal_encoded_dicts(policy, deleted):
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    router = Router(policy, TopicNames())
    items = [ClassifyInput(r, "call", b"raw", {"topic": "cpaas.calls.v1", "partition": 0, "offset": i})
             for i, r in enumerate(_ODD)]
    items += [ClassifyInput(rec, fam, encode(rec)) for fam, rec in _samples()]
    for _ in range(2):  # compiled on first use, then reused
        for env, layout in clf.classify_batch_planned(items):
            if layout is None:
                continue
            fast = router.route(env, input_key=b"k", deleted=deleted, consents={"marketing": True}, layout=layout)
            slow = router.route(env, input_key=b"k", deleted=deleted, consents={"marketing": True})
            assert fast == slow


def test_compiled_schema_check_equals_the_checker(policy):
    checker = SchemaChecker()
    records = [rec for _fam, rec in _samples()] + [
        {"CallSid": "CA1", "CallStatus": "nope", "duration": True, "price": "x", "account_sid": 7},
        {"CallSid": "CA" + "0" * 32, "CallStatus": "completed", "duration": "12", "price": "-0.5"},
        {"duration": None, "price": None, "CallStatus": 3},
    ]
    for family in ("message", "call", "account", "unknown"):
        for rec in records:
            assert checker.for_shape(family, rec)(rec) == checker(family, rec)
    small = SchemaChecker(max_errors=2)
    bad = records[-3]
    assert small.for_shape("call", bad)(bad) == small("call", bad)
    assert len(small("call", bad)) == 2


def test_schema_check_kept_per_layout_follows_values(policy):
    clf = Classifier(policy, None, schema_check=SchemaChecker())
    good = {"CallSid": "CA" + "0" * 32, "CallStatus": "completed", "duration": "12"}
    bad = {"CallSid": "CA1", "CallStatus": "nope", "duration": "x"}
    envs = clf.classify_batch([ClassifyInput(r, "call", encode(r)) for r in (good, bad, good)])
    assert envs[0]["schema_errors"] == [] == envs[2]["schema_errors"]
    assert [e["pointer"] for e in envs[1]["schema_errors"]] == ["/CallSid", "/CallStatus", "/duration"]


def test_data_like_keys_take_the_generic_path(policy):
    clf = Classifier(policy, None)
    rec = _call(x_routing={"+14155550123": {"note": "preferred agent", "weight": "3"}})
    assert data_like_signature(signature(rec)[0])
    assert not data_like_signature(signature(_call())[0])
    assert not data_like_signature(signature({})[0])
    _env, layout = clf.classify_batch_planned([ClassifyInput(rec, "call", encode(rec))])[0]
    assert layout is None and len(clf.shapes) == 0
    generic = Classifier(policy, None, plan_cache_size=0)
    generic.clock = clf.clock = lambda: __import__("datetime").datetime(2026, 1, 1)
    assert encode(clf.classify_batch([ClassifyInput(rec, "call", b"r")])) == \
        encode(generic.classify_batch([ClassifyInput(rec, "call", b"r")]))


@pytest.mark.parametrize("value, kinds", [
    ("%2B14155550100", ["phone"]),          # URL-encoded: decoded before the value kind
    ("+14155550100", ["phone"]),
    ("no digits at all", []),
    ("call \u0661\u0662\u0663 now", []),
    ("delivered", []),
])
def test_pii_kinds_phone_needs_a_digit_or_an_escape(value, kinds):
    assert pii_kinds(value, ("email", "phone")) == kinds


def test_decode_checks_utf8_only_beyond_ascii():
    assert decode_object(b'{"a": "caf\xc3\xa9"}') == {"a": "caf\u00e9"}
    with pytest.raises(Exception) as err:
        decode_object(b'{"a": "\xff"}')
    assert getattr(err.value, "kind", None) == "invalid_utf8"


def _pii_kinds_reference(value, checks, skip=None):
    """pii_kinds as first written (value kind always computed)."""
    from pipeline.drift import _EMAIL, _NOT_NAMES, _PERSON, _PHONE_IN_TEXT
    from pipeline.values import value_kind

    if not isinstance(value, str) or len(value) < 5:
        return []
    found = []
    kind = value_kind(value)[0] if len(value) <= 64 else "free_text"
    if "email" in checks and skip != "EMAIL_ADDRESS" and "@" in value and _EMAIL.search(value):
        found.append("email")
    if "phone" in checks and skip != "PHONE_NUMBER" and (
            kind == "phone" or (kind in ("free_text", "other") and _PHONE_IN_TEXT.search(value))):
        found.append("phone")
    if "person" in checks and skip != "PERSON" and len(value) <= 60 and _PERSON.match(value.strip()) \
            and not any(w in _NOT_NAMES for w in value.strip().lower().split()):
        found.append("person")
    return found


def test_pii_kinds_equal_the_reference():
    import random

    rng = random.Random(7)
    alphabet = "0123456789+-(). %2Babc@x:/\u0663 "
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    values += ["+1 415 555 0100", "(415) 555-0100", "tel:+14155550100", "%2B1%20415%20555%200100",
               "call me at +1 (415) 555-0100 " * 3, "Mon, 02 Mar 2026 09:01:02 +0000", "-0.05500", "515",
               "2026-03-02T09:01:02Z", "Grace Haddad", "203.0.113.9", "a" * 70 + " +14155550100"]
    for v in values:
        for checks in (("email", "phone", "person"), ("phone",)):
            for skip in (None, "PHONE_NUMBER"):
                assert pii_kinds(v, checks, skip) == _pii_kinds_reference(v, checks, skip), v


def test_output_message_helper_builds_the_same_frozen_message():
    import dataclasses

    from pipeline.records import OutputMessage, output_message

    fast = output_message("t", b"k", b"v", (("event-id", b"1"),))
    slow = OutputMessage("t", b"k", b"v", (("event-id", b"1"),))
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert type(fast) is OutputMessage
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.topic = "x"  # type: ignore[misc]
