"""Precompiled classification plans per record shape (pipeline/plans.py): value-dependent
results stay per record, a new shape gets a new plan, the cache is bounded, and the planned
path equals the generic one (classifier and router)."""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC
from pathlib import Path

import pytest

from pipeline import pointers
from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import decode_object, encode
from pipeline.plans import LRU, Exotic, compile_projection, project, signature
from pipeline.policy import load_policy
from pipeline.records import SourceRecord
from pipeline.router import Router
from pipeline.topics import TopicNames
from tests.bad_inputs import BAD_INPUTS

AC = "AC" + "0123456789abcdef" * 2
AC2 = "AC" + "fedcba9876543210" * 2
CA = "CA" + "00112233445566778899aabbccddeeff"
SHAPES = Path(__file__).resolve().parents[1] / "data" / "shapes"


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _clf(policy, size=4096):
    return Classifier(policy, None, secret_key=b"k", secret_key_id="s0", plan_cache_size=size,
                      clock=lambda: __import__("datetime").datetime(2026, 1, 1))


def _env(clf, record, family="call"):
    return clf.classify_batch([ClassifyInput(record, family, encode(record))])[0]


def _call(**extra):
    rec = {"sid": CA, "account_sid": AC, "from": "+14155550199", "to": "+14155550100",
           "direction": "outbound-dial", "status": "completed", "duration": "15"}
    rec.update(extra)
    return rec


# -- same shape, different values ----------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("/to", "+14155550100", [("PHONE_NUMBER", 0, 12)]),
        ("/to", "queued", []),                               # no digits: no declared entity
        ("/to", "(415) 555-0100", [("PHONE_NUMBER", 1, 14)]),
        ("/to", "ext 12", []),                               # fewer than three digits
        ("/from", "tel:+4930123456", [("PHONE_NUMBER", 4, 15)]),
    ],
)
def test_same_shape_different_values_gives_value_correct_entities(policy, field, value, expected):
    clf = _clf(policy)
    _env(clf, _call())  # warm the plan of the shape
    rec = _call(**{field[1:]: value})
    env = _env(clf, rec)
    got = [(e["type"], e["start"], e["end"]) for e in env["fields"][field]["entities"]]
    assert got == expected
    assert env == _env(_clf(policy, 0), rec)  # the generic path agrees
    assert len(clf.shapes) == 1


@pytest.mark.parametrize(
    "field, value, category, source, secret",
    [
        ("status", "Bearer abcdefgh12345678", "account", "detector", True),        # value-borne credential
        ("status", "https://user:pass@example.com/x", "account", "detector", True),
        ("status", "completed", "usage", "rule", False),
    ],
)
def test_value_borne_decisions_stay_per_record(policy, field, value, category, source, secret):
    clf = _clf(policy)
    _env(clf, _call())
    env = _env(clf, _call(**{field: value}))
    f = env["fields"]["/" + field]
    assert (f["category"], f["source"], bool(f.get("secret"))) == (category, source, secret)
    if secret:
        assert env["record"][field].startswith("[secret:")
    # and the next record of the shape is back to the rule
    assert _env(clf, _call())["fields"]["/status"]["category"] == "usage"


def test_unknown_field_is_decided_by_its_value_each_time(policy):
    clf = _clf(policy)
    a = _env(clf, _call(qqxv="ops@example.com"))["fields"]["/qqxv"]
    b = _env(clf, _call(qqxv="2026-01-01T00:00:00Z"))["fields"]["/qqxv"]
    assert (a["category"], a["rule"], [e["type"] for e in a["entities"]]) == ("account", "value:email", ["EMAIL_ADDRESS"])
    assert (b["category"], b["rule"], b["entities"]) == ("usage", "value:timestamp", [])
    assert len(clf.shapes) == 1


def test_ids_come_from_the_values(policy):
    clf = _clf(policy)
    envs = [_env(clf, _call(sid=CA[:-1] + str(i), account_sid=acct)) for i, acct in enumerate((AC, AC2, ""))]
    assert [e["event_id"] for e in envs] == [CA[:-1] + "0", CA[:-1] + "1", CA[:-1] + "2"]
    assert [e["account_id"] for e in envs] == [AC, AC2, None]  # "" is no account id


# -- shape changes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "other",
    [
        _call(extra_note="hello"),                      # an extra field
        _call(duration=15),                             # a type change (string -> number)
        _call(duration=None),                           # string -> null
        _call(to=["+14155550100"]),                     # scalar -> array
        {k: v for k, v in _call().items() if k != "status"},  # a field less
        dict(reversed(list(_call().items()))),          # another key order
    ],
)
def test_a_shape_change_gives_a_new_plan(policy, other):
    clf = _clf(policy)
    _env(clf, _call())
    env = _env(clf, other)
    assert len(clf.shapes) == 2
    assert list(env["fields"]) == [p for p, _n, _v in pointers.walk_leaves(other)]
    assert env == _env(_clf(policy, 0), other)


def test_family_is_part_of_the_plan(policy):
    clf = _clf(policy)
    rec = {"sid": CA, "account_sid": AC, "to": "+14155550100", "body": "hi"}
    for family in ("call", "message", "account", "auto"):
        assert _env(clf, rec, family) == _env(_clf(policy, 0), rec, family)
    assert len(clf.shapes) == 1


# -- bounded cache -------------------------------------------------------------------------------
def test_cache_is_bounded_and_lru(policy):
    clf = _clf(policy, size=4)
    for i in range(10):
        _env(clf, _call(**{f"extra_{chr(97 + i)}": "x"}))
    assert len(clf.shapes) == 4
    lru = LRU(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1          # "a" is now the most recent
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3
    assert len(LRU(0)) == 0


def test_layouts_are_bounded(policy):
    clf = _clf(policy)
    clf.layouts = LRU(8)
    kinds = ["ops@example.com", "2026-01-01", "+14155550100", "hello there my friend", "42", "true",
             "https://example.com/a.jpg", "10.0.0.1"]
    for a in kinds:
        for b in kinds:
            rec = _call(qqxa=a, qqxb=b)
            assert _env(clf, rec) == _env(_clf(policy, 0), rec)
    assert len(clf.shapes) == 1 and len(clf.layouts) == 8


def test_data_like_keys_are_not_cached(policy):
    clf = _clf(policy)
    for n in range(5):
        rec = _call(routing={f"+1415555{n:04d}": {"note": "preferred agent"}})
        assert _env(clf, rec) == _env(_clf(policy, 0), rec)
    assert len(clf.shapes) == 0


def test_exotic_containers_take_the_generic_path(policy):
    clf = _clf(policy)
    rec = _call(meta=OrderedDict(a="x"))
    with pytest.raises(Exotic):
        signature(rec)
    assert _env(clf, rec) == _env(_clf(policy, 0), rec)
    rec = {1: "x", "sid": CA}
    assert _env(clf, rec) == _env(_clf(policy, 0), rec)


# -- planned == generic, over every shape sample and the bad inputs ------------------------------
def _samples():
    out = []
    for path in sorted(SHAPES.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            item = json.loads(line)
            out.append((item.get("family", "auto"), item["record"]))
    for _name, raw, expected in BAD_INPUTS:
        if expected == "envelope" and raw is not None:
            out.append(("auto", decode_object(raw)))
    return out


def test_planned_envelopes_equal_the_generic_path(policy):
    planned, generic = _clf(policy), _clf(policy, 0)
    items = [ClassifyInput(rec, fam, encode(rec)) for fam, rec in _samples()]
    for _ in range(2):  # cold, then from the cache
        assert encode(planned.classify_batch(items)) == encode(generic.classify_batch(items))
    assert len(planned.shapes) > 10


@pytest.mark.parametrize("deleted", [False, True])
def test_compiled_routes_equal_the_generic_router(policy, deleted):
    clf = _clf(policy)
    router = Router(policy, TopicNames())
    items = [ClassifyInput(rec, fam, encode(rec)) for fam, rec in _samples()]
    items += [ClassifyInput(r, f, encode(r)) for f, r in [
        ("call", _call()), ("call", _call(direction="inbound")), ("account", {"sid": AC, "status": "closed"}),
        ("account", {"sid": "AD" + "1" * 32, "account_sid": AC, "purpose": "number-provisioning",
                     "street": "1 Main St", "uri": f"/Accounts/{AC}/x"}),
        ("message", {"sid": "SM" + "1" * 32, "account_sid": AC, "to": "+14155550100", "body": "x",
                     "direction": "outbound-api", "ContentRetention": "discard"}),
        ("call", _call(to=f"sip:{AC}@example.com")),  # a carrier field holding the account id
    ]]
    for _ in range(2):
        for env, layout in clf.classify_batch_planned(items):
            if layout is None:
                continue
            fast = router.route(env, input_key=b"k", deleted=deleted, consents={"marketing": True}, layout=layout)
            slow = router.route(env, input_key=b"k", deleted=deleted, consents={"marketing": True})
            assert fast == slow


def test_processor_outputs_do_not_depend_on_the_cache(processor):
    from datetime import datetime

    from pipeline.benchmark import structured_stream

    records = structured_stream(300, seed=5)
    records.append(SourceRecord("cpaas.calls.v1", 0, 1, b"k", encode(_call(status="Bearer abcdefgh12345678"))))
    clf = processor.classifier
    clock = clf.clock
    clf.clock = lambda: datetime(2026, 1, 1, tzinfo=UTC)
    try:
        first = processor.process_batch(records)
        again = processor.process_batch(records)  # every shape cached now
        clf.shapes.clear()
        clf._planned = False
        generic = processor.process_batch(records)
    finally:
        clf._planned = clf.shapes.maxsize > 0
        clf.clock = clock
    assert [r.outputs for r in first] == [r.outputs for r in again]
    assert [r.outputs for r in first] == [r.outputs for r in generic]
    assert [r.envelope for r in first] == [r.envelope for r in generic]


# -- building blocks -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record",
    [{}, {"a": 1}, {"a": {}, "b": [], "c": [1, {}, [], {"x": None}], "d": {"e": {"f": True}}},
     {"a": [[[]]]}, {"a/b": {"~c": [1, 2, {"d": "e"}]}}, _call(media=[{"url": "u"}, {"url": "v"}])],
)
def test_signature_and_projection_follow_walk_leaves_and_subset(record):
    _sig, vals = signature(record)
    leaves = list(pointers.walk_leaves(record))
    assert len(vals) == len(leaves) and all(a is b for a, (_p, _n, b) in zip(vals, leaves))
    ptrs = [p for p, _n, _v in leaves]
    paths = []
    from pipeline.classify import _leaf_paths

    _leaf_paths(record, "", (), (), [], [], paths)
    for sel in (list(range(len(ptrs))), list(range(0, len(ptrs), 2)), list(range(1, len(ptrs), 3)), []):
        program = compile_projection(paths, sel)
        assert encode(project(record, program)) == encode(pointers.subset(record, [ptrs[i] for i in sel]))


def test_signature_distinguishes_types_and_containers():
    keys = [signature(r)[0] for r in ({"a": 1}, {"a": "1"}, {"a": 1.0}, {"a": True}, {"a": None},
                                      {"a": [1]}, {"a": {"0": 1}}, {"a": {}}, {"a": []})]
    assert len(set(keys)) == len(keys)
