"""span_finder(entity)(value) equals declared_span(entity, value)."""

import pytest

from pipeline.values import declared_span, span_finder

ENTITIES = ["PHONE_NUMBER", "EMAIL_ADDRESS", "IP_ADDRESS", "URL", "LOCATION", "PERSON", "CREDIT_CARD"]
VALUES = [
    None, True, False, 0, 4155550100, -12, 1.5, float("nan"), "", " ", "\t\n", "queued", "+14155550100",
    " +1 (415) 555-0100 ", "tel:+14155550100", "12", "123", "x1y2z3", "٣٤٥٦", "+٣٤٥٦٧", "ab٣٤٥",
    "ann@example.com", "@", "https://example.com/x", "ftp://", "10.0.0.1", " 10.0.0.1 ", "::1", "999.1.1.1",
    "Salem", "450 Main St", "½", "Ⅷ", "²³", "é", "_", "__1", {}, [], {"a": 1}, ["+14155550100"],
    "\ud83d", "+1\ud83d555",
]


class _Str(str):
    pass


@pytest.mark.parametrize("entity", ENTITIES)
@pytest.mark.parametrize("value", VALUES + [_Str("+14155550100"), _Str(" ")])
def test_span_finder_equals_declared_span(entity, value):
    assert span_finder(entity)(value) == declared_span(entity, value)


def test_span_finder_is_kept_per_entity():
    assert span_finder("PHONE_NUMBER") is span_finder("PHONE_NUMBER")


@pytest.mark.parametrize("value", ["415 555 0100", "4155550100", "1-415-555-0100", "call 415.555.0100 now",
                                   "+1 415 555 0100", "(415) 555-0100", "x(415) 555-0100"])
def test_drift_phone_pattern_needs_plus_or_parenthesis(value):
    """pii_kinds skips the in-text phone search for values without "+" or "(" (drift.py)."""
    from pipeline.drift import _PHONE_IN_TEXT

    if "+" not in value and "(" not in value:
        assert _PHONE_IN_TEXT.search(value) is None
