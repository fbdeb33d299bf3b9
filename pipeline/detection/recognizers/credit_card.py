"""Payment card numbers of every major scheme, plain, spaced or dashed, Luhn-checked."""

from __future__ import annotations

import re

from pipeline.detection.recognizers._base import ProjectRecognizer, digit_count, luhn_ok

_CANDIDATE = re.compile(r"(?<![\w\-.])\d(?:[ \-]?\d){11,18}(?![\w\-]|\.\d)")
#: The first 12 digits of every ``_CANDIDATE`` match, without its look-arounds (exact
#: pre-filter; starting with a digit class, it is searched much faster).
_HINT = re.compile(r"\d(?:[ \-]?\d){11}")
# IIN ranges: Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir, RuPay.
_SCHEME = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6011|64[4-9]|65|62|5[06-9]|6\d|22)")
_GROUPINGS = {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 1), (4, 4, 4, 2),
              (4, 4, 4, 3), (4, 4, 5), (4, 4, 4)}


class CardNumberRecognizer(ProjectRecognizer):
    """CREDIT_CARD: 12-19 digits, a known IIN prefix, consistent grouping and a valid Luhn sum."""

    def __init__(self, supported_language: str = "en", score: float = 1.0):
        self.score = score
        super().__init__(supported_entities=["CREDIT_CARD"], name="CardNumberRecognizer",
                         supported_language=supported_language)

    def analyze(self, text, entities, nlp_artifacts=None):
        out = []
        if digit_count(text) < 12 or not _HINT.search(text):  # pre-filter: 12+ digits
            return out
        for m in _CANDIDATE.finditer(text):
            raw = m.group(0)
            seps = set(re.findall(r"[ \-]", raw))
            if len(seps) > 1:
                continue
            groups = tuple(len(g) for g in re.split(r"[ \-]", raw))
            if len(groups) > 1 and groups not in _GROUPINGS:
                continue
            digits = raw.replace(" ", "").replace("-", "")
            if not 13 <= len(digits) <= 19 or not _SCHEME.match(digits) or not luhn_ok(digits):
                continue
            if len(set(digits)) == 1:
                continue
            out.append(self._result("CREDIT_CARD", m.start(), m.end(), self.score))
        return out
