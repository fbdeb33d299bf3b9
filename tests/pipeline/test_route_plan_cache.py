"""Route plans cached per compiled layout (pipeline/router.py ``_RoutePlan``): for every
combination of the routing flags (deletion marker, account deleted, consents, carrier
direction, provisioning marker, account id in a shared field, sealing, account id present),
records of one layout routed through the cache give exactly the messages of the uncached
path (``Router.route(env, ..., layout=None)``), whatever plans earlier records left cached."""

from __future__ import annotations

import copy
import hashlib
import itertools

import pytest

from pipeline import router as router_module
from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import encode
from pipeline.policy import load_policy
from pipeline.router import Router
from pipeline.topics import TopicNames

AC = "AC" + "0123456789abcdef" * 2
SM = "SM" + "fedcba9876543210" * 2
AD = "AD" + "00112233445566778899aabbccddeeff"


def _message(direction: str, *, to: str = "+14155550100", account: bool = True, **extra) -> dict:
    rec = {"sid": SM, "to": to, "from": "+14155550199", "body": "Your code is 1234",
           "status": "queued", "direction": direction, "num_segments": "1", "price": "-0.0075"}
    if account:
        rec["account_sid"] = AC
    rec.update(extra)
    return rec


def _account(purpose: str, status: str, account: str = AC) -> dict:
    return {"sid": AD, "account_sid": account, "purpose": purpose, "status": status, "customer_name": "Acme GmbH",
            "street": "Hauptstrasse 1", "city": "Berlin", "postal_code": "10115", "iso_country": "DE",
            "phone_number": "+4930123456", "email": "ops@example.com", "auth_token": "tok-x"}


#: name -> (family, records of one shape whose values set different routing flags)
SHAPES = {
    "message direction": ("message", [_message(d) for d in ("outbound-api", "inbound", "trunking", "OUTBOUND-reply")]),
    "message account id shared": ("message", [_message("outbound-api", to=t) for t in
                                              ("+14155550100", f"sip:{AC}@example.com", "+14155550111")]),
    "message without account id": ("message", [_message(d, account=False) for d in ("outbound-api", "inbound")]),
    "message account id empty": ("message", [_message("outbound-api", account_sid=a) for a in (AC, "", AC)]),
    "message redaction flag": ("message", [_message("outbound-api", content_retention=v)
                                           for v in ("discard", "keep")]),
    "account provisioning and deletion": ("account", [_account(p, s, a) for p, s, a in itertools.product(
        ("number-provisioning", "none"), ("active", "closed"), (AC, ""))]),
}
DELETED = (False, True)
CONSENTS = (None, {}, {"marketing": True}, {"marketing": False}, {"marketing": "true"})
SEALING = (False, True)


def _seal(calls: list):
    """A deterministic stand-in for the processor's seal: replaces ``record`` (logged)."""
    def seal(msg: dict) -> None:
        blob = hashlib.sha256(encode(msg.pop("record"))).hexdigest()
        calls.append(blob)
        msg["record_encrypted"] = blob
    return seal


def _route_both(router: Router, env: dict, layout, deleted: bool, consents, sealing: bool):
    """``(cached messages, env routes, seal calls)`` and the same of the uncached path."""
    results = []
    for lay in (layout, None):
        e = copy.deepcopy(env)
        calls: list = []
        outs = router.route(e, input_key=b"in-key", deleted=deleted, consents=consents,
                            seal=_seal(calls) if sealing else None, layout=lay)
        results.append(([(o.topic, o.key, o.value, tuple(o.headers)) for o in outs], e["routes"], calls))
    return results


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("order", ["forward", "reversed"])
def test_cached_plans_give_the_uncached_messages(policy, name, order):
    family, records = SHAPES[name]
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    router = Router(policy, TopicNames())
    planned = clf.classify_batch_planned([ClassifyInput(r, family, encode(r)) for r in records])
    assert all(layout is not None for _env, layout in planned)
    cases = list(itertools.product(range(len(planned)), DELETED, range(len(CONSENTS)), SEALING))
    if order == "reversed":
        cases.reverse()
    routings = set()
    for _ in range(2):  # the second round meets only cached plans
        for i, deleted, consent, sealing in cases:
            env, layout = planned[i]
            cached, uncached = _route_both(router, env, layout, deleted, CONSENTS[consent], sealing)
            assert cached == uncached, (name, i, deleted, CONSENTS[consent], sealing)
            routings.add(tuple(cached[1]))
    assert len(routings) >= 2  # the flags do change the routes of the layout


def test_records_of_one_layout_share_its_plans_per_flags(policy):
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    router = Router(policy, TopicNames())
    family, records = SHAPES["message direction"]
    planned = clf.classify_batch_planned([ClassifyInput(r, family, encode(r)) for r in records])
    layouts = {id(layout) for _env, layout in planned}
    assert len(layouts) == 1  # the direction is a value: one layout
    env, layout = planned[0]
    compiled = router.compiled(env, layout)
    for e, lay in planned:
        router.route(copy.deepcopy(e), input_key=b"k", consents={"marketing": True}, layout=lay)
    # outbound (two spellings) and inbound/unknown: the carrier share differs -> distinct plans
    plans = compiled._plans
    assert len(plans) == 3
    assert sorted(flags[3] or "none" for flags in plans) == ["inbound", "none", "outbound"]
    outbound = next(p for flags, p in plans.items() if flags[3] == "outbound")
    assert [s.topic for s in outbound.steps] == [
        "privacy.retention.content.v1", "privacy.retention.usage.v1", "privacy.retention.account.v1",
        "privacy.marketing.v1", "privacy.anonymise.v1", "privacy.carrier.v1"]
    assert outbound.steps[-1].audit is not None and outbound.steps[-1].audit[0] == "privacy.carrier.v1"
    assert outbound.routes[-1] == "privacy.audit.v1"
    inbound = next(p for flags, p in plans.items() if flags[3] == "inbound")
    assert "privacy.carrier.v1" not in inbound.routes and "privacy.audit.v1" not in inbound.routes


def test_plan_flags_name_pointers_never_values(policy):
    """The cache key holds booleans, a direction and pointers of the layout: no record value."""
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    router = Router(policy, TopicNames())
    family, records = SHAPES["message account id shared"]
    for env, layout in clf.classify_batch_planned([ClassifyInput(r, family, encode(r)) for r in records]):
        router.route(copy.deepcopy(env), input_key=b"k", layout=layout)
        flat = repr(list(router.compiled(env, layout)._plans))
        assert AC not in flat and "+1415555" not in flat and SM not in flat


def test_plans_per_layout_are_bounded(policy, monkeypatch):
    monkeypatch.setattr(router_module, "ROUTE_PLANS_PER_LAYOUT", 2)
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    router = Router(policy, TopicNames())
    family, records = SHAPES["account provisioning and deletion"]
    planned = clf.classify_batch_planned([ClassifyInput(r, family, encode(r)) for r in records])
    for (env, layout), deleted in itertools.product(planned, DELETED):
        cached, uncached = _route_both(router, env, layout, deleted, {"marketing": True}, True)
        assert cached == uncached
    assert {len(router.compiled(env, layout)._plans) for env, layout in planned} == {2}
