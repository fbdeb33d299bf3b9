"""Decoding record bytes: every bad-input kind gets its reason; valid JSON is kept exactly."""

from __future__ import annotations

import pytest

from pipeline.codec import decode_object, encode
from pipeline.errors import DecodeError


@pytest.mark.parametrize(
    "raw, kind",
    [
        (b"not-json{", "invalid_json"),
        (b"", "empty"),
        (b"   \n", "empty"),
        (None, "empty"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (b"\xff{}", "invalid_utf8"),
        (b'{"a": "\xc3"}', "invalid_utf8"),
        (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "too_deep"),
        (b'{"a": 1', "invalid_json"),
    ],
)
def test_bad_input_kinds(raw, kind):
    with pytest.raises(DecodeError) as err:
        decode_object(raw)
    assert err.value.kind == kind


@pytest.mark.parametrize(
    "raw, expected, encoded",
    [
        (b'{"id": 98765432109876543210123}', {"id": 98765432109876543210123}, b'{"id":98765432109876543210123}'),
        (b'{"body": "see you soon \\ud83d"}', {"body": "see you soon \ud83d"}, b'{"body":"see you soon \\ud83d"}'),
        (b'{"a": 1, "a": 2}', {"a": 2}, b'{"a":2}'),
        (b'{"body": 42, "to": null}', {"body": 42, "to": None}, b'{"body":42,"to":null}'),
        ('{"body": "olá 😀"}'.encode(), {"body": "olá 😀"}, '{"body":"olá 😀"}'.encode()),
        (b'{"x": "' + b"9" * 25 + b'", "n": 1.5}', {"x": "9" * 25, "n": 1.5}, b'{"x":"' + b"9" * 25 + b'","n":1.5}'),
    ],
)
def test_exact_round_trip(raw, expected, encoded):
    value = decode_object(raw)
    assert value == expected
    assert encode(value) == encoded


def test_error_messages_never_quote_content():
    secret = b"+14155550100 john@example.com"
    for raw in (secret + b"{", b"[" + secret + b"]", b"\xff" + secret):
        with pytest.raises(DecodeError) as err:
            decode_object(raw)
        assert b"4155550100" not in str(err.value).encode()
        assert "john" not in str(err.value)
