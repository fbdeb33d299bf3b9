"""The anonymiser's fast paths and caches give what the plain computations give: cached
pointer splits and walks, cached key entities and the lazy key renaming, the character
pre-filter of rescans, the one-span plan, cached operator configs, the replacement walk,
the ``keep`` shortcut; the caches stay bounded and are not pickled."""

from __future__ import annotations

import copy
import pickle

import pytest

from pipeline import anonymise as A
from pipeline import pointers
from pipeline.anonymise import (
    Anonymiser,
    Pseudonymiser,
    SivCipher,
    _KeyRenamer,
    key_entity,
)
from pipeline.classify import Classifier, ClassifyInput
from pipeline.codec import encode
from pipeline.policy import default_policy_path, parse_policy
from pipeline.values import value_kind

AC = "AC" + "0123456789abcdef" * 2
SM = "SM" + "fedcba9876543210" * 2


@pytest.fixture(scope="module")
def policy():
    return parse_policy(default_policy_path().read_text())


def fresh(policy) -> Anonymiser:
    return Anonymiser(policy, Pseudonymiser(b"test-pseudonym-key", "k1"), cipher=SivCipher(b"test-master-key", "m1"))


@pytest.fixture()
def anon(policy) -> Anonymiser:
    return fresh(policy)


# -- reference computations (the code before the fast paths) ---------------------------------
def plain_get(record, ptr):
    node = record
    for seg in pointers.split(ptr):
        node = node[int(seg)] if isinstance(node, list) else node[seg]
    return node


def plain_rename(renamer: _KeyRenamer, node):
    if isinstance(node, dict):
        return {renamer.key(k) if isinstance(k, str) else k: plain_rename(renamer, v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain_rename(renamer, v) for v in node]
    return node


def plain_could_hold_pii(value: str) -> bool:
    if value_kind(value)[0] in A._SAFE_SHAPES:
        return False
    if value.startswith("/") and " " not in value and "@" not in value:
        return False
    if "@" in value:
        return True
    digits = 0
    for c in value:
        if c.isdigit():
            digits += 1
            if digits >= 4:
                return True
    return value.count(" ") >= 2


def plain_plan(anon: Anonymiser, text: str, entities: list[dict]):
    n = len(text)
    spans = []
    for e in entities:
        try:
            start, end = max(0, int(e["start"])), min(n, int(e["end"]))
        except (KeyError, TypeError, ValueError):
            continue
        if start < end:
            spans.append(dict(e, start=start, end=end))
    spans.sort(key=lambda e: (e["start"], -e["end"]))
    groups, group_end = [], -1
    for e in spans:
        if groups and e["start"] < group_end:
            groups[-1].append(e)
            group_end = max(group_end, e["end"])
        else:
            groups.append([e])
            group_end = e["end"]
    out = []
    for g in groups:
        winner = max(g, key=lambda e: (A.OPERATOR_RANK[anon.operator_for(e["type"]).operator],
                                       e["end"] - e["start"], float(e.get("score", 1.0)), -e["start"]))
        out.append((min(e["start"] for e in g), max(e["end"] for e in g), winner, g))
    return out


def outcome(fn, *args):
    """``("ok", result)`` or ``("raises", exception type)``."""
    try:
        return "ok", fn(*args)
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return "raises", type(exc)


# -- pointers --------------------------------------------------------------------------------
POINTERS = ["", "/", "/to", "/a/b", "/a~1b", "/a~0b", "/~01", "/~10", "/a//b", "/tags/+14155550123",
            "/x_routing/ana@example.com/note", "/list/0/1", "/media/12/url", "/k~0~1~1~0"]


@pytest.mark.parametrize("ptr", POINTERS)
def test_cached_segments_are_the_split(ptr):
    before = pointers.split_cached.cache_info().hits
    assert pointers.split_cached(ptr) == tuple(pointers.split(ptr))
    assert pointers.split_cached(ptr) == tuple(pointers.split(ptr))  # from the cache
    assert pointers.split_cached.cache_info().hits > before
    assert pointers.join(pointers.split_cached(ptr)) == ptr  # escaped segments come back escaped


RECORD = {"to": "+14155550100", "a": {"b": 1, "": {"b": 2}}, "a/b": "slash", "a~b": "tilde", "~1": "t1",
          "": {"": "empty"}, "list": [[1, 2], {"x": 3}], "media": [{"url": "u0"}] * 13,
          "tags": {"+14155550123": "vip"}, "k~/": {"/~": "mixed"}}


@pytest.mark.parametrize("ptr", POINTERS + ["/missing", "/list/9", "/list/x", "/to/0", "/a/b/c", "/list/-1/x"])
def test_value_at_is_the_plain_walk(anon, ptr):
    for _ in range(2):  # cold and cached
        assert outcome(anon.value_at, RECORD, ptr) == outcome(plain_get, RECORD, ptr)


def test_pointer_cache_is_bounded_and_still_right():
    ptrs = [f"/tags/+1415555{i:04d}" for i in range(A._CACHE_MAX + 50)]
    for p in ptrs:
        assert pointers.split_cached(p) == tuple(pointers.split(p))
    info = pointers.split_cached.cache_info()
    assert info.maxsize == 65536 and info.currsize <= info.maxsize
    assert pointers.split_cached(ptrs[0]) == ("tags", "+14155550000")


# -- keys ------------------------------------------------------------------------------------
KEYS = ["+14155550123", "+1 415 555 0123", "14155550123", "tel:+14155550123", "ana@example.com",
        "Ana.Lopez@Example.co.uk", "203.0.113.7", "2001:db8::1", "::ffff:203.0.113.7", AC, "AC123",
        "1234567", "123456", "order-98765432", "MediaUrl0", "media_url_12", "sha256", "ipv4", "status",
        "friendly_name", "x_routing", "", "0", "12", "٠١٢٣٤٥٦٧", "abc@", "@", "2024-01-01", "v1.2.3"]


@pytest.mark.parametrize("key", KEYS)
def test_cached_key_entity_is_key_entity(anon, key):
    assert anon.key_entity(key) == key_entity(key)
    assert anon.key_entity(key) == key_entity(key)  # from the cache
    assert key in anon._key_entities


def test_key_entities_name_the_data_keys(anon):
    got = {k: anon.key_entity(k) for k in ("+14155550123", "ana@example.com", "203.0.113.7", "1234567",
                                            "order-98765432", "status", "MediaUrl0", "123456")}
    assert got == {"+14155550123": "PHONE_NUMBER", "ana@example.com": "EMAIL_ADDRESS",
                   "203.0.113.7": "IP_ADDRESS", "1234567": "PHONE_NUMBER", "order-98765432": "PHONE_NUMBER",
                   "status": None, "MediaUrl0": None, "123456": None}


def test_key_entity_cache_is_bounded(anon):
    for i in range(A._CACHE_MAX + 10):
        assert anon.key_entity(f"+1415{i:07d}") == "PHONE_NUMBER"
    assert 0 < len(anon._key_entities) <= A._CACHE_MAX


RECORDS = [
    {"sid": SM, "status": "sent", "meta": {"ok": True, "list": [1, [2, {"a": None}]]}},  # nothing renamed
    {"x_routing": {"+12125550144": {"note": "vip"}, "MediaUrl0": "1", "ana@example.com": "y"}},
    {"per_account": {AC: 3}, "uri": f"/Accounts/{AC}"},
    {"deep": [{"203.0.113.7": [{"1234567": {"plain": 1}}]}, {"plain": [{}]}, []]},
    {"ids": {"order-98765432": 1, "order-1": 2, f"acct-{AC}-x": {"+14155550123": "z"}}},
    {"": {"": ""}, "a/b~c": {"~1": []}, "٠١٢٣٤٥٦٧": 1},
    {},
]


@pytest.mark.parametrize("account_id", [AC, None, ""])
@pytest.mark.parametrize("record", RECORDS)
def test_key_renaming_is_the_plain_rebuild(anon, record, account_id):
    before = copy.deepcopy(record)
    fast = _KeyRenamer(anon, account_id)
    got = fast.record(record)
    plain = _KeyRenamer(fresh(anon.policy), account_id)
    want = plain_rename(plain, record)
    assert got == want and encode(got) == encode(want)
    assert list(_all_keys(got)) == list(_all_keys(want))  # same keys, same order, every level
    assert fast.used == plain.used
    assert record == before  # the input is never modified
    if not fast.used:
        assert got is record  # nothing renamed: no rebuild


def _all_keys(node):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _all_keys(v)
    elif isinstance(node, list):
        for v in node:
            yield from _all_keys(v)


@pytest.mark.parametrize("ptr", ["/x_routing/+12125550144/note", f"/per_account/{AC}", "/status", "/a~1b/~0",
                                 "/deep/0/203.0.113.7/0/1234567/plain", ""])
def test_renamed_pointer_is_the_plain_join(anon, ptr):
    renamer = _KeyRenamer(anon, AC)
    assert renamer.pointer(ptr) == pointers.join([renamer.key(s) for s in pointers.split(ptr)])


# -- rescan pre-filter -----------------------------------------------------------------------
VALUES = ["", " ", "queued", "sent", "hello", "ok then", "call me now", "a b c", "ana@example.com", "@",
          "+14155550123", "+1 415 555 0123", "4155", "415", "2024-01-01T10:00:00Z", "1700000000", "12345",
          "3.14159", SM, AC, "550e8400-e29b-41d4-a716-446655440000", "deadbeef1234",
          "/2010-04-01/Accounts/AC1/Calls/CA1.json", "/path with spaces 1234", "/mail@host",
          "https://api.example.com/media/123.jpg", "https://example.com/u/1234", "203.0.113.7",
          "Error 30007: carrier violation", "٠١٢٣ digits", "²³¹⁴", "x²³¹⁴", "١٢٣", "tel:+14155550123",
          "Café au lait à 5€ 2024", "foo%20bar%401234", "%40%40", "true", "FALSE", "4 5 6 7"]


@pytest.mark.parametrize("value", VALUES)
def test_could_hold_pii_is_the_plain_filter(value):
    assert A._could_hold_pii(value) == plain_could_hold_pii(value)


@pytest.mark.parametrize("value", VALUES + ["1a2b3c", "1a2b3c4", "١٢٣4", "１２３４"])
def test_four_digits_is_isdigit_count(value):
    assert A._has_four_digits(value) == (sum(c.isdigit() for c in value) >= 4)


# -- text: the one-span plan, cached configs ---------------------------------------------------
TEXT = "Call +1 415 555 0142 or ana@example.com"
ENTITY_LISTS = [
    [],
    [{"type": "PHONE_NUMBER", "start": 5, "end": 20, "score": 0.9}],
    [{"type": "PHONE_NUMBER", "start": 0, "end": 999}],
    [{"type": "PHONE_NUMBER", "start": -3, "end": 4}],
    [{"type": "PHONE_NUMBER", "start": 7, "end": 7}],
    [{"type": "PHONE_NUMBER", "start": "5", "end": "20"}],
    [{"type": "PHONE_NUMBER", "start": 5}],
    [{"type": "PHONE_NUMBER", "start": 5, "end": 20, "score": "high"}],
    [{"type": "NO_SUCH_TYPE", "start": 5, "end": 20}],
    [{"start": 5, "end": 20}],
    [{"type": "EMAIL_ADDRESS", "start": 24, "end": 39}, {"type": "PHONE_NUMBER", "start": 5, "end": 20}],
    [{"type": "PHONE_NUMBER", "start": 5, "end": 20}, {"type": "PERSON", "start": 10, "end": 30}],
]


@pytest.mark.parametrize("entities", ENTITY_LISTS)
def test_plan_is_the_plain_plan(anon, entities):
    assert outcome(anon.plan, TEXT, entities) == outcome(plain_plan, anon, TEXT, entities)


@pytest.mark.parametrize("entity", ["PHONE_NUMBER", "EMAIL_ADDRESS", "PERSON", "IP_ADDRESS", "CREDIT_CARD", "SECRET"])
@pytest.mark.parametrize("account_id", [AC, "AC2", None])
def test_cached_config_is_the_config(anon, entity, account_id):
    op = anon.operator_for(entity)
    for _ in range(2):
        got, want = anon._config_cached(op, entity, account_id), anon._config(op, entity, account_id)
        assert (got.operator_name, got.params) == (want.operator_name, want.params)


def test_anonymise_text_same_with_cold_and_warm_caches(policy):
    warm = fresh(policy)
    texts = [(TEXT, ents) for ents in ENTITY_LISTS[:7] + ENTITY_LISTS[10:]]
    for account_id in (AC, "AC2", AC):
        for text, ents in texts:
            applied_warm, applied_cold = set(), set()
            assert warm.anonymise_text(text, ents, account_id, applied_warm) == \
                fresh(policy).anonymise_text(text, ents, account_id, applied_cold)
            assert applied_warm == applied_cold


# -- envelopes -------------------------------------------------------------------------------
def _replaced_plainly(record, repl):
    """The reference: a deep copy with each pointer walked by :func:`pointers.split`."""
    out = copy.deepcopy(record)
    for ptr, value in repl.items():
        *path, last = pointers.split(ptr)
        node = out
        for seg in path:
            node = node[int(seg)] if isinstance(node, list) else node[seg]
        node[int(last) if isinstance(node, list) else last] = value
    return out


def test_replace_all_replaces_as_a_plain_walk():
    record = copy.deepcopy(RECORD)
    before = copy.deepcopy(record)
    repl = {"/to": "<PHONE_NUMBER>", "/a/b": None, "/a~1b": "x", "/list/0/1": 9, "/list/1/x": [], "/~01": "y",
            "/tags/+14155550123": "z", "/k~0~1/~1~0": "w"}
    for _ in range(2):  # cold and cached pointer splits
        got = A._replace_all(record, repl)
        want = _replaced_plainly(record, repl)
        assert got == want and encode(got) == encode(want)
    assert record == before
    assert A._replace_all(record, {}) is record


@pytest.mark.parametrize("category", ["usage", "content", "account", "no-such-category"])
@pytest.mark.parametrize("value", ["sent", "+14155550100", 7, None, True, {}, []])
def test_keep_shortcut_is_whole(anon, category, value):
    field = {"category": category, "source": "rule", "rule": "r"}
    applied = set()
    got = anon.anonymise_value(value, field, AC, applied)
    op = anon.spec.category_operators.get(category)
    if op is None:
        assert (got, applied) == (value, set())
    else:
        applied_whole = set()
        assert got == anon._whole(op, value, category.upper(), AC, applied_whole)
        assert applied == applied_whole


MESSAGE = {
    "sid": SM, "account_sid": AC, "to": "+14155550100", "from": "whatsapp:+14155550199",
    "body": "Call +1 415 555 0142 or mail ana@example.com", "status": "sent", "num_segments": "1",
    "uri": f"/2010-04-01/Accounts/{AC}/Messages/{SM}.json", "ip_address": "203.0.113.7",
    "auth_token": "tok-9f8e7d6c5b4a", "meta": {"customer_email": "ana@example.com", "ok": True},
    "x_routing": {"+12125550144": {"note": "vip 1234"}, "MediaUrl0": "1"}, "per_account": {AC: 3},
    "error_message": "Delivery to +14155550100 failed at 2024-01-01", "a/b": {"~x": "bob@example.org"},
}


def _classify(policy, record):
    clf = Classifier(policy, None, secret_key=b"k", secret_key_id="s0")
    return clf.classify_batch([ClassifyInput(record, "message", encode(record))])[0]


@pytest.mark.parametrize("record", [MESSAGE, {"sid": SM, "account_sid": AC, "status": "sent", "body": "hi"},
                                    {"sid": SM, "status": "queued", "n": [1, 2, {"x": "y"}]}])
def test_envelope_same_with_cold_warm_and_unpickled_anonymiser(policy, record):
    env = _classify(policy, record)
    before = encode(env)
    warm = fresh(policy)
    first = encode(warm.anonymise_envelope(env))
    assert encode(warm.anonymise_envelope(env)) == first  # caches warm now
    assert encode(fresh(policy).anonymise_envelope(env)) == first
    copy_ = pickle.loads(pickle.dumps(warm))
    assert copy_._key_entities == {} and copy_._configs == {} and copy_._account_tokens == {}
    assert encode(copy_.anonymise_envelope(env)) == first
    assert encode(env) == before  # the input envelope is not modified


def test_data_keys_renamed_in_record_and_fields(policy):
    anon = fresh(policy)
    out = anon.anonymise_envelope(_classify(policy, MESSAGE))
    phone_key = anon.pseudonymise("+12125550144", entity="PHONE_NUMBER", account_id=AC, purpose="analytics")
    assert set(out["record"]["x_routing"]) == {phone_key, "MediaUrl0"}
    assert f"/x_routing/{phone_key}/note" in out["fields"]
    assert list(out["record"]["per_account"]) == [out["account_id"]]
    assert out["record"]["to"] != "+14155550100" and out["record"]["meta"]["customer_email"] is None
    dumped = encode(out).decode()  # (no detector here: free text is not rescanned)
    for clear in ("+12125550144", AC):
        assert clear not in dumped


def test_cached_config_follows_a_replaced_key_object(anon):
    op = anon.operator_for("PHONE_NUMBER")
    assert op.operator == "pseudonymise"
    before = anon._config_cached(op, "PHONE_NUMBER", AC)
    anon.pseudonymise = Pseudonymiser(b"another-key", "k2")
    after = anon._config_cached(op, "PHONE_NUMBER", AC)
    assert before.params["pseudonymiser"] is not anon.pseudonymise
    assert after.params["pseudonymiser"] is anon.pseudonymise
    assert anon.anonymise_text("+14155550100", [{"type": "PHONE_NUMBER", "start": 0, "end": 12}], AC) == \
        anon.pseudonymise("+14155550100", entity="PHONE_NUMBER", account_id=AC, purpose=op.purpose)


@pytest.mark.parametrize("account_id", [AC, "AC2", None, ["not", "a", "string"], {"x": 1}, 7])
@pytest.mark.parametrize("text", [AC, "Acme Corp", "+14155550100", ""])
def test_account_pseudonym_cache_is_the_pseudonym(anon, account_id, text):
    op = anon.spec.account_id_operator
    assert op.operator == "pseudonymise"
    want = anon.pseudonymise(text, entity="ACCOUNT", account_id=account_id, purpose=op.purpose)
    for _ in range(2):  # cold and cached
        assert anon.apply(op, text, "ACCOUNT", account_id) == want
    anon.pseudonymise = Pseudonymiser(b"another-key", "k2")  # a replaced key object is not served stale
    assert anon.apply(op, text, "ACCOUNT", account_id) == \
        anon.pseudonymise(text, entity="ACCOUNT", account_id=account_id, purpose=op.purpose) != want


@pytest.mark.parametrize("account_id", [["not", "a", "string"], {"x": 1}])
def test_unhashable_account_id_still_configures(anon, account_id):
    op = anon.operator_for("PHONE_NUMBER")
    got, want = anon._config_cached(op, "PHONE_NUMBER", account_id), anon._config(op, "PHONE_NUMBER", account_id)
    assert (got.operator_name, got.params) == (want.operator_name, want.params)
    assert fresh(anon.policy).anonymise_text("+14155550100", [{"type": "PHONE_NUMBER", "start": 0, "end": 12}],
                                             account_id) == \
        anon.anonymise_text("+14155550100", [{"type": "PHONE_NUMBER", "start": 0, "end": 12}], account_id)
