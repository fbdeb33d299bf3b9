"""PERSON and LOCATION from spaCy's NER, with the noise of a small English model removed."""

from __future__ import annotations

import re

from pipeline.detection.lexicon import NOT_NAME, PERSON_BEFORE, non_name_words
from pipeline.detection.recognizers._base import ProjectRecognizer, text_case

_HAS_BAD = re.compile(r"[\d@#$€£%&*=_/\\|<>]")


class NerRecognizer(ProjectRecognizer):
    """Reads the mapped spaCy entities from the precomputed NLP artifacts.

    Drops spans with digits or symbols, spans made only of stop words or chat and calendar
    words, and trims greeting/stop words at either end (``Hi Paul`` -> ``Paul``).
    """

    def __init__(self, supported_language: str = "en", score: float = 0.85,
                 entities: tuple[str, ...] = ("PERSON", "LOCATION")):
        self.score = score
        greet = {w for words in PERSON_BEFORE.values() for w in words if " " not in w}
        self.stop = non_name_words(supported_language) | greet | {"hola", "oi", "olá"}
        super().__init__(supported_entities=list(entities), name="NerRecognizer",
                         supported_language=supported_language)

    def analyze(self, text, entities, nlp_artifacts=None):
        if nlp_artifacts is None:
            return []
        out = []
        case = text_case(text)
        for ent in nlp_artifacts.entities:
            label = ent.label_
            if label not in entities or label not in self.supported_entities:
                continue
            toks = [t for t in ent if not t.is_punct]
            while toks and (toks[0].lower_ in self.stop or toks[0].lower_ in NOT_NAME):
                toks.pop(0)
            while toks and (toks[-1].lower_ in self.stop or toks[-1].lower_ in NOT_NAME):
                toks.pop()
            if not toks:
                continue
            start, end = toks[0].idx, toks[-1].idx + len(toks[-1].text)
            surface = text[start:end]
            if _HAS_BAD.search(surface) or not any(c.isalpha() for c in surface):
                continue
            if label == "PERSON" and sum(c.isalpha() for c in surface) < 2:
                continue
            if not any(c.isupper() for c in surface):
                # a lower-case guess is only worth something in all-lower-case English
                # (chat answers like "james"); in mixed case it is a common noun
                if case != "lower" or self.supported_language != "en":
                    continue
            out.append(self._result(label, start, end, self.score))
        return out
