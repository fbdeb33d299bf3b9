"""Property: no carrier message ever holds an account-tagged field or a secret, nor the
customer's account id, whatever the record and whatever the policy's allow-lists say."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pipeline import pointers
from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import decode_object, encode
from pipeline.policy import default_policy_path
from pipeline.policy.model import Policy
from pipeline.router import Router
from pipeline.topics import TopicNames

BASE = yaml.safe_load(default_policy_path().read_text())
TOPICS = TopicNames()
CARRIER_TOPICS = {TOPICS.carrier, TOPICS.carrier_address}

NAMES = ["to", "from", "body", "account_sid", "AccountSid", "auth_token", "password", "api_key", "email",
         "friendly_name", "customer_name", "street", "city", "phone_number", "company", "media_url", "media",
         "num_segments", "encoding", "status", "price", "caller_name", "trunk_sid", "data", "payload", "url",
         "signature", "owner_account_sid", "billing_address", "ip", "notes", "x", "Authorization", "token"]
GLOBS = ["/**", "/*", "/**/*", "/**/to/**", "/**/from", "/**/body", "/**/account_sid", "/**/auth_token",
         "/**/email", "/**/street", "/**/password", "/data/**", "/**/media/*/url", "/**/friendly_name",
         "/**/phone_number", "/**/authorization", "/**/signature", "/**/customer_name"]

keys = st.sampled_from(NAMES) | st.text(min_size=1, max_size=8)
shapes = st.recursive(
    st.sampled_from(["s", "n", "b", "null"]),
    lambda children: st.lists(children, min_size=1, max_size=3) | st.dictionaries(keys, children, min_size=1, max_size=5),
    max_leaves=20,
)
allow_lists = st.lists(st.sampled_from(GLOBS), max_size=6)


def _fill(shape, counter: list[int]):
    """Give every leaf a unique value, so a value found in a message has one origin."""
    if isinstance(shape, dict):
        return {k: _fill(v, counter) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_fill(v, counter) for v in shape]
    counter[0] += 1
    i = counter[0]
    if shape == "s":
        return f"+1415{9_000_000 + i}" if i % 3 == 0 else f"val{i:03d}zq"
    return {"n": 9_000_000 + i, "b": True, "null": None}[shape]


def _policy(message_out, message_in, call_out, address_allow) -> Policy:
    data = copy.deepcopy(BASE)
    data["routes"]["carrier"]["allow"] = {"message": {"outbound": message_out, "inbound": message_in},
                                          "call": {"outbound": call_out}}
    if address_allow:
        data["routes"]["carrier_address"]["allow"] = address_allow
    return Policy.model_validate(data)


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.dictionaries(keys, shapes, min_size=1, max_size=8),
       family=st.sampled_from(["message", "call", "account"]),
       direction=st.sampled_from(["outbound-api", "outbound-dial", "inbound", None]),
       marker=st.booleans(),
       message_out=allow_lists, message_in=allow_lists, call_out=allow_lists, address_allow=allow_lists)
def test_no_carrier_message_holds_account_fields_or_secrets(shape, family, direction, marker, message_out,
                                                            message_in, call_out, address_allow):
    record = _fill(shape, [0])
    record["account_sid"] = "AC" + "7" * 32
    if direction:
        record["direction"] = direction
    if marker:
        record["purpose"] = "number-provisioning"
    policy = _policy(message_out, message_in, call_out, address_allow)
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    env = clf.classify_batch([ClassifyInput(record, family, encode(record))])[0]
    outs = Router(policy, TOPICS).route(env, input_key=None)

    originals = {p: v for p, _, v in pointers.walk_leaves(record)}
    address_ok = _address_ok(policy, env)
    forbidden: dict[str, list[str]] = {TOPICS.carrier: [], TOPICS.carrier_address: []}
    for ptr, f in env["fields"].items():
        values = [originals.get(ptr), _leaf(env["record"], ptr)]  # before and after secret hashing
        values = [v for v in values if isinstance(v, str) and len(v) >= 6]
        if f.get("secret") or f["category"] == "account":
            forbidden[TOPICS.carrier] += values
        if f.get("secret") or (f["category"] == "account" and ptr not in address_ok):
            forbidden[TOPICS.carrier_address] += values
    for out in outs:
        if out.topic not in CARRIER_TOPICS:
            continue
        msg = decode_object(out.value)
        assert "account_id" not in msg
        assert env["account_id"].encode() not in out.value + (out.key or b"")
        for f in msg["fields"].values():
            assert not f.get("secret")
            if out.topic == TOPICS.carrier:
                assert f["category"] != "account"
        for v in forbidden[out.topic]:
            assert v.encode() not in out.value


def _leaf(record, ptr):
    node = record
    for seg in pointers.split(ptr):
        node = node[int(seg)] if isinstance(node, list) else node[seg]
    return node


def _address_ok(policy: Policy, env: dict) -> set[str]:
    """Account-tagged pointers the regulated address route may send for this event."""
    router = Router(policy, TOPICS)
    if not router.is_provisioning(env):
        return set()
    return set(router.address_pointers(env)[0])
