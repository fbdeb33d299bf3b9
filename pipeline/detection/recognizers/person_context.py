"""PERSON from context, in any letter case: ``hi maria``, ``MARIA OYELARAN here``.

spaCy's small English NER only finds Title Case names in English. This recognizer finds
the words right after a trigger (greeting, thanks, self-introduction, title or role, per
language) or right before a post-trigger (``here``, ``speaking``, ``just paid``) and keeps
the run of 1-3 name-like words:

- in mixed-case text a name word is capitalised (``Hans``, ``D.``, ``O'Neil``);
- in all-lower-case or ALL CAPS text, case carries no signal, so a name word is any word
  that is not a stop word of the text's language or of English, nor a chat/calendar word.

No list of names is used (PITFALLS.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.detection.lexicon import NOT_NAME, non_name_words
from pipeline.detection.recognizers._base import (
    TOKEN_RE,
    ProjectRecognizer,
    phrase_alternation,
    text_case,
)

_BOUNDARY = set(".,;:!?()[]{}\"«»—–-\n|/")
_NAME_CONNECTORS = frozenset(("de", "da", "do", "dos", "das", "del", "van", "von", "der",
                              "den", "di", "du", "le", "la", "bin", "al", "el", "mc", "o'"))


#: "I'm", "it's", "we'll": a contraction is never a name word.
_CONTRACTION = re.compile(r"^[^\W\d_]+['’](?:m|s|re|ll|ve|d|t)$")


def _alternation(phrases: Iterable[str]) -> str:
    """The phrases as one regex alternative, longest first (a space matches any run of
    whitespace), as a trie (:func:`phrase_alternation`: same matches, faster)."""
    parts = sorted({p.lower() for p in phrases}, key=len, reverse=True)
    try:
        return phrase_alternation(parts)
    except ValueError:
        return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in parts)


class PersonContextRecognizer(ProjectRecognizer):
    """PERSON after triggers / before post-triggers, lower-case and ALL CAPS included."""

    def __init__(
        self,
        supported_language: str = "en",
        before: Iterable[str] = (),
        after: Iterable[str] = (),
        score: float = 0.8,
        max_words: int = 3,
    ):
        self.score = score
        self.max_words = max_words
        self.stop = non_name_words(supported_language)
        before = tuple(before)
        after = tuple(after)
        # A trigger word is never part of the name it introduces ("Hello, I'm Priya", "Oi, aqui").
        self._trigger_words = frozenset(p.lower() for p in before + after if " " not in p.strip())
        self._before = re.compile(
            r"(?<![\w'’])(?:" + _alternation(before) + r")(?![\w'’])[\s,:;!\-–—.]*",
            re.IGNORECASE,
        ) if before else None
        self._after = re.compile(
            r"[\s,]+(?:" + _alternation(after) + r")(?![\w'’])", re.IGNORECASE
        ) if after else None
        super().__init__(supported_entities=["PERSON"], name="PersonContextRecognizer",
                         supported_language=supported_language)

    # -- name words ---------------------------------------------------------------------
    def _is_name(self, tok: str, case: str) -> bool:
        if not tok[0].isalpha():
            return False
        bare = tok.rstrip(".")
        low = bare.lower()
        if low in self._trigger_words or _CONTRACTION.match(low):
            return False
        if tok.endswith(".") and len(bare) > 1 and case == "mixed":
            # "Hans D." is an initial; "Paul." ends a sentence: caller trims the dot
            pass
        if case == "mixed":
            if not bare[0].isupper():
                return False
            if low in NOT_NAME or (low in self.stop and len(bare) > 1):
                return False
            return True
        if len(bare) < 2 or low in self.stop:
            return False
        return True

    def analyze(self, text, entities, nlp_artifacts=None):
        case = text_case(text)
        out = []
        if self._before is not None:
            for m in self._before.finditer(text):
                span = self._name_after(text, m.end(), case)
                if span:
                    out.append(self._result("PERSON", span[0], span[1], self.score))
        if self._after is not None:
            for m in self._after.finditer(text):
                span = self._name_before(text, m.start(), case)
                if span:
                    out.append(self._result("PERSON", span[0], span[1], self.score))
        return out

    def _name_after(self, text: str, pos: int, case: str) -> tuple[int, int] | None:
        start = end = None
        count = 0
        cursor = pos
        for tm in TOKEN_RE.finditer(text, pos):
            tok = tm.group(0)
            if start is not None and text[cursor:tm.start()].strip():
                break
            cursor = tm.end()
            if count and case == "mixed" and tok.lower() in _NAME_CONNECTORS:
                continue  # tentatively skip a lower-case particle ("Maria da Silva")
            if count >= self.max_words or not self._is_name(tok, case):
                break
            if start is None:
                start = tm.start()
            end = tm.end()
            count += 1
            if tok.endswith(".") and len(tok) > 2:
                end -= 1  # "Paul." ends the sentence
                break
            if "\n" in text[tm.end():tm.end() + 1]:
                break
        if start is None:
            return None
        return start, end

    def _name_before(self, text: str, pos: int, case: str) -> tuple[int, int] | None:
        toks = list(TOKEN_RE.finditer(text[:pos]))
        chosen = []
        for tm in reversed(toks):
            tok = tm.group(0)
            if len(chosen) >= self.max_words or not self._is_name(tok, case):
                break
            chosen.append(tm)
        if not chosen:
            return None
        first = chosen[-1]
        before = text[: first.start()].rstrip()
        # Must start the text or a clause: otherwise "the package here" would be a name.
        if before and before[-1] not in _BOUNDARY:
            if case != "mixed":
                return None
            prev = re.search(r"[^\W\d_]+$", before)
            if prev and prev.group(0).lower() not in self.stop:
                return None
        return first.start(), chosen[0].end()
