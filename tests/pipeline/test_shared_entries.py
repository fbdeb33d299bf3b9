"""Shared field entries of planned envelopes (pipeline.plans.SHARED_ENTRIES): the planned
path builds the same envelopes as the generic path, entries that hold entities, secrets or
scans are the envelope's own, and nothing in the pipeline changes a shared entry."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest

from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import encode
from pipeline.policy import load_policy
from pipeline.processing import Processor
from pipeline.records import SourceRecord
from pipeline.settings import Settings

AC = "AC" + "0123456789abcdef" * 2
CA = "CA" + "00112233445566778899aabbccddeeff"
SM = "SM" + "00112233445566778899aabbccddeeff"


def _call(**extra):
    rec = {"sid": CA, "account_sid": AC, "from": "+14155550199", "to": "+14155550100",
           "from_formatted": "(415) 555-0199", "direction": "outbound-api", "status": "completed",
           "duration": "15", "uri": f"/2010-04-01/Accounts/{AC}/Calls/{CA}.json",
           "subresource_uris": {"recordings": f"/2010-04-01/Accounts/{AC}/Calls/{CA}/Recordings.json"},
           "metadata": {"campaign": {"name": "spring", "owner_email": "ada@example.com"}, "tags": ["vip", "b"]}}
    rec.update(extra)
    return rec


def _account(**extra):
    rec = {"sid": AC, "owner_account_sid": AC, "friendly_name": "Ada's account", "status": "active",
           "type": "Full", "auth_token": "68d7b79d6bd1ace221096efca19d4413",
           "date_created": "Sun, 26 Jan 2025 09:00:00 +0000"}
    rec.update(extra)
    return rec


#: (family, record): flat and nested records, declared entities present and absent, secrets by
#: name and by value, unknown fields decided by value, deletion and consent markers, text to scan
CASES = [
    ("call", _call()),
    ("call", _call(to="queued", from_formatted="n/a")),                       # no declared span found
    ("call", _call(status="Bearer abcdefgh12345678")),                         # credential in a value
    ("call", _call(uri="https://user:pass@example.com/x")),                    # URL with a password
    ("call", _call(custom_field="ada@example.com", other_note="hello there friend")),  # unknown fields
    ("call", _call(caller_name="Ada Lovelace", forwarded_from="+14155550111")),
    ("call", _call(metadata={"campaign": {"name": "ada@example.com"}, "tags": []})),   # strong value
    ("call", {"sid": CA, "nested": {"deep": {"deeper": {"to": "+14155550100"}}}, "list": [{"a": 1}, [2, 3]]}),
    ("account", _account()),
    ("account", _account(status="closed", action="deleted")),                  # deletion marker
    ("account", _account(consent={"marketing": True, "analytics": False})),    # consent flags
    ("account", _account(api_key="sk_live_abcdefghijklmnop", credentials={"user": "u", "password": "p"})),
    ("message", {"sid": SM, "account_sid": AC, "from": "+14155550199", "to": "+14155550100",
                 "body": "Call Ada at +14155550123", "direction": "outbound-api", "status": "sent"}),
    ("auto", _call()),
]


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _clf(policy, size):
    return Classifier(policy, None, secret_key=b"k", secret_key_id="s0", plan_cache_size=size,
                      clock=lambda: datetime(2026, 1, 1))


def _classify(clf, family, record):
    return clf.classify_batch_planned([ClassifyInput(copy.deepcopy(record), family, encode(record))])[0]


@pytest.mark.parametrize("family, record", CASES)
def test_planned_envelope_equals_generic(policy, family, record):
    planned = _clf(policy, 4096)
    _classify(planned, family, record)  # plans the shape
    env, layout = _classify(planned, family, record)
    generic, _ = _classify(_clf(policy, 0), family, record)
    assert env == generic
    assert list(env["fields"]) == list(generic["fields"])  # same order too


@pytest.mark.parametrize("family, record", CASES)
def test_entries_with_content_are_the_envelopes_own(policy, family, record):
    clf = _clf(policy, 4096)
    env1, layout = _classify(clf, family, record)
    env2, _ = _classify(clf, family, record)
    if layout is None:
        pytest.skip("classified by the generic path")
    plan = layout.plan
    base = plan.base_fields
    spans = {id(e) for e in plan.span_entries.values()}
    scanned = {p for p, d in zip(plan.shape.ptrs, layout.decisions) if d.scan}
    for ptr, entry in env2["fields"].items():
        if entry.get("secret") or ptr in scanned:
            # holds (or gets, from the detector) per-envelope data: never shared
            assert entry is not env1["fields"][ptr] and entry is not base[ptr] and id(entry) not in spans
        elif entry is base[ptr]:
            assert entry == {"category": entry["category"], "source": entry["source"],
                             "rule": entry["rule"], "entities": []}
        elif id(entry) in spans:  # one declared span, shared by the envelopes with that span
            assert plan.span_entries[(ptr, (entry["entities"][0]["start"], entry["entities"][0]["end"]))] is entry
            assert entry is env1["fields"][ptr]
            assert [e["recognizer"] for e in entry["entities"]] == ["rule"]
        else:  # the generic path's entries (a value may hold a credential): the envelope's own
            assert entry is not env1["fields"][ptr]
    assert env1["fields"] is not env2["fields"]


def _records(family_topic):
    out = []
    for n, (family, record) in enumerate(CASES):
        topic = family_topic.get(family, "cpaas.calls.v1")
        out.append(SourceRecord(topic, 0, n, AC.encode(), encode(record)))
    return out


def test_pipeline_never_mutates_shared_entries(policy):
    settings = Settings(secret_hash_key="k", pseudonym_key="p", detector_processes=1)
    proc = Processor(policy, settings, None)
    topics = {f: t for t, f in settings.topic_names.input_families().items()}
    records = _records(topics)
    proc.process_batch(records)  # plans every shape
    clf = proc.classifier
    plans = [plan for shape in clf.shapes._data.values() for plan in shape.plans.values()]
    assert plans
    before = [copy.deepcopy(plan.base_fields) for plan in plans]
    ids = [{p: id(e) for p, e in plan.base_fields.items()} for plan in plans]
    # every consumer of envelopes: routing (redaction, consents, deletions, sealing), stats,
    # drift, anonymisation of the routed envelopes
    results = proc.process_batch(records, consents={AC: {"marketing": True}},
                                 data_keys={AC: {}})
    proc.process_batch(records, deleted_accounts={AC})
    anon_in = [SourceRecord(o.topic, 0, 0, o.key, o.value) for r in results for o in r.outputs
               if o.topic == settings.topic_names.anonymise]
    assert anon_in
    proc.anonymise_batch(anon_in)
    for r in results:
        if r.envelope is not None:
            proc.anonymiser.anonymise_envelope(r.envelope)
            proc.router.redacted(r.envelope)
    assert [copy.deepcopy(plan.base_fields) for plan in plans] == before
    assert [{p: id(e) for p, e in plan.base_fields.items()} for plan in plans] == ids


def _generic(proc: Processor) -> Processor:
    """``proc`` with a classifier that plans nothing (the generic path, the reference)."""
    old = proc.classifier
    proc.classifier = Classifier(proc.policy, None, secret_key=b"k", secret_key_id=proc.settings.secret_hash_key_id,
                                 schema_check=old.schema_check, clock=old.clock, plan_cache_size=0)
    return proc


def _view(results):
    return [(r.outcome, [(o.topic, o.key, o.value, o.headers) for o in r.outputs], r.envelope,
             None if r.stats is None else (dict(r.stats.fields), dict(r.stats.entities), r.stats.routes))
            for r in results]


@pytest.mark.parametrize("spans", [1, 3, 40])  # past SPAN_ENTRIES_PER_PLAN: entries of their own
def test_routed_bytes_equal_generic_with_many_spans(policy, spans):
    from pipeline.plans import SPAN_ENTRIES_PER_PLAN

    settings = Settings(secret_hash_key="k", pseudonym_key="p", detector_processes=1)
    clock = lambda: datetime(2026, 1, 1)  # noqa: E731
    planned = Processor(policy, settings, None)
    planned.classifier.clock = clock
    generic = _generic(Processor(policy, settings, None))
    generic.classifier.clock = clock
    topics = {f: t for t, f in settings.topic_names.input_families().items()}
    records = []
    for n in range(spans):
        pad = " " * (n % 45)  # a new span per padding: (n, n + 12)
        records.append(_call(to=pad + "+14155550100", caller_name="A" * (n + 2)))
    records += [record for _family, record in CASES]
    batch = [SourceRecord(topics["call"], 0, n, AC.encode(), encode(r)) for n, r in enumerate(records)]
    for _ in range(2):  # the second time through the kept entries and fragments
        assert _view(planned.process_batch(batch)) == _view(generic.process_batch(batch))
    plans = [p for shape in planned.classifier.shapes._data.values() for p in shape.plans.values()]
    assert all(len(p.span_entries) <= SPAN_ENTRIES_PER_PLAN for p in plans)


@pytest.mark.parametrize("family, record", CASES)
def test_entity_view_only_for_shared_entries(policy, family, record):
    clf = _clf(policy, 4096)
    _classify(clf, family, record)
    env, layout = _classify(clf, family, record)
    if layout is None:
        pytest.skip("classified by the generic path")
    view = layout.entity_view(env["fields"])
    entries = layout.entity_entries(env["fields"])
    shared = all(e is layout.plan.base_fields[p] or e in layout.plan.span_entries.values()
                 for p, e in zip(layout.entity_ptrs, entries))
    assert (view is not None) == shared
    expected: dict = {}
    for entry in entries:
        for e in entry["entities"]:
            expected[e["type"]] = expected.get(e["type"], 0) + 1
    if view is not None:
        assert view.counts == expected
        assert layout.entity_view(env["fields"]) is view  # kept
    # an entry of its own (as the detector or the generic path makes) never gets the view
    if layout.entity_ptrs:
        own = dict(env["fields"])
        ptr = layout.entity_ptrs[0]
        own[ptr] = {**own[ptr], "entities": [{"type": "X", "start": 0, "end": 1, "score": 0.5,
                                               "recognizer": "test"}]}
        assert layout.entity_view(own) is None


class _Span:
    def __init__(self, text: str):
        self.text = text

    def to_json(self) -> dict:
        return {"type": "PERSON", "start": 0, "end": min(3, len(self.text)), "score": 0.9, "recognizer": "fake"}


class _FakeDetector:
    """A detector that finds a PERSON at the start of every text it is given."""

    def analyze_batch(self, texts):
        return [[_Span(t)] for t in texts]


def test_detector_spans_never_reach_shared_entries(policy):
    settings = Settings(secret_hash_key="k", pseudonym_key="p", detector_processes=1)
    proc = Processor(policy, settings, _FakeDetector())
    generic = _generic(Processor(policy, settings, _FakeDetector()))
    generic.classifier.detector = _FakeDetector()
    topics = {f: t for t, f in settings.topic_names.input_families().items()}
    records = _records(topics)
    proc.process_batch(records)
    plans = [p for shape in proc.classifier.shapes._data.values() for p in shape.plans.values()]
    before = [copy.deepcopy((p.base_fields, p.span_entries)) for p in plans]
    clock = lambda: datetime(2026, 1, 1)  # noqa: E731
    proc.classifier.clock = generic.classifier.clock = clock
    for _ in range(2):
        results = proc.process_batch(records)
        assert _view(results) == _view(generic.process_batch(records))
    assert any(e["recognizer"] == "fake" for r in results if r.envelope
               for f in r.envelope["fields"].values() for e in f["entities"])
    assert [copy.deepcopy((p.base_fields, p.span_entries)) for p in plans] == before


@pytest.mark.parametrize("n", [2, 50])
def test_record_stats_of_one_layout_share_counts_that_stay_correct(n):
    """Planned records of one layout share the layout's ``fields`` counter and
    ``unknown_pointers``; summing them into metrics reads them only, so every record's counts
    stay what the layout says and the metric totals are ``n`` times one record's."""
    import json

    from prometheus_client import CollectorRegistry

    from pipeline.metrics import PipelineMetrics
    from pipeline.policy import load_policy
    from pipeline.processing import Processor
    from pipeline.records import SourceRecord
    from pipeline.settings import Settings

    proc = Processor(load_policy(), Settings(secret_hash_key="k", pseudonym_key="p"), detector=None)
    recs = [SourceRecord("cpaas.calls.v1", 0, i, None, json.dumps(
        {"sid": f"CA{i:032x}", "from": "+14155550100", "to": "+14155550101", "duration": i,
         "zz_mystery": i}).encode()) for i in range(n)]
    results = proc.process_batch(recs)
    first = results[0].stats
    assert all(r.stats.fields is first.fields for r in results)
    assert all(r.stats.unknown_pointers is first.unknown_pointers for r in results)
    before = (dict(first.fields), list(first.unknown_pointers), dict(first.entities))
    metrics = PipelineMetrics.from_processor(proc, CollectorRegistry())
    metrics.observe(results, 0.01)
    metrics.observe(results, 0.01)
    assert (dict(first.fields), list(first.unknown_pointers), dict(first.entities)) == before
    text = metrics.render().decode()
    usage = sum(n for (cat, _src), n in first.fields.items() if cat == "usage")
    total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("privacy_fields_total{") and 'category="usage"' in line)
    assert total == 2 * n * usage
