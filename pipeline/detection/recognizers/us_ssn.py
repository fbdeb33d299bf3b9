"""US Social Security numbers (dashed or spaced; unseparated ones need context)."""

from __future__ import annotations

import re

from pipeline.detection.recognizers._base import ProjectRecognizer, digit_count

_CANDIDATE = re.compile(r"(?<![\w\-.])(\d{3})([ \-]?)(\d{2})\2(\d{4})(?![\w\-]|\.\d)")
#: ``_CANDIDATE`` without its look-arounds and back-reference, so every candidate holds a
#: match of it (exact pre-filter; starting with a digit class, it is searched much faster).
_HINT = re.compile(r"\d{3}[ \-]?\d{2}[ \-]?\d{4}")


class SsnRecognizer(ProjectRecognizer):
    """US_SSN: ``AAA-GG-SSSS`` with the SSA's never-issued areas, groups and serials excluded.

    Separated numbers score ``score``; a bare 9-digit run scores ``bare_score`` and needs a
    context word (``ssn``, ``social security``) to pass the threshold, since order ids and
    codes are 9-digit runs too.
    """

    def __init__(self, supported_language: str = "en", context=None, score: float = 0.85,
                 bare_score: float = 0.2):
        self.score = score
        self.bare_score = bare_score
        super().__init__(supported_entities=["US_SSN"], name="SsnRecognizer",
                         supported_language=supported_language, context=list(context or ()))

    def analyze(self, text, entities, nlp_artifacts=None):
        out = []
        if digit_count(text) < 9 or not _HINT.search(text):  # pre-filter: an SSN has 9 digits
            return out
        for m in _CANDIDATE.finditer(text):
            area, sep, group, serial = m.group(1), m.group(2), m.group(3), m.group(4)
            if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
                continue
            if len(set(area + group + serial)) == 1:
                continue
            score = self.score if sep else self.bare_score
            out.append(self._result("US_SSN", m.start(), m.end(), score))
        return out
