"""JSON Pointer helpers: escaping, leaves, normalisation, globs, subsets, masking."""

from __future__ import annotations

import pytest

from pipeline import pointers


@pytest.mark.parametrize(
    "name, normalised",
    [
        ("MessageSid", "message_sid"),
        ("messageSid", "message_sid"),
        ("message_sid", "message_sid"),
        ("message-sid", "message_sid"),
        ("MediaUrl0", "media_url"),
        ("MediaContentType1", "media_content_type"),
        ("SMSStatus", "sms_status"),
        ("X-Twilio-Signature", "x_twilio_signature"),
        ("0", "#"),
        ("api-key", "api_key"),
    ],
)
def test_normalise_name(name, normalised):
    assert pointers.normalise_name(name) == normalised


def test_walk_leaves_pointers_in_document_order():
    record = {"a": {"b": [1, {"c": None}]}, "d~/e": "x", "f": {}, "g": []}
    leaves = [(p, v) for p, _, v in pointers.walk_leaves(record)]
    assert leaves == [("/a/b/0", 1), ("/a/b/1/c", None), ("/d~0~1e", "x"), ("/f", {}), ("/g", [])]


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("/body", "/Body", True),
        ("/**/body", "/data/payload/body", True),
        ("/**/body", "/body", True),
        ("/media/*/url", "/media/3/url", True),
        ("/to/**", "/to/0/phone_number", True),
        ("/to/**", "/to", True),
        ("/to/**", "/total", False),
        ("/**/email", "/data/user/emails", False),
        ("/media_url", "/MediaUrl0", True),
    ],
)
def test_glob_match(pattern, path, matches):
    norm = tuple(pointers.normalise_name(s) for s in pointers.split(path))
    assert pointers.glob_match(pointers.compile_glob(pattern), norm) is matches


def test_subset_keeps_only_wanted_pointers():
    record = {"a": {"b": [1, {"c": 2, "d": 3}], "e": 4}, "f": 5}
    assert pointers.subset(record, ["/a/b/1/c", "/f"]) == {"a": {"b": [{"c": 2}]}, "f": 5}
    assert pointers.subset(record, []) == {}


@pytest.mark.parametrize(
    "pointer, masked",
    [
        ("/tags/+14155550100/note", "/tags/*/note"),
        ("/contacts/john@example.com", "/contacts/*"),
        ("/media/0/url", "/media/*/url"),
        ("/body", "/body"),
    ],
)
def test_mask_pointer(pointer, masked):
    assert pointers.mask_pointer(pointer) == masked
