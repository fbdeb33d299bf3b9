"""An envelope whose ``fields`` do not list some leaves of its ``record`` (hand-made,
truncated or malformed) must not get them through the anonymiser untouched: each unlisted
string or number leaf is tagged as the policy's default category and rescanned like an
unknown field (``Anonymiser.with_unlisted``)."""

from __future__ import annotations

import json

import pytest

PHONE, EMAIL = "+14155559876", "zelda.quux@example.org"
USAGE = {"category": "usage", "source": "rule", "rule": "x", "entities": []}

# (record, fields the envelope lists, pointers the anonymiser must add to fields)
CASES = {
    "no fields at all": ({"body": f"call {PHONE} mail {EMAIL} today"}, {}, ["/body"]),
    "one of two listed": ({"from": PHONE, "email": EMAIL}, {"/from": USAGE}, ["/email"]),
    "nested object": ({"a": {"b": {"note": f"reach me at {EMAIL} please"}}}, {}, ["/a/b/note"]),
    "array items": ({"tags": ["x", f"text {PHONE} now"]}, {}, ["/tags/0", "/tags/1"]),
    "escaped key": ({"a/b": f"mail {EMAIL} now", "t~x": 3}, {}, ["/a~1b", "/t~0x"]),
    "numbers tagged, booleans nulls and empty containers not": (
        {"n": 14155559876, "f": 1.5, "ok": True, "none": None, "e": {}, "l": [], "s": f"to {EMAIL} x"},
        {}, ["/n", "/f", "/s"]),
    "everything listed: nothing added": ({"from": PHONE}, {"/from": USAGE}, []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_unlisted_leaves_are_tagged_and_anonymised(name, processor):
    record, fields, added = CASES[name]
    anon = processor.anonymiser
    env = {"envelope_version": 1, "event_id": "e1", "account_id": None, "fields": dict(fields),
           "record": record}
    out = anon.anonymise_envelope(env)
    batch = anon.anonymise_envelopes([env])[0]
    assert out == batch  # the batch path tags the same leaves
    assert sorted(out["fields"]) == sorted(list(fields) + added)
    for ptr in added:
        f = out["fields"][ptr]
        assert (f["category"], f["source"], f["rule"]) == (processor.policy.default.category, "default", "default")
    text = json.dumps(out["record"])
    assert PHONE not in text and EMAIL not in text
    assert env["fields"] == fields  # the input envelope is not changed


def test_classifier_envelopes_list_every_leaf(processor):
    """The guard adds nothing to what the classifier makes (its envelopes tag every leaf)."""
    from pipeline.records import SourceRecord

    raw = json.dumps({"sid": "SM1", "from": PHONE, "body": f"hi {EMAIL}", "meta": {"tags": ["a", 2]},
                      "price": -0.0075, "flag": False}).encode()
    env = processor.process_batch([SourceRecord("cpaas.messages.v1", 0, 0, None, raw)])[0].envelope
    assert processor.anonymiser.with_unlisted(env) is env


TEXT = f"Call Ada Lovelace at {PHONE} or {EMAIL}"
GOOD = {"category": "content", "source": "rule", "rule": "message-body", "entities": []}

# (fields entry of /x, or of /absent when the pointer is marked so; the problem named)
MALFORMED = {
    "empty entry": ({}, "has no known category"),
    "category only": ({"category": "content"}, "has no known source or no rule"),
    "unknown category": (dict(GOOD, category="secret"), "has no known category"),
    "unknown source": (dict(GOOD, source="guess"), "has no known source or no rule"),
    "rule not a string": (dict(GOOD, rule=None), "has no known source or no rule"),
    "entities not a list": (dict(GOOD, entities={}), "has no entities list"),
    "entity without type": (dict(GOOD, entities=[{"start": 0, "end": 4}]), "has an entity without a type"),
    "reversed span": (dict(GOOD, entities=[{"type": "PERSON", "start": 5, "end": 2}]),
                      "has an entity span outside its value"),
    "span past the value": (dict(GOOD, entities=[{"type": "PERSON", "start": 5, "end": 500}]),
                            "has an entity span outside its value"),
    "float offsets": (dict(GOOD, entities=[{"type": "PERSON", "start": 5.0, "end": 8}]),
                      "has an entity span outside its value"),
    "not an object": ("content", "is not an object"),
    "absent pointer, empty entry": ({}, "has no known category"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_fields_entry_makes_the_envelope_invalid(name, processor):
    """A malformed entry decided how its leaf, or the rescan of every other leaf, was
    treated (the phone number and the name passed through): the envelope is refused instead,
    with a reason that names a pointer, never content."""
    entry, problem = MALFORMED[name]
    ptr = "/absent" if name.startswith("absent") else "/x"
    env = {"envelope_version": 1, "event_id": "SM1", "account_id": "AC1", "fields": {ptr: entry},
           "record": {"x": TEXT}}
    anon = processor.anonymiser
    (out,) = anon.anonymise_values([json.dumps(env).encode()])
    assert out[0] == "dead" and out[1] == "invalid_envelope"
    assert out[2] == f"the fields entry of {ptr} {problem}"
    assert PHONE not in out[2] and "Ada" not in out[2]
    assert isinstance(anon.anonymise_envelopes([env])[0], Exception)


def test_offline_anonymise_gives_the_reason_of_an_invalid_envelope(processor):
    import io

    from pipeline.offline_anonymise import anonymise_stream

    bad = {"envelope_version": 1, "event_id": "SM1", "fields": {"/x": {"category": "content"}},
           "record": {"x": TEXT}}
    good = {"envelope_version": 1, "event_id": "SM2", "fields": {}, "record": {"x": TEXT}}
    out = io.BytesIO()
    anonymise_stream(io.BytesIO((json.dumps(bad) + "\n" + json.dumps(good) + "\n").encode()), out,
                     processor=processor)
    first, second = (json.loads(x) for x in out.getvalue().splitlines())
    assert first["error"]["kind"] == "invalid_envelope" and first["line"] == 1
    assert PHONE not in json.dumps(first) and PHONE not in json.dumps(second) and "Ada Lovelace" not in json.dumps(second)
