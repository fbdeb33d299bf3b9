"""The bad-input table of issue 8, shared by the offline (classify) and worker tests.

Each case: ``(name, value bytes or None, expected)`` where expected is a dead-letter kind
(``dl:<kind>``), ``envelope`` (classified) or ``skipped`` (a tombstone on a non-account topic).
"""

from __future__ import annotations

AC = "AC" + "ab" * 16

BAD_INPUTS: list[tuple[str, bytes | None, str]] = [
    ("not-json", b"not-json{", "dl:invalid_json"),
    ("empty-value", b"", "dl:empty"),
    ("json-array", b"[1, 2, 3]", "dl:not_object"),
    ("json-string", b'"hello"', "dl:not_object"),
    ("json-null", b"null", "dl:not_object"),
    ("invalid-utf8", b'{"body": "caf\xff"}', "dl:invalid_utf8"),
    ("lone-surrogate", b'{"sid": "SM' + b"1" * 32 + b'", "body": "see you soon \\ud83d"}', "envelope"),
    ("big-integer-id", b'{"id": 98765432109876543210123, "body": "hi"}', "envelope"),
    ("duplicate-keys", b'{"sid": "SM' + b"2" * 32 + b'", "body": "first", "body": "second"}', "envelope"),
    ("deeply-nested", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "dl:too_deep"),
    ("number-body", b'{"sid": "SM' + b"3" * 32 + b'", "body": 42, "to": null}', "envelope"),
    ("string-duration", b'{"sid": "CA' + b"4" * 32 + b'", "duration": "abc"}', "envelope"),
    ("unknown-family", b'{"kind": "fax", "pages": 3, "cover": "please forward to the clinic"}', "envelope"),
    ("huge-body", b'{"sid": "SM' + b"5" * 32 + b'", "body": "' + b"x" * 1_000_001 + b'"}', "envelope"),
    ("oversized-output", b'{"sid": "SM' + b"6" * 32 + b'", "blob": "' + b"y" * 1_200_000 + b'"}', "dl:output_too_large"),
    ("tombstone", None, "skipped"),
]

#: Expected exact values inside envelopes, by case name: (pointer into the record, value).
EXACT_VALUES = {
    "big-integer-id": ("id", 98765432109876543210123),
    "duplicate-keys": ("body", "second"),
    "lone-surrogate": ("body", "see you soon \ud83d"),
    "number-body": ("body", 42),
}
