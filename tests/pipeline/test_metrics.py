"""pipeline/metrics.py: names and labels per DESIGN.md, a private registry, label values from code."""

from __future__ import annotations

from collections import Counter

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
