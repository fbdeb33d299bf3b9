"""IBANs, compact or in groups of four, any case, checked with ISO 13616 mod 97."""

from __future__ import annotations

import re

from pipeline.detection.recognizers._base import ProjectRecognizer, digit_count

_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]{1,4}){3,9}(?![A-Za-z0-9])"
)


def iban_ok(compact: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    if not 15 <= len(compact) <= 34 or not compact[2:4].isdigit():
        return False
    s = (compact[4:] + compact[:4]).upper()
    try:
        return int("".join(str(int(c, 36)) for c in s)) % 97 == 1
    except ValueError:
        return False


class IbanGroupsRecognizer(ProjectRecognizer):
    """IBAN_CODE: the longest prefix of a candidate (cut at a group boundary) that passes mod 97."""

    def __init__(self, supported_language: str = "en", score: float = 1.0):
        self.score = score
        super().__init__(supported_entities=["IBAN_CODE"], name="IbanGroupsRecognizer",
                         supported_language=supported_language)

    def analyze(self, text, entities, nlp_artifacts=None):
        out = []
        if digit_count(text) < 2:  # pre-filter: check digits after the country code
            return out
        for m in _CANDIDATE.finditer(text):
            raw = m.group(0)
            # Candidate cut points: the end of the match and every separator inside it.
            cuts = [len(raw)] + [i for i in range(len(raw) - 1, 3, -1) if raw[i] in " -"]
            for cut in cuts:
                piece = raw[:cut].rstrip(" -")
                if iban_ok(piece.replace(" ", "").replace("-", "")):
                    out.append(self._result("IBAN_CODE", m.start(), m.start() + len(piece),
                                            self.score))
                    break
        return out
