"""Crypto-shredding (issue 7): data keys wrapped with rotatable master keys, a copy-on-write
view per batch, sealed retention routes, deletion tombstones and the legal hold."""

from __future__ import annotations

import pytest

from pipeline.codec import decode_object, encode
from pipeline.errors import ConfigError
from pipeline.records import SourceRecord
from pipeline.settings import Settings
from pipeline.shredding import DEV_MASTER_KEY_ID, KeyRing, KeyShreddedError, master_keys

AC = "AC" + "0123456789abcdef" * 2
AC2 = "AC" + "fedcba9876543210" * 2
M1 = {"m1": b"\x01" * 32}


def msg(account: str, sid: str, body: str = "meet at 5, call +14155550123") -> dict:
    return {"sid": sid, "account_sid": account, "from": "+14155550100", "to": "+14155550199",
            "body": body, "status": "delivered", "direction": "outbound-api", "num_segments": "1"}


def rec(topic: str, value: dict | None, offset: int, key: bytes | None = None) -> SourceRecord:
    return SourceRecord(topic, 0, offset, key, None if value is None else encode(value))


def ring_from(outputs, masters=M1, current="m1") -> KeyRing:
    """A fresh process's key state rebuilt from key-topic messages."""
    ring = KeyRing(dict(masters), current)
    for o in outputs:
        if o.topic == "privacy.keys.v1":
            ring.apply(o.key, o.value)
    return ring


# -- KeyRing -------------------------------------------------------------------------------------
def test_wrap_apply_encrypt_decrypt_round_trip():
    writer = KeyRing(dict(M1), "m1")
    blob, new = writer.encrypt(AC, b"hello")
    assert new is not None and new[0].startswith(AC.encode() + b"/")
    assert decode_object(new[1])["kid"] == "m1" and b"hello" not in new[1]
    reader = KeyRing(dict(M1), "m1")
    reader.apply(*new)
    assert reader.decrypt(AC, blob) == b"hello"
    blob2, again = writer.encrypt(AC, b"second")
    assert again is None and blob2["dek_id"] == blob["dek_id"]


def test_tombstone_shreds_and_other_accounts_stay_readable():
    writer = KeyRing(dict(M1), "m1")
    b1, k1 = writer.encrypt(AC, b"one")
    b2, k2 = writer.encrypt(AC2, b"two")
    reader = KeyRing(dict(M1), "m1")
    for key, value in (k1, k2, (k1[0], None)):
        reader.apply(key, value)
    with pytest.raises(KeyShreddedError):
        reader.decrypt(AC, b1)
    assert reader.decrypt(AC2, b2) == b"two"


def test_unknown_master_key_id_or_damaged_value_is_ignored():
    writer = KeyRing(dict(M1), "m1")
    blob, new = writer.encrypt(AC, b"x")
    other = KeyRing({"m2": b"\x02" * 32}, "m2")
    other.apply(*new)
    other.apply(new[0], b"{not json")
    with pytest.raises(KeyShreddedError):
        other.decrypt(AC, blob)


def test_rotation_old_master_readable_and_stale_keys_rewrapped():
    old = KeyRing(dict(M1), "m1")
    blob, new = old.encrypt(AC, b"before rotation")
    rotated = KeyRing({"m1": M1["m1"], "m2": b"\x02" * 32}, "m2")
    rotated.apply(*new)
    assert rotated.decrypt(AC, blob) == b"before rotation"
    stale = rotated.stale()
    assert [k for k, _ in stale] == [new[0]] and decode_object(stale[0][1])["kid"] == "m2"
    retired = KeyRing({"m2": b"\x02" * 32}, "m2")  # m1 removed after the re-wrap
    retired.apply(*stale[0])
    assert retired.decrypt(AC, blob) == b"before rotation"
    assert retired.stale() == []


def test_batch_view_never_changes_the_callers_state():
    base = KeyRing(dict(M1), "m1")
    _, new = base.encrypt(AC, b"x")
    state = {AC: dict(base.data_keys[AC])}
    view = base.for_batch(state)
    view.encrypt(AC2, b"y")
    assert view.forget(AC) == [new[0]]
    assert set(state) == {AC} and AC not in view.data_keys and AC2 in view.data_keys


def test_master_keys_from_settings_and_the_dev_default():
    masters, current, dev = master_keys(Settings())
    assert (current, dev, list(masters)) == (DEV_MASTER_KEY_ID, True, [DEV_MASTER_KEY_ID])
    s = Settings(master_key="new-secret", master_key_id="m2", master_old_keys={"m1": "old-secret"})
    masters, current, dev = master_keys(s)
    assert (current, dev, sorted(masters)) == ("m2", False, ["m1", "m2"])
    with pytest.raises(ConfigError):
        KeyRing({"m1": b"\x01" * 32}, "m9")


# -- Processor: sealing, deletion, legal hold ------------------------------------------------------
def test_worker_batch_seals_retention_and_emits_the_key_first(processor):
    results = processor.process_batch([rec("cpaas.messages.v1", msg(AC, "SM" + "1" * 32), 1)], data_keys={})
    outs = results[0].outputs
    assert outs[0].topic == "privacy.keys.v1" and outs[0].key.startswith(AC.encode() + b"/")
    sealed = {o.topic: decode_object(o.value) for o in outs
              if o.topic in ("privacy.retention.content.v1", "privacy.retention.usage.v1")}
    assert set(sealed) == {"privacy.retention.content.v1", "privacy.retention.usage.v1"}
    ring = ring_from(outs, processor.keyring.masters, processor.keyring.current)
    for doc in sealed.values():
        assert "record" not in doc and doc["record_encrypted"]["alg"] == "AES-256-GCM"
        assert set(doc["fields"]) and b"+14155550123" not in encode(doc)
    content = decode_object(ring.decrypt(AC, sealed["privacy.retention.content.v1"]["record_encrypted"]))
    assert content == {"body": "meet at 5, call +14155550123"}
    account = next(o for o in outs if o.topic == "privacy.retention.account.v1")
    assert "record" in decode_object(account.value)  # compacted and tombstoned on deletion instead
    anonymise = next(o for o in outs if o.topic == "privacy.anonymise.v1")
    assert "record" in decode_object(anonymise.value)  # transit, short retention


def test_offline_batches_are_not_sealed(processor):
    outs = processor.process_batch([rec("cpaas.messages.v1", msg(AC, "SM" + "2" * 32), 1)])[0].outputs
    assert "privacy.keys.v1" not in [o.topic for o in outs]
    assert "record" in decode_object(next(o for o in outs if o.topic == "privacy.retention.content.v1").value)


@pytest.mark.parametrize("deletion", [
    {"sid": AC, "status": "closed"},
    {"sid": AC, "action": "deleted"},
    None,  # tombstone keyed by the account id
])
def test_deletion_in_a_batch_shreds_known_keys_and_later_records(processor, deletion):
    first = processor.process_batch([rec("cpaas.messages.v1", msg(AC, "SM" + "3" * 32), 1),
                                     rec("cpaas.messages.v1", msg(AC2, "SM" + "4" * 32), 2)], data_keys={})
    ring = ring_from([o for r in first for o in r.outputs], processor.keyring.masters, processor.keyring.current)
    state = {a: dict(k) for a, k in ring.data_keys.items()}
    batch = [rec("cpaas.accounts.v1", deletion, 3, key=AC.encode()),
             rec("cpaas.messages.v1", msg(AC, "SM" + "5" * 32), 4)]
    dele, after = processor.process_batch(batch, data_keys=state)
    assert dele.outcome == "deletion" and dele.account_id == AC
    key_tombs = [o.key for o in dele.outputs if o.topic == "privacy.keys.v1"]
    assert key_tombs == [k for k in ring.wrapped_with if k.startswith(AC.encode())]
    assert all(o.value is None for o in dele.outputs if o.topic == "privacy.keys.v1")
    assert [o.topic for o in after.outputs] == ["privacy.anonymise.v1", "privacy.carrier.v1", "privacy.audit.v1"]
    assert set(state) == {AC, AC2}  # the caller's state is not changed
    for k in key_tombs:
        ring.apply(k, None)
    sealed = {r.account_id: decode_object(o.value)["record_encrypted"] for r in first for o in r.outputs
              if o.topic == "privacy.retention.content.v1"}
    with pytest.raises(KeyShreddedError):
        ring.decrypt(AC, sealed[AC])
    assert decode_object(ring.decrypt(AC2, sealed[AC2]))["body"].startswith("meet")


BILLING = {"sid": "UR" + "6" * 32, "account_sid": AC, "category": "sms", "description": "SMS messages",
           "usage": "120", "usage_unit": "segments", "price": "0.95", "price_unit": "usd",
           "start_date": "2026-11-01", "end_date": "2026-11-30"}


def test_legal_hold_is_kept_in_clear_and_audited_after_deletion(processor):
    res = processor.process_batch([rec("cpaas.accounts.v1", BILLING, 1, key=AC.encode())], data_keys={})[0]
    hold = [o for o in res.outputs if o.topic == "privacy.legalhold.v1"]
    assert len(hold) == 1 and dict(hold[0].headers)["privacy-legal-hold"] == b"billing-usage"
    doc = decode_object(hold[0].value)
    assert doc["legal_hold"] == "billing-usage" and doc["record"]["price"] == "0.95"  # not sealed
    usage = next(o for o in res.outputs if o.topic == "privacy.retention.usage.v1")
    assert "record_encrypted" in decode_object(usage.value)  # the ordinary copy is shredded
    # after the deletion the held fields still go to the hold topic, audited each time
    later = processor.process_batch([rec("cpaas.accounts.v1", BILLING, 2, key=AC.encode())],
                                    deleted_accounts={AC}, data_keys={})[0]
    assert [o.topic for o in later.outputs] == ["privacy.legalhold.v1", "privacy.audit.v1"]
    audit = decode_object(later.outputs[1].value)
    assert (audit["reason"], audit["legal_hold"]["name"]) == ("held_after_deletion", "billing-usage")
    assert "/price" in audit["pointers_held"] and "0.95" not in later.outputs[1].value.decode()


def test_deletion_audits_each_legal_hold(processor):
    res = processor.process_batch([rec("cpaas.accounts.v1", None, 1, key=AC.encode())], data_keys={})[0]
    audits = [decode_object(o.value) for o in res.outputs if o.topic == "privacy.audit.v1"]
    assert [(a["account_id"], a["reason"], a["legal_hold"]["name"], a["route"]) for a in audits] == [
        (AC, "account_deleted", "billing-usage", "privacy.legalhold.v1")]
    assert decode_object(res.outputs[0].value)["legal_holds"] == ["billing-usage"]


def test_topic_specs_include_the_key_hold_and_purpose_topics(processor):
    specs = {s.name: s.config for s in processor.topic_specs()}
    assert specs["privacy.keys.v1"] == {"retention.ms": "-1", "cleanup.policy": "compact"}
    assert specs["privacy.legalhold.v1"]["retention.ms"] == str(processor.policy.legal_hold.retention_ms)
    assert specs["privacy.marketing.v1"] == {"retention.ms": "34560000000", "cleanup.policy": "delete"}
