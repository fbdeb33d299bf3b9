"""Name normalisation and name hints for unknown fields (issue 5)."""

from __future__ import annotations

import pytest

from pipeline import pointers
from pipeline.classify import FieldDecider
from pipeline.policy import load_policy


@pytest.fixture(scope="module")
def decider():
    return FieldDecider(load_policy())


@pytest.mark.parametrize(
    "name, normalised",
    [
        ("MessageSid", "message_sid"), ("messageSid", "message_sid"), ("message-sid", "message_sid"),
        ("MESSAGE_SID", "message_sid"), ("MediaUrl0", "media_url"), ("MediaUrl10", "media_url"),
        ("media_url_0", "media_url"), ("FromCity", "from_city"), ("SMSStatus", "sms_status"),
        ("X-Twilio-Signature", "x_twilio_signature"), ("core-uuid", "core_uuid"), ("concat-ref", "concat_ref"),
        ("message-timestamp", "message_timestamp"), ("APIKey", "api_key"), ("0", "#"), ("12", "#"),
        ("sha256", "sha256"), ("", "_"),
    ],
)
def test_normalise_name(name, normalised):
    assert pointers.normalise_name(name) == normalised


@pytest.mark.parametrize(
    "pattern, pointer, matches",
    [
        ("/**/media/#/url", "/media/0/url", True),
        ("/**/media/#/url", "/media/x/url", False),
        ("/**/media_url", "/MediaUrl1", True),
        ("/callflow/#/times/**", "/callflow/2/times/created_time", True),
        ("/data", "/data/x", False),
    ],
)
def test_glob_with_index(pattern, pointer, matches):
    norm = tuple(pointers.normalise_name(s) for s in pointers.split(pointer))
    assert pointers.glob_match(pointers.compile_glob(pattern), norm) is matches


def _hint(decider, pointer):
    norm = tuple(pointers.normalise_name(s) for s in pointers.split(pointer))
    d = decider.hint(norm)
    return None if d is None else d.category


@pytest.mark.parametrize(
    "pointer, category",
    [
        ("/customer_email", "account"), ("/first_name", "account"), ("/password_hint", None),
        ("/name", "account"), ("/campaign/name", "usage"), ("/billing/city", "account"), ("/city", "account"),
        ("/from/city", "usage"), ("/address/state", "account"), ("/channel_data/state", "usage"),
        ("/contact/phone", "account"), ("/caller_number", "usage"), ("/customer_id", "account"),
        ("/message_id", "usage"), ("/recording_sid", "usage"), ("/media/0/url", "content"),
        ("/url", None), ("/data", None), ("/app_data", "usage"), ("/retry_count", "usage"),
        ("/delivered_at", "usage"), ("/created_at", "usage"), ("/queue_time_ms", "usage"),
        ("/transcript_summary", "content"), ("/button_text", "content"), ("/notes", "content"),
        ("/errors", "usage"), ("/errors/0/detail", "usage"), ("/agent_name", "account"),
        ("/user_name", "account"), ("/domain_name", "usage"), ("/effective_caller_id_name", "usage"),
        ("/card_number", "account"), ("/line_type", "usage"), ("/zzq", None),
    ],
)
def test_name_hints(decider, pointer, category):
    assert _hint(decider, pointer) == category


@pytest.mark.parametrize(
    "name, secret",
    [("password", True), ("sip_auth_password", True), ("x_api_key", True), ("auth_token", True),
     ("call_token", True), ("encryption_cek", True), ("sig", True), ("signature", True),
     ("public_key", False), ("token_count", False), ("routing_key", False)],
)
def test_secret_names(decider, name, secret):
    assert decider.is_secret_name(name) is secret


def test_mask_pointer_hides_data_like_keys():
    assert pointers.mask_pointer("/x_routing/+14155550100/note") == "/x_routing/*/note"
    assert pointers.mask_pointer("/tags/ana@example.com") == "/tags/*"


@pytest.mark.parametrize(
    "path, kept",
    [
        (("to",), True),
        (("account", "email"), True),
        (("contacts", "+14155550100"), False),       # a phone number used as a key
        (("by_email", "ann@example.com"), False),    # an email used as a key
        (("balances", "447700900123", "amount"), False),
        (("media_url",), True),
    ],
)
def test_decision_cache_never_keeps_data_like_keys(path, kept):
    """The decision cache is keyed on paths: keys that look like data are decided every time
    and never kept in memory; the decision itself is the same either way."""
    from pipeline.classify import ClassifyInput, Classifier

    classifier = Classifier(load_policy(), None, plan_cache_size=0)  # the generic path
    record: dict = {"event_id": "ev-1"}
    node = record
    for seg in path[:-1]:
        node = node.setdefault(seg, {})
    node[path[-1]] = "value"
    classifier.classify_batch([ClassifyInput(record=record, family="message", raw=b"{}")])
    norm = tuple(pointers.normalise_name(seg) for seg in path)
    assert (("message", False, norm) in classifier.decider._cache) is kept
    planned = Classifier(load_policy(), None)  # planned path: data-like shapes go generic
    planned.classify_batch([ClassifyInput(record=record, family="message", raw=b"{}")])
    assert (("message", False, norm) in planned.decider._cache) is kept
