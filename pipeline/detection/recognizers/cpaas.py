"""CPaaS identifiers reported as their own entity types (never as phones or persons).

- ``CPAAS_SID``: a two-letter resource prefix (``AC``, ``SM``, ``MM``, ``CA``, ``RE``, ``PN``,
  ...) followed by 32 hex digits;
- ``SIP_URI``: ``sip:``/``sips:`` URIs;
- ``ICCID``: SIM serial numbers, ``89`` + 16-20 digits (optional trailing ``F``), Luhn-checked
  when 19 or 20 digits long, otherwise they need a context word;
- ``IMSI``: 15 digits starting with a plausible MCC; only with a context word (``imsi``),
  since a bare 15-digit run is more often an id.
"""

from __future__ import annotations

import re

from pipeline.detection.recognizers._base import ProjectRecognizer, digit_count, luhn_ok

_SID = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9a-fA-F]{32}(?![A-Za-z0-9])")
_SIP = re.compile(r"(?<![\w])sips?:[^\s<>\"',;]+(?:;[^\s<>\"',]+)*", re.IGNORECASE)
_ICCID = re.compile(r"(?<![\w\-])89(?:[ \-]?\d){16,20}[Ff]?(?![\w\-])")
_IMSI = re.compile(r"(?<![\w\-.+])[2-7]\d{14}(?![\w\-]|\.\d)")
#: Exact pre-filters: each pattern without its look-arounds (and the tail of ``_ICCID``), so
#: every match of the pattern holds a match of its hint; they start with a literal or a
#: character class, which ``re`` searches much faster than a leading look-behind.
_SID_HINT = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_ICCID_HINT = re.compile(r"89(?:[ \-]?\d){16}")
_IMSI_HINT = re.compile(r"[2-7]\d{14}")


class CpaasIdRecognizer(ProjectRecognizer):
    """CPAAS_SID, SIP_URI, ICCID and IMSI."""

    ENTITIES = ["CPAAS_SID", "SIP_URI", "ICCID", "IMSI"]

    def __init__(self, supported_language: str = "en", context=None):
        super().__init__(supported_entities=list(self.ENTITIES), name="CpaasIdRecognizer",
                         supported_language=supported_language, context=list(context or ()))

    def analyze(self, text, entities, nlp_artifacts=None):
        out = []
        if len(text) >= 34 and _SID_HINT.search(text):
            for m in _SID.finditer(text):
                out.append(self._result("CPAAS_SID", m.start(), m.end(), 0.95))
        # exact pre-filter: in ASCII text, a case-insensitive "sip" is in the lower-cased text
        if ":" in text and (not text.isascii() or "sip" in text.lower()):
            for m in _SIP.finditer(text):
                end = m.end()
                while end > m.start() and text[end - 1] in ".)]":
                    end -= 1
                out.append(self._result("SIP_URI", m.start(), end, 0.95))
        if digit_count(text) < 15:  # pre-filter: ICCIDs have 18+ digits, IMSIs 15
            return out
        if _ICCID_HINT.search(text):
            for m in _ICCID.finditer(text):
                digits = re.sub(r"\D", "", m.group(0))
                score = 0.9 if len(digits) in (19, 20) and luhn_ok(digits) else 0.3
                out.append(self._result("ICCID", m.start(), m.end(), score))
        if _IMSI_HINT.search(text):
            for m in _IMSI.finditer(text):
                out.append(self._result("IMSI", m.start(), m.end(), 0.1))
        return out
