"""Shared helpers for the project's Presidio recognizers."""

from __future__ import annotations

import re

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult

#: A word token: letters (any script) joined by ' ’ or -, optionally one trailing dot.
WORD_RE = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?")
#: Any token: a word, a number (with inner separators) or one other non-space character.
TOKEN_RE = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?|\d+(?:[.,:/\-]\d+)*|\S")


def phrase_alternation(phrases) -> str:
    r"""A regex fragment (no group of its own at the top) matching what
    ``"|".join(re.escape(p).replace(r"\ ", r"\s+") for p in parts)`` matches, ``parts``
    the distinct lower-cased ``phrases`` longest first, and choosing the same branch: the
    phrases as a trie (``m(?:r(?:s|)|s)`` for ``mrs|mr|ms``), so the engine reads each
    position once instead of trying every phrase in turn.

    Why the same: at one position, two phrases can both match only if one is a prefix of
    the other (siblings in the trie begin with different lower-case characters, or a space
    (``\s+``) and a non-space character), and then the longer is tried first in both, the
    trie trying every continuation of a node before ending there. Raises ``ValueError`` for
    a phrase with whitespace other than a single-space separator, or siblings that could
    match the same character case-insensitively (the caller then keeps the plain list).
    Empty phrases are ignored.
    """
    parts = sorted({p.lower() for p in phrases if p}, key=len, reverse=True)
    root: dict = {}
    for part in parts:
        node = root
        for ch in part:
            if ch != " " and ch.isspace():
                raise ValueError("a phrase holds whitespace other than spaces")
            node = node.setdefault(ch, {})
        node[None] = None  # a phrase ends here

    def emit(node: dict) -> str:
        chars = [ch for ch in node if ch is not None]
        _check_distinct([ch for ch in chars if ch != " "])
        branches = [(r"\s+" if ch == " " else re.escape(ch)) + emit(node[ch]) for ch in chars]
        if None in node:
            return "(?:" + "|".join(branches) + "|)" if branches else ""
        if len(branches) == 1:
            return branches[0]
        return "(?:" + "|".join(branches) + ")"

    return emit(root) if root else "(?!)"


def _check_distinct(chars: list[str]) -> None:
    """Raise ``ValueError`` if two of ``chars`` could match one character under
    ``re.IGNORECASE`` (``s`` and ``ſ``, ``i`` and ``ı``): tried on their case variants."""
    if len(chars) < 2:
        return
    for i, a in enumerate(chars):
        for b in chars[i + 1:]:
            probes = {v for c in (a, b) for v in (c, c.upper(), c.lower(), c.casefold(),
                                                    c.title()) if len(v) == 1}
            pa = re.compile(re.escape(a), re.IGNORECASE)
            pb = re.compile(re.escape(b), re.IGNORECASE)
            if any(pa.fullmatch(v) and pb.fullmatch(v) for v in probes):
                raise ValueError("two phrase characters match one character")


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
