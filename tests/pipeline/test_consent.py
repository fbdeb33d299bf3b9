"""Consent flags and consent-gated purpose routes (issue 7)."""

from __future__ import annotations

import pytest
import yaml

from pipeline.codec import decode_object, encode
from pipeline.consent import ConsentReader, ConsentView, allows, decode_state, encode_state, merge
from pipeline.errors import PolicyError
from pipeline.policy import load_policy
from pipeline.policy.loader import default_policy_path
from pipeline.records import SourceRecord

AC = "AC" + "0123456789abcdef" * 2
MARKETING = "privacy.marketing.v1"
READER = ConsentReader(load_policy(None).consent)


@pytest.mark.parametrize("record, flags", [
    ({"consents": {"marketing": True}}, {"marketing": True}),
    ({"consents": {"Marketing": "granted", "voice-insights": "opt-out"}}, {"marketing": True, "voice_insights": False}),
    ({"Consent": {"marketing": "WITHDRAWN"}}, {"marketing": False}),
    ({"consents": {"marketing": {"granted": False, "at": "2026-11-30"}}}, {"marketing": False}),
    ({"data": {"consents": {"marketing": "yes"}}}, {"marketing": True}),
    ({"consents": {"marketing": "maybe", "sms": 1}}, {}),
    ({"consents": "all"}, {}),
    ({"marketing": True}, {}),
])
def test_flags_read_from_account_events(record, flags):
    assert READER.flags(record) == flags


def test_merge_allows_and_table_values():
    assert merge({"marketing": True, "a": True}, {"marketing": False}) == {"marketing": False, "a": True}
    assert allows({"marketing": True}, "marketing") and not allows({"marketing": False}, "marketing")
    assert not allows(None, "marketing") and not allows({}, "marketing")
    raw = encode_state({"marketing": True}, event_id="AC1", updated_at="2026-11-30T00:00:00Z")
    assert decode_state(raw) == {"marketing": True} and decode_state(None) == {} and decode_state(b"{") == {}
    assert ConsentView({AC: raw}).get(AC) == {"marketing": True} and ConsentView({}).get(AC) is None


def msg(sid: str) -> dict:
    return {"sid": sid, "account_sid": AC, "from": "+14155550100", "to": "+14155550199", "body": "hello there",
            "status": "delivered", "direction": "outbound-api", "num_segments": "2", "price": "-0.0079",
            "date_sent": "Mon, 30 Nov 2026 10:00:00 +0000", "auth_token": "tok-secret"}


def rec(topic: str, value: dict, offset: int) -> SourceRecord:
    return SourceRecord(topic, 0, offset, AC.encode(), encode(value))


def topics(res) -> list[str]:
    return [o.topic for o in res.outputs]


def test_purpose_route_only_with_consent_and_withdrawal_applies_to_later_records(processor):
    batch = [rec("cpaas.messages.v1", msg("SM" + "0" * 32), 1),                       # no consent yet
             rec("cpaas.accounts.v1", {"sid": AC, "consents": {"marketing": True}}, 2),
             rec("cpaas.messages.v1", msg("SM" + "1" * 32), 3),                       # granted
             rec("cpaas.accounts.v1", {"sid": AC, "consents": {"marketing": False}}, 4),
             rec("cpaas.messages.v1", msg("SM" + "2" * 32), 5)]                       # withdrawn
    before, grant, during, withdraw, after = processor.process_batch(batch)
    assert MARKETING not in topics(before) and MARKETING not in topics(after)
    assert (grant.consents, withdraw.consents) == ({"marketing": True}, {"marketing": False})
    out = next(o for o in during.outputs if o.topic == MARKETING)
    assert out.key == AC.encode()
    doc = decode_object(out.value)
    assert set(doc["fields"]) == {"/status", "/direction", "/num_segments", "/price", "/date_sent"}
    assert {f["category"] for f in doc["fields"].values()} == {"usage"}
    assert b"hello" not in out.value and b"tok-secret" not in out.value and b"+1415" not in out.value
    assert MARKETING in during.envelope["routes"]


def test_consent_state_passed_in_is_used_and_not_changed(processor):
    state = {AC: {"marketing": True}}
    res = processor.process_batch([rec("cpaas.messages.v1", msg("SM" + "3" * 32), 1)], consents=state)[0]
    assert MARKETING in topics(res) and res.consents is None
    res = processor.process_batch([rec("cpaas.accounts.v1", {"sid": AC, "consents": {"marketing": "revoked"}}, 2),
                                   rec("cpaas.messages.v1", msg("SM" + "4" * 32), 3)], consents=state)
    assert MARKETING not in topics(res[1]) and state == {AC: {"marketing": True}}


def test_deleted_accounts_never_reach_a_purpose_route(processor):
    res = processor.process_batch([rec("cpaas.messages.v1", msg("SM" + "5" * 32), 1)],
                                  consents={AC: {"marketing": True}}, deleted_accounts={AC})[0]
    assert topics(res) == ["privacy.anonymise.v1", "privacy.carrier.v1", "privacy.audit.v1"]


def test_purpose_route_is_sealed_in_the_worker(processor):
    res = processor.process_batch([rec("cpaas.messages.v1", msg("SM" + "6" * 32), 1)],
                                  consents={AC: {"marketing": True}}, data_keys={})[0]
    doc = decode_object(next(o for o in res.outputs if o.topic == MARKETING).value)
    assert "record" not in doc and "record_encrypted" in doc


def _policy_with(tmp_path, edit) -> str:
    data = yaml.safe_load(default_policy_path().read_text())
    edit(data)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("consent"), "consent section"),
    (lambda d: d["routes"]["purposes"][0].update(categories=["content"]), "categories"),
    (lambda d: d["routes"]["purposes"][0].update(families=["fax"]), "unknown family 'fax'"),
    (lambda d: d["routes"]["purposes"].append(dict(d["routes"]["purposes"][0])), "must be unique"),
    (lambda d: d["legal_hold"]["holds"][0].update(families=["fax"]), "unknown family 'fax'"),
])
def test_policy_validation(tmp_path, edit, message):
    with pytest.raises(PolicyError, match=message):
        load_policy(_policy_with(tmp_path, edit))
