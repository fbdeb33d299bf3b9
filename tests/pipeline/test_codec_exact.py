"""Which records take the standard library's exact parser (pipeline/codec.py): only those
orjson would get wrong, not every record with a hex id such as ``"SMa1e970..."``."""

from __future__ import annotations

import json

import orjson
import pytest

from pipeline import codec
from pipeline.codec import decode_object
from pipeline.errors import DecodeError


@pytest.mark.parametrize(
    "raw",
    [
        b'{"sid": "SMa1e970b7b07e123456789abcdef0123"}',     # "e970": an exponent look-alike
        b'{"price": 1e300, "n": -12}',
        b'{"small": 1e-400}',
        b'{"iccid": "89014103211118510720"}',                   # 20 digits inside a string
    ],
)
def test_exact_results_on_the_fast_path(raw, monkeypatch):
    calls = []
    real = json.loads
    monkeypatch.setattr(codec.json, "loads", lambda *a, **k: calls.append(1) or real(*a, **k))
    value = decode_object(raw)
    assert value == real(raw) and repr(value) == repr(real(raw))
    if b"89014103211118510720" not in raw:
        assert calls == []  # orjson alone


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b'{"a": -9223372036854775809}', -9223372036854775809),   # 19 digits below int64: was a float
        (b'{"a": 18446744073709551616}', 18446744073709551616),
        (b'{"a": 98765432109876543210123}', 98765432109876543210123),
    ],
)
def test_big_integers_stay_exact(raw, expected):
    assert orjson.loads(raw)["a"] != expected or type(orjson.loads(raw)["a"]) is float
    value = decode_object(raw)["a"]
    assert value == expected and type(value) is int


@pytest.mark.parametrize(
    "raw, kind",
    [(b'{"a": 1e400}', "number_out_of_range"), (b'{"sid": "SMe123", "a": NaN}', "invalid_json"),
     # NaN and Infinity are invalid JSON whichever parser reads the value (orjson, or the
     # standard library's for values with long digit runs or lone surrogate escapes)
     (b'{"a": NaN}', "invalid_json"), (b'{"a": -Infinity}', "invalid_json"), (b'{"a": [Infinity]}', "invalid_json"),
     (b'{"n": 12345678901234567890123, "a": NaN}', "invalid_json"),
     (b'{"s": "\\ud800", "a": Infinity}', "invalid_json"), (b'{"a": 1e999, "b": NaN}', "number_out_of_range"),  # the first problem decides
     (b'{"a": 1e400,}', "number_out_of_range"), (b'{"a": 1,}', "invalid_json"), (b"   ", "empty"), (b"\t\r\n", "empty"),
     # integers longer than Python converts (sys.get_int_max_str_digits, 4,300): a dead letter
     (b'{"sid": "SMd", "n": ' + b"9" * 4400 + b"}", "number_out_of_range"),
     (b'{"n": [-' + b"1" * 5000 + b"]}", "number_out_of_range")],
)
def test_errors_unchanged(raw, kind):
    with pytest.raises(DecodeError) as err:
        decode_object(raw)
    assert err.value.kind == kind


def test_longest_convertible_integer_stays_exact():
    import sys

    digits = sys.get_int_max_str_digits()
    value = decode_object(b'{"n": ' + b"7" * digits + b"}")["n"]
    assert type(value) is int and value == int("7" * digits)


@pytest.mark.parametrize("depth", [100, 480, 500, 511, 512, 600])
@pytest.mark.parametrize("opener, closer", [(b'{"a":', b"}"), (b"[", b"]")])
def test_nesting_up_to_the_limit_is_classified(processor, depth, opener, closer):
    """Nesting up to :data:`MAX_DEPTH` is classified (the planner's recursive shape signature
    gives way to the iterative generic path); deeper is a ``too_deep`` dead letter."""
    from pipeline.codec import MAX_DEPTH
    from pipeline.records import SourceRecord

    raw = b'{"sid": "SMx", "d": ' + opener * depth + b"1" + closer * depth + b"}"
    [result] = processor.process_batch([SourceRecord("cpaas.messages.v1", 0, 1, b"k", raw)])
    if depth + 1 <= MAX_DEPTH:
        assert result.outcome == "classified"
    else:
        assert result.outcome == "deadletter"
        assert dict(result.outputs[0].headers)["deadletter-reason"] == b"too_deep"
