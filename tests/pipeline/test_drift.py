"""Drift: usage fields that start carrying personal data (issue 5)."""

from __future__ import annotations

import logging

import pytest

from pipeline.codec import encode
from pipeline.drift import DriftMonitor, pii_kinds, resolve
from pipeline.policy import load_policy
from pipeline.policy.model import DriftSpec
from pipeline.processing import Processor
from pipeline.records import SourceRecord
from pipeline.settings import Settings

SM = "SM" + "fedcba9876543210" * 2


@pytest.mark.parametrize(
    "value, skip, kinds",
    [
        ("ana.lopez@example.com", None, ["email"]),
        ("failed for ana.lopez@example.com today", None, ["email"]),
        ("sip:1001@pbx.example.com", None, []),
        ("sofia/internal/1001@pbx.example.com", None, []),
        ("+14155550100", None, ["phone"]),
        ("+14155550100", "PHONE_NUMBER", []),
        ("call +1 415 555 0100 now", None, ["phone"]),
        ("2026-03-01 10:00:00", None, []),
        ("203.0.113.9", None, []),
        ("-0.00750", None, []),
        ("Unreachable destination handset", None, []),
        ("delivered", None, []),
        (12345678901, None, []),
        (None, None, []),
    ],
)
def test_pii_kinds(value, skip, kinds):
    assert pii_kinds(value, ("email", "phone"), skip) == kinds


def test_person_check_is_opt_in():
    assert pii_kinds("Grace Haddad", ("email", "phone")) == []
    assert pii_kinds("Grace Haddad", ("person",)) == ["person"]
    assert pii_kinds("No Answer", ("person",)) == []


def test_window_threshold_and_recovery(caplog):
    mon = DriftMonitor(DriftSpec(window=10, threshold=0.2, min_samples=5))
    flags = [mon.observe("usage-log-fields", "queued", "/status") for _ in range(5)]
    assert not any(flags)
    with caplog.at_level(logging.WARNING, logger="privacy_pipeline.drift"):
        flags = [mon.observe("usage-log-fields", "ana@example.com", "/error_message") for _ in range(2)]
    # 1 of 6 (0.17) is under the threshold; 2 of 7 (0.29) is over
    assert flags == [False, True]
    assert "usage-log-fields" in caplog.text and "/error_message" in caplog.text
    assert "ana@example.com" not in caplog.text
    assert mon.status()["usage-log-fields"]["drifting"] is True
    for _ in range(10):
        mon.observe("usage-log-fields", "queued", "/status")
    assert mon.status()["usage-log-fields"] == {"samples": 10, "pii": 0, "share": 0.0, "drifting": False}


def test_windows_are_per_rule_and_exemptions_apply():
    mon = DriftMonitor(DriftSpec(window=4, threshold=0.0, min_samples=1, checks=["email", "person"],
                                 exempt={"geo": ["person"]}))
    assert mon.observe("geo", "San Francisco") is False
    assert mon.observe("tags", "Grace Haddad") is True
    assert mon.status()["geo"]["pii"] == 0


def test_masked_pointer_in_log(caplog):
    mon = DriftMonitor(DriftSpec(window=2, threshold=0.0, min_samples=1))
    with caplog.at_level(logging.WARNING, logger="privacy_pipeline.drift"):
        mon.observe("tags", "ana@example.com", "/tags/+14155550100")
    assert "/tags/*" in caplog.text and "+14155550100" not in caplog.text


def test_check_envelope_samples_and_skips_declared_entities():
    policy = load_policy()
    mon = DriftMonitor(DriftSpec(window=10, threshold=0.0, min_samples=1, sample_every=2),
                       {"message-endpoints": "PHONE_NUMBER"})
    env = {"record": {"to": "+14155550100", "error_message": "bad address ana@example.com"},
           "fields": {"/to": {"category": "usage", "source": "rule", "rule": "message-endpoints"},
                      "/error_message": {"category": "usage", "source": "rule", "rule": "usage-log-fields"}}}
    assert mon.check_envelope(env) == {}          # first envelope not sampled
    assert dict(mon.check_envelope(env)) == {"usage-log-fields": 1}
    assert DriftMonitor.from_policy(policy).spec == policy.drift


def test_resolve():
    rec = {"a": [{"b~/c": 1}], "x": None}
    assert resolve(rec, "/a/0/b~0~1c") == 1
    assert resolve(rec, "/a/5") is None
    assert resolve(rec, "/x/y") is None


def test_processor_records_drift_in_stats():
    policy = load_policy()
    policy = policy.model_copy(update={"drift": DriftSpec(window=20, threshold=0.1, min_samples=3, sample_every=1)})
    proc = Processor(policy, Settings(secret_hash_key="k", pseudonym_key="p"), detector=None)
    recs = [SourceRecord("cpaas.messages.v1", 0, i, b"k", encode(
        {"sid": SM, "body": "hello there friend", "status": "failed", "error_message": f"user{i}@example.com rejected"}))
        for i in range(5)]
    results = proc.process_batch(recs)
    drift = [r.stats.drift.get("usage-log-fields", 0) for r in results]
    # two usage-log-fields observations per record (status, error_message): drifting from the 2nd
    assert drift == [0, 1, 1, 1, 1]
