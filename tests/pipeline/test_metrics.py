"""pipeline/metrics.py: names and labels per DESIGN.md, a private registry, label values from code."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import PipelineMetrics
from pipeline.records import OutputMessage, ProcessResult, RecordStats, SourceRecord

SRC = SourceRecord("cpaas.messages.v1", 0, 1, b"k", b"{}")


def _samples(m: PipelineMetrics) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_observe_counts_every_design_metric():
    m = PipelineMetrics()
    stats = RecordStats(fields=Counter({("content", "rule"): 1, ("usage", "name"): 2}),
                        entities=Counter({"PHONE_NUMBER": 3}), unknown_fields=2,
                        unknown_pointers=["/x_routing/*"], drift=Counter({"message.status": 1}),
                        routes=["privacy.retention.content.v1", "privacy.anonymise.v1"])
    ok = ProcessResult(SRC, [], "classified", "message", "SM1", "AC1", stats)
    dead = ProcessResult(SRC, [OutputMessage("privacy.deadletter.v1", None, b"{}")], "deadletter",
                         stats=RecordStats(deadletter_reason="invalid_json", routes=["privacy.deadletter.v1"]))
    skipped = ProcessResult(SRC, [], "tombstone_skipped", "message")
    m.observe([ok, dead, skipped], 0.25)
    s = _samples(m)
    assert s[("privacy_events_total", (("event_type", "message"), ("route", "privacy.anonymise.v1")))] == 1
    assert s[("privacy_events_total", (("event_type", "unknown"), ("route", "privacy.deadletter.v1")))] == 1
    assert s[("privacy_events_total", (("event_type", "message"), ("route", "none")))] == 1
    assert s[("privacy_fields_total", (("category", "usage"), ("event_type", "message"), ("source", "name")))] == 2
    assert s[("privacy_entities_total", (("entity_type", "PHONE_NUMBER"),))] == 3
    assert s[("privacy_deadletter_total", (("reason", "invalid_json"),))] == 1
    assert s[("privacy_unknown_fields_total", (("event_type", "message"),))] == 2
    assert s[("privacy_drift_total", (("event_type", "message"), ("rule", "message.status")))] == 1
    assert s[("privacy_classify_seconds_count", ())] == 1
    assert s[("privacy_batch_size_sum", ())] == 3
    m.set_lag("cpaas.messages.v1", 2, 40)
    assert _samples(m)[("privacy_consumer_lag", (("partition", "2"), ("topic", "cpaas.messages.v1")))] == 40


@pytest.mark.parametrize("copies", [1, 2, 7, 128])
def test_observe_sums_a_batch_per_series(copies):
    """A batch's counts are summed before they reach the counters: the totals are those of
    counting record by record, over two batches too."""
    m = PipelineMetrics()
    stats = RecordStats(fields=Counter({("content", "rule"): 1, ("usage", "name"): 2}),
                        entities=Counter({"PHONE_NUMBER": 3, "PERSON": 1}), unknown_fields=2,
                        drift=Counter({"message.status": 1}),
                        routes=["privacy.retention.content.v1", "privacy.anonymise.v1"])
    ok = ProcessResult(SRC, [], "classified", "message", "SM1", "AC1", stats)
    call = ProcessResult(SRC, [], "classified", "call", "CA1", "AC1", RecordStats(
        fields=Counter({("usage", "rule"): 4}), routes=["privacy.retention.usage.v1"]))
    dead = ProcessResult(SRC, [OutputMessage("privacy.deadletter.v1", None, b"{}")], "deadletter",
                         stats=RecordStats(deadletter_reason="invalid_json", routes=["privacy.deadletter.v1"]))
    batch = [ok, call, dead] * copies
    m.observe(batch, 0.1)
    m.observe(batch, 0.1)
    n = 2 * copies
    s = _samples(m)
    assert s[("privacy_events_total", (("event_type", "message"), ("route", "privacy.anonymise.v1")))] == n
    assert s[("privacy_events_total", (("event_type", "call"), ("route", "privacy.retention.usage.v1")))] == n
    assert s[("privacy_fields_total", (("category", "usage"), ("event_type", "message"), ("source", "name")))] == 2 * n
    assert s[("privacy_fields_total", (("category", "usage"), ("event_type", "call"), ("source", "rule")))] == 4 * n
    assert s[("privacy_entities_total", (("entity_type", "PHONE_NUMBER"),))] == 3 * n
    assert s[("privacy_entities_total", (("entity_type", "PERSON"),))] == n
    assert s[("privacy_deadletter_total", (("reason", "invalid_json"),))] == n
    assert s[("privacy_unknown_fields_total", (("event_type", "message"),))] == 2 * n
    assert s[("privacy_drift_total", (("event_type", "message"), ("rule", "message.status")))] == n
    assert s[("privacy_outcomes_total", (("outcome", "classified"),))] == 2 * n
    assert s[("privacy_batch_size_sum", ())] == 3 * n


def test_anonymise_stage_counts_routes_only():
    m = PipelineMetrics()
    res = ProcessResult(SRC, [], "classified", "message", stats=RecordStats(
        fields=Counter({("content", "rule"): 1}), routes=["privacy.anonymised.v1"]))
    m.observe([res], 0.1, stage="anonymise")
    s = _samples(m)
    assert s[("privacy_events_total", (("event_type", "message"), ("route", "privacy.anonymised.v1")))] == 1
    assert not any(k[0] == "privacy_fields_total" for k in s)
    assert s.get(("privacy_classify_seconds_count", ()), 0) == 0


def test_registries_are_private():
    a, b = PipelineMetrics(), PipelineMetrics()
    a.observe([ProcessResult(SRC, [], "tombstone_skipped")], 0.01)
    assert _samples(a)[("privacy_outcomes_total", (("outcome", "tombstone_skipped"),))] == 1
    assert ("privacy_outcomes_total", (("outcome", "tombstone_skipped"),)) not in _samples(b)


def test_unknown_field_names_never_become_label_values():
    m = PipelineMetrics()
    stats = RecordStats(unknown_fields=1, unknown_pointers=["/+15555550123"], routes=["t"])
    m.observe([ProcessResult(SRC, [], "classified", "message", stats=stats)], 0.01)
    assert b"5555550123" not in m.render()


def test_label_values_are_bounded():
    """A bug that turned record content into a label could not create new series."""
    from pipeline.metrics import MAX_LABEL_VALUES

    m = PipelineMetrics(event_types=["message"], entity_types=["PHONE_NUMBER"], rules=["r1"],
                        routes=["out.v1"])
    stats = RecordStats(fields=Counter({("+15555550123", "weird"): 1}),
                        entities=Counter({"PHONE_NUMBER": 1, "jane@example.com": 2}),
                        drift=Counter({"r1": 1, "/to/+15555550123": 1}), routes=["out.v1", "+15555550199"],
                        deadletter_reason="kind from a record")
    m.observe([ProcessResult(SRC, [], "deadletter", "+15555550100", stats=stats)], 0.01)
    s = _samples(m)
    assert s[("privacy_events_total", (("event_type", "unknown"), ("route", "out.v1")))] == 1
    assert s[("privacy_events_total", (("event_type", "unknown"), ("route", "other")))] == 1
    assert s[("privacy_fields_total", (("category", "unknown"), ("event_type", "unknown"), ("source", "unknown")))] == 1
    assert s[("privacy_entities_total", (("entity_type", "other"),))] == 2
    assert s[("privacy_drift_total", (("event_type", "unknown"), ("rule", "other")))] == 1
    assert s[("privacy_deadletter_total", (("reason", "unknown"),))] == 1
    text = m.render()
    assert b"5555550" not in text and b"example.com" not in text and b"from a record" not in text
    # unconfigured sets admit a capped number of values
    free = PipelineMetrics(entity_types=None)
    for i in range(MAX_LABEL_VALUES + 10):
        free.observe([ProcessResult(SRC, [], "classified", "message",
                                    stats=RecordStats(entities=Counter({f"T{i}": 1}), routes=["x"]))], 0)
    ents = {k[1][0][1] for k in _samples(free) if k[0] == "privacy_entities_total"}
    assert len(ents) == MAX_LABEL_VALUES + 1 and "other" in ents


def test_label_sets_from_the_policy():
    from types import SimpleNamespace

    from pipeline.policy import load_policy
    from pipeline.topics import TopicNames

    policy = load_policy(None)
    names = TopicNames()
    proc = SimpleNamespace(policy=policy, input_topics=names.input_families(),
                           topic_specs=lambda: [SimpleNamespace(name=names.anonymise)])
    m = PipelineMetrics.from_processor(proc)
    assert m.labels["event_type"].allowed == set(policy.families)
    assert "usage-log-fields" in m.labels["rule"].allowed
    assert {"PHONE_NUMBER", "PERSON", "EMAIL_ADDRESS", "URL"} <= m.labels["entity_type"].allowed
    assert m.labels["route"].allowed == {names.anonymise, "none"}
    assert names.messages in m.labels["topic"].allowed


def test_every_deadletter_kind_in_the_code_is_a_known_reason():
    """Kinds written by the code (DecodeError kinds, ``_deadletter``/``_dead`` calls, ``kind =``)
    are all in DEADLETTER_REASONS, so none is counted as ``unknown``."""
    import re
    from pathlib import Path

    from pipeline.metrics import DEADLETTER_REASONS

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r'(?:DecodeError\(|_deadletter\(\w+, |_dead\(\w+, |build_deadletter\(\w+, |'
                         r'self\.kind = |internal_deadletter\(\w+, \w+, )"([a-z_]+)"')
    found = set()
    for path in [*(root / "pipeline").rglob("*.py"), *(root / "agents").rglob("*.py")]:
        found |= set(pattern.findall(path.read_text(encoding="utf-8")))
    assert {"invalid_json", "output_too_large", "processing_error"} <= found
    assert found <= DEADLETTER_REASONS, found - DEADLETTER_REASONS
