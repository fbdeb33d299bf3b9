"""IPv4 and IPv6 addresses, validated with :mod:`ipaddress`."""

from __future__ import annotations

import ipaddress
import re

from pipeline.detection.recognizers._base import ProjectRecognizer, digit_count

_V4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_V6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?:%\w+)?"
                 r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")

#: Exact pre-filter for ``_V6``: its look-ahead needs two colons with only hex digits between.
_V6_HINT = re.compile(r":[0-9A-Fa-f]*:")


class IpAddressRecognizer(ProjectRecognizer):
    """IP_ADDRESS: dotted quads with octets <= 255, and IPv6 (full, compressed, mapped)."""

    def __init__(self, supported_language: str = "en", score: float = 0.85):
        self.score = score
        super().__init__(supported_entities=["IP_ADDRESS"], name="IpAddressRecognizer",
                         supported_language=supported_language)

    def analyze(self, text, entities, nlp_artifacts=None):
        out = []
        if text.count(".") >= 3 and digit_count(text) >= 4:  # pre-filter: a dotted quad
            for m in _V4.finditer(text):
                try:
                    ipaddress.IPv4Address(m.group(0))
                except ValueError:
                    continue
                out.append(self._result("IP_ADDRESS", m.start(), m.end(), self.score))
        if text.count(":") >= 2 and _V6_HINT.search(text):
            for m in _V6.finditer(text):
                cand = m.group(0)
                if sum(c in "0123456789abcdefABCDEF" for c in cand) < 3:
                    continue
                try:
                    ipaddress.IPv6Address(cand.split("%")[0])
                except ValueError:
                    continue
                out.append(self._result("IP_ADDRESS", m.start(), m.end(), self.score))
        return out
