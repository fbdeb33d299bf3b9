"""pipeline/samples.py: deterministic, Twilio-shaped, invented values only."""

from __future__ import annotations

import json
import re
from collections import Counter

from pipeline.samples import (
    INPUT_TOPICS,
    deleted_accounts,
    generate,
    load_sms_bodies,
    read_jsonl,
)


def test_same_seed_same_events_different_seed_different_events():
    assert generate(200, seed=3) == generate(200, seed=3)
    assert generate(200, seed=3) != generate(200, seed=4)


def test_counts_families_kinds_and_bad_records():
    events = generate(1000, seed=1, bad=7)
    assert len(events) == 1007
    assert sum(e.bad for e in events) == 7
    fams = Counter(e.family for e in events if not e.bad)
    assert fams["message"] > fams["call"] > fams["account"] > 0
    kinds = Counter(e.kind for e in events)
    for kind in ("message_resource", "message_webhook", "message_status", "call_resource",
                 "call_webhook", "recording", "transcription", "account", "address", "account_closed"):
        assert kinds[kind] > 0, kind
    assert {e.topic for e in events} == set(INPUT_TOPICS.values())


def test_good_events_are_json_objects_with_ids_and_bad_ones_are_not():
    for e in generate(300, seed=2):
        if e.bad:
            try:
                obj = json.loads(e.value)
            except ValueError:
                continue
            assert not isinstance(obj, dict)
            continue
        obj = json.loads(e.value)
        assert e.event_id in (obj.get("sid"), obj.get("MessageSid"), obj.get("CallSid"))
        assert e.account_id and e.account_id.startswith("AC") and len(e.account_id) == 34
        assert e.key == e.account_id.encode()


def test_only_invented_contact_data():
    text = b"\n".join(e.value for e in generate(2000, seed=5) if e.value).decode("utf-8", "replace")
    for number in re.findall(r"\+1\d{10}", text):
        assert number[5:9] == "5550", number
    for email in re.findall(r"[\w.+-]+@[\w-]+\.[\w.]+", text):
        assert email.endswith(("@example.com", "@example.net")), email


def test_deletions_come_after_their_accounts_other_events():
    events = generate(1500, seed=9)
    gone = deleted_accounts(events)
    assert gone
    for acct in gone:
        idx = [i for i, e in enumerate(events) if e.account_id == acct]
        closing = [i for i in idx if events[i].deletes_account]
        assert closing == [max(idx)]


def test_unknown_nested_fields_appear():
    known = ("metadata", "custom_data", "x_routing")
    assert any(any(k in json.loads(e.value) for k in known) for e in generate(500, seed=1) if not e.bad)


def test_sms_bodies_are_used_when_the_file_exists(shared_data):
    path = shared_data / "sms_spam_collection.tsv"
    bodies = set(load_sms_bodies(path))
    assert len(bodies) > 5000
    events = generate(300, seed=1, sms_path=path)
    msg_bodies = [json.loads(e.value).get("body") or json.loads(e.value).get("Body")
                  for e in events if e.family == "message" and not e.bad]
    used = [b for b in msg_bodies if b]
    assert used and all(b in bodies for b in used)


def test_missing_sms_file_falls_back_to_generated_texts(tmp_path):
    assert load_sms_bodies(tmp_path / "absent.tsv") == []
    assert load_sms_bodies(None) == []
    assert generate(50, seed=1, sms_path=tmp_path / "absent.tsv") == generate(50, seed=1)


def test_read_jsonl_keeps_bad_lines_raw_and_skips_blank_ones(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"a":1}\r\n\n  \nnot json\n{"b":2}')
    assert list(read_jsonl(p)) == [b'{"a":1}', b"not json", b'{"b":2}']
