"""Shared helpers for the project's Presidio recognizers."""

from __future__ import annotations

import re

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

#: A word token: letters (any script) joined by ' ’ or -, optionally one trailing dot.
WORD_RE = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?")
#: Any token: a word, a number (with inner separators) or one other non-space character.
TOKEN_RE = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?|\d+(?:[.,:/\-]\d+)*|\S")


_DIGIT = re.compile(r"\d")
_last_count: tuple[str, int] = ("", 0)


def digit_count(text: str) -> int:
    """How many digits ``text`` holds (``\\d``, any script): the cheap pre-filter the
    number recognizers share. The last answer is kept, since every recognizer asks about the
    same text in turn."""
    global _last_count
    last = _last_count
    if last[0] is text:
        return last[1]
    n = len(_DIGIT.findall(text))
    _last_count = (text, n)
    return n


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment cards and ICCIDs."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_last_case: tuple[str, str] = ("", "mixed")


def text_case(text: str) -> str:
    """``"lower"`` (no capitals), ``"upper"`` (no lower-case letters) or ``"mixed"``. The
    last answer is kept, since several recognizers ask about the same text in turn."""
    global _last_case
    last = _last_case
    if last[0] is text:
        return last[1]
    has_upper = any(c.isupper() for c in text)
    has_lower = any(c.islower() for c in text)
    if has_lower and not has_upper:
        case = "lower"
    elif has_upper and not has_lower:
        case = "upper"
    else:
        case = "mixed"
    _last_case = (text, case)
    return case


def words_before(text: str, start: int, count: int) -> list[str]:
    """Up to ``count`` lower-cased word tokens ending before ``start`` (nearest last)."""
    window = text[max(0, start - 60) : start]
    return [m.group(0).lower().rstrip(".") for m in WORD_RE.finditer(window)][-count:]


class ProjectRecognizer(EntityRecognizer):
    """Base for our recognizers: assets are compiled once in ``__init__``."""

    def load(self) -> None:
        return None

    def _result(self, entity: str, start: int, end: int, score: float) -> RecognizerResult:
        return RecognizerResult(
            entity_type=entity,
            start=start,
            end=end,
            score=score,
            analysis_explanation=AnalysisExplanation(
                recognizer=self.name, original_score=score,
                textual_explanation=f"{entity} by {self.name}",
            ),
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )
