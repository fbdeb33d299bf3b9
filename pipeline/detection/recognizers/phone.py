"""Phone numbers in any region: E.164, national formats, brackets, separators, glued to a word.

Candidates come from one compiled pattern; each is then filtered by shape (dates, IPs,
amounts, SSNs, card-like runs are not phones), scored with :mod:`phonenumbers`
(``+``/``00`` international numbers and numbers valid in one of ``regions`` score high;
bare digit runs score low and need a context word, applied by Presidio's context
enhancer) and dropped when a *negative* context word (``code``, ``order``, ``ref``, ...)
sits right before it with no phone word closer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import phonenumbers

from pipeline.detection.recognizers._base import ProjectRecognizer, digit_count, words_before

_CANDIDATE = re.compile(
    r"""
    (?<![\d+])
    (?:\+\s?|\b00\s?)?                       # international prefix
    (?:\(\s?\+?\d{1,5}\s?\)\s?[\s.\-]?)?     # (area) or (0) in brackets
    \d{1,15}
    (?:(?:[ .\-]|\s?\(\d{1,4}\)\s?)\d{1,12}){0,7}  # more groups; single separators
    (?!\d|[.,]\d)
    """,
    re.VERBOSE,
)
#: Where a ``_CANDIDATE`` match can start (see :func:`_candidates`): ``+``, ``(`` or a digit
#: (the first character of every match), with no digit or ``+`` before it (the pattern's own
#: look-behind, checked after the character so that the pattern starts with a class).
_CANDIDATE_START = re.compile(r"[+(\d](?<![\d+].)")
_NON_DIGIT = re.compile(r"\D")
_DIGIT_RUN = re.compile(r"\d+")
_ORDINAL_AFTER = re.compile(r"\s?(?:st|nd|rd|th)\b", re.IGNORECASE)
_DATE = re.compile(r"^(?:\d{4}[.\-]\d{1,2}[.\-]\d{1,2}|\d{1,2}[.\-]\d{1,2}[.\-]\d{2,4})(?!\d)")
_TIME_AFTER = re.compile(r"[:h]\d")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_AMOUNT = re.compile(r"^\d{1,3}(?:[.,]\d{3})*[.,]\d{2}$|^\d+[.,]\d{1,2}$")
_CURRENCY_BEFORE = re.compile(r"(?:[$€£¥₹]|R\$|\b(?:usd|eur|gbp|brl|mxn|inr|aud))\s?$",
                              re.IGNORECASE)
#: Letters a phone number may be glued to (``mobile212-555-0147``, ``tel:0123``).
_GLUE_WORDS = ("mobile", "mob", "tel", "phone", "ph", "cell", "fax", "call", "whatsapp",
               "number", "num", "nr", "no", "telefono", "teléfono", "telefone", "telefon",
               "handy", "movil", "móvil", "celular", "portable", "contact", "sms", "txt", "text")
_ID_MARK_BEFORE = re.compile(r"(?:[#№]|[A-Za-z0-9][\-_/]|[A-Za-z]{1,4}\d*[\-_]?)$")


def _candidates(text: str) -> Iterator[re.Match]:
    """The matches of ``_CANDIDATE.finditer(text)``, in order, found faster.

    ``finditer`` tries the pattern at every position from where the last match ended; a
    match can only start where ``_CANDIDATE_START`` matches, and ``re`` finds those with its
    fast scan for a leading character class (a leading look-behind, as in ``_CANDIDATE``,
    has none). So the pattern is tried (``match``, which sees the text before the position
    for its look-behind) at those positions only, in the same order."""
    find = _CANDIDATE_START.search
    match = _CANDIDATE.match
    pos = 0
    while (start := find(text, pos)) is not None:
        m = match(text, start.start())
        if m is None:
            pos = start.start() + 1
        else:
            yield m
            pos = m.end()


#: Shortest candidate worth checking (exact shortcut): ``ndig`` below counts the digits of
#: the candidate, at most its length, and must be 7 or more.
_MIN_CANDIDATE_CHARS = 7
#: Most candidates whose score a recognizer remembers.
_SCORE_MEMO = 4096


class PhoneNumberRecognizer(ProjectRecognizer):
    """PHONE_NUMBER in any region, scored with :mod:`phonenumbers` and context."""

    def __init__(
        self,
        supported_language: str = "en",
        context: Iterable[str] = (),
        negative_context: Iterable[str] = (),
        regions: Iterable[str] = ("US", "GB", "DE", "FR", "ES", "MX", "BR", "IN", "AU"),
        scores: dict[str, float] | None = None,
    ):
        self.negative_context = frozenset(negative_context)
        self.positive_context = frozenset(w for w in context if " " not in w)
        self.regions = tuple(regions)
        self.scores = {"international": 0.85, "valid": 0.7, "grouped": 0.5, "bare": 0.3,
                       "bare_valid": 0.45,
                       **(scores or {})}
        super().__init__(supported_entities=["PHONE_NUMBER"], name="PhoneNumberRecognizer",
                         supported_language=supported_language, context=list(context))
        #: ``_score`` answers per candidate (a pure function of it): a sender's own numbers
        #: recur in every text of its templates. Bounded: cleared when full.
        self._scored: dict[str, float | None] = {}

    def analyze(self, text, entities, nlp_artifacts=None):
        out = []
        if digit_count(text) < 7:  # pre-filter: every phone has 7+ digits
            return out
        for m in _candidates(text):
            raw = m.group(0)
            if len(raw) < _MIN_CANDIDATE_CHARS:
                continue  # fewer than 7 characters hold fewer than 7 digits: ``ndig < 7``
            start, end = m.start(), m.end()
            # trim trailing separators the pattern may not take, and leading spaces
            raw_stripped = raw.strip()
            start += len(raw) - len(raw.lstrip())
            end = start + len(raw_stripped)
            raw = raw_stripped
            digits = _NON_DIGIT.sub("", raw)
            intl = raw.startswith("+") or raw.startswith("00")
            ndig = len(digits) - (2 if raw.startswith("00") else 0)
            if not (7 <= ndig <= 15) or (intl and ndig < 8):
                continue
            if not self._shape_ok(raw, digits, intl):
                continue
            before = text[max(0, start - 24) : start]
            if not self._left_ok(before):
                continue
            if end < len(text) and text[end].isalpha() and ndig < 10:
                continue
            if _ORDINAL_AFTER.match(text, end) or _TIME_AFTER.match(text, end):
                continue
            if _CURRENCY_BEFORE.search(before):
                continue
            # the negative-word check is cheap, the phonenumbers scoring is not: check first
            if self._negative(words_before(text, start, 3)):
                continue
            scored = self._scored
            if raw in scored:
                score = scored[raw]
            else:
                if len(scored) >= _SCORE_MEMO:
                    scored.clear()
                score = scored[raw] = self._score(raw, digits, intl)
            if score is not None:
                out.append(self._result("PHONE_NUMBER", start, end, score))
        return out

    @staticmethod
    def _shape_ok(raw: str, digits: str, intl: bool) -> bool:
        if _DATE.match(raw) or _IPV4.match(raw) or _SSN.match(raw) or _AMOUNT.match(raw):
            return False
        if len(set(digits)) == 1:
            return False
        if not intl and len(digits) >= 13:  # card-like or id-like runs
            return False
        return True

    def _left_ok(self, before: str) -> bool:
        """Reject ids (``ORD-123``, ``#123``, ``INV123``) unless glued to a phone word."""
        if not before:
            return True
        last = before[-1]
        if last.isalpha():
            word = re.search(r"[^\W\d_]+$", before).group(0).lower()
            return any(word.endswith(g) for g in _GLUE_WORDS)
        if last in "#№_/":
            return False
        if last in "-" and len(before) >= 2 and before[-2].isalnum():
            return False
        if last == ":" and re.search(r"(?:tel|phone|sip|fax)\s*:$", before, re.IGNORECASE):
            return True
        return True

    def _negative(self, near: list[str]) -> bool:
        """A negative word among the nearest words, with no phone word after it."""
        for word in reversed(near):
            if word in self.positive_context:
                return False
            if word in self.negative_context:
                return True
        return False

    def _score(self, raw: str, digits: str, intl: bool) -> float | None:
        if intl:
            number = "+" + (digits[2:] if raw.startswith("00") else digits)
            try:
                parsed = phonenumbers.parse(number, None)
            except phonenumbers.NumberParseException:
                return self.scores["grouped"]
            if phonenumbers.is_possible_number(parsed):
                return self.scores["international"]
            return self.scores["grouped"]
        groups = len(_DIGIT_RUN.findall(raw))
        if groups < 2 and "(" not in raw and len(digits) < 10:
            # a bare run of 7-9 digits scores "bare" whether valid or not: skip the parsing
            return self.scores["bare"]
        valid = False
        for region in self.regions:
            try:
                parsed = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                valid = True
                break
        if groups >= 2 or "(" in raw:
            return self.scores["valid"] if valid else self.scores["grouped"]
        if valid and len(digits) >= 10:
            return self.scores["bare_valid"]
        return self.scores["bare"]
