"""``decode_object``'s inlined orjson step and its bracket count skipped for short values:
the same values and the same errors as the previous sequence of checks."""

from __future__ import annotations

import pytest

from pipeline import codec
from pipeline.codec import MAX_DEPTH, decode_object
from pipeline.errors import DecodeError


def _reference(raw, *, max_depth: int = MAX_DEPTH):
    """The previous ``decode_object`` (every check in turn, ``_loads`` for the parse)."""
    if raw is None:
        raise DecodeError("empty", "the value is null (tombstone)")
    if raw.__class__ is not bytes:
        raw = bytes(raw)
    if not raw or raw.isspace():
        raise DecodeError("empty", f"the value is empty ({len(raw)} bytes)")
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    scan = raw.translate(codec._SCAN_MAP)
    if scan.count(b"[") > max_depth and codec._max_depth(raw, max_depth) > max_depth:
        raise DecodeError("too_deep", f"nesting deeper than {max_depth} levels")
    value = codec._loads(raw, inexact=codec._DIGIT_RUN in scan)
    if not isinstance(value, dict):
        raise DecodeError("not_object", f"a JSON {codec._type_name(value)}, not an object")
    return value


CASES = [
    b'{"a":1,"b":"x","c":[1,2,{"d":null}],"e":1.5,"f":true}',
    b'{"id":1234567890123456789}',                  # 19 digits: the exact parser
    b'{"id":12345678901234567890123}',              # beyond 64 bits
    b'{"id":-9223372036854775809}',
    b'{"sid":"SMa1e970aa00000000000000000000000000"}',
    b'{"x":1e400}',                                  # out of range
    b'{"x":"\\ud83d"}',                              # lone surrogate escape
    b'{"x":"\\ud83d\\ude00"}',
    b'{"a":1,}',                                     # invalid JSON
    b'{"a":',
    b'[1,2]',
    b'"text"',
    b'null',
    b'',
    b'   ',
    b'\xff\xfe{}',
    "{\"name\":\"Zoë\"}".encode(),
    b'[' * 300 + b']' * 300,                         # short (at most max_depth bytes), deep
    b'[' * 600,                                      # unclosed, longer than max_depth
    b'{"a":' * 520 + b'1' + b'}' * 520,              # deeper than max_depth
    b'{"a":' * 400 + b'1' + b'}' * 400,
    b'{"a":"' + b'[' * 600 + b'"}',                  # brackets inside a string
    bytearray(b'{"a":1}'),
    memoryview(b'{"a":2}'),
]


def _outcome(fn, raw, **kw):
    try:
        return ("ok", fn(raw, **kw))
    except DecodeError as exc:
        return ("error", exc.kind, exc.message)


@pytest.mark.parametrize("max_depth", [MAX_DEPTH, 8, 1])
@pytest.mark.parametrize("raw", CASES, ids=range(len(CASES)))
def test_decode_equals_reference(raw, max_depth):
    assert _outcome(decode_object, raw, max_depth=max_depth) == _outcome(_reference, raw, max_depth=max_depth)
