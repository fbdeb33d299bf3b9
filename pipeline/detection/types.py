"""Value types shared by the detectors and the classifier."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EntitySpan:
    """One PII entity found in a text.

    ``type`` is a Presidio entity type (``PHONE_NUMBER``, ``PERSON``, ...) or one of the
    project's own (``CPAAS_SID``, ``SIP_URI``, ``IMSI``, ``ICCID``); ``start``/``end`` are
    Unicode code-point offsets into the text (Python ``str`` indices, end exclusive);
    ``score`` is in [0, 1]; ``recognizer`` names the recognizer that found it, or
    ``"rule"`` when the policy declared the entity of a structured field.
    """

    type: str
    start: int
    end: int
    score: float
    recognizer: str

    def to_json(self) -> dict:
        """The envelope form: ``{"type", "start", "end", "score", "recognizer"}``."""
        return {
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
            "recognizer": self.recognizer,
        }
