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
