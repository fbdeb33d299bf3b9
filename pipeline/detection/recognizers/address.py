"""LOCATION: street addresses (number + street, unit lines) and the city that follows them,
plus capitalised places after a place preposition (``em Amadora``, ``at Port X``).

Shapes, per language (word lists in :mod:`pipeline.detection.lexicon`, none from Faker):

- ``145 Main Street``, ``62985 Kaitlin Rest Apt. 499``, ``454, Joshi Path``,
  ``15/629, Cheema Road``: a house number, 1-4 name words, a street type;
- ``Flat 71, Thomas Extensions``: a unit word and number, then a street;
- ``Reisinggasse 30``, ``Langerstr. 4/1``: a German street-name ending and a number;
- ``Calle Mayor 5``, ``rue de la Paix``, ``Rua das Flores, 12``: street type first;
- ``<house number> <Capitalised words>, <Capitalised words>`` (number, street, city);
- the words after an address and a comma are the city (``..., Diepholz``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.detection.lexicon import (
    CALENDAR,
    GERMAN_STREET_SUFFIXES,
    NAME_CONNECTORS,
    PLACE_PREFIXES,
    STREET_TYPES_AFTER,
    STREET_TYPES_BEFORE,
    UNIT_WORDS,
    stop_words,
)
from pipeline.detection.recognizers._base import (
    TOKEN_RE,
    ProjectRecognizer,
    phrase_alternation,
    text_case,
)

_W = r"[^\W\d_][^\W\d_'’\-]*(?:['’\-][^\W\d_]+)*"
_CAPW = r"[A-ZÀ-ÖØ-Þ][^\W\d_]*(?:['’\-][^\W\d_]+)*"
_ORD = r"\d{1,3}\s?(?:st|nd|rd|th)"
_NUM = r"\d{1,6}[A-Za-z]?(?:\s?[/\-]\s?\d{1,5}[A-Za-z]?)?"


def _alt(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_UNIT = rf"(?:{_alt(w.rstrip('.') for w in UNIT_WORDS if w != '#')})\.?\s*#?\s*\w{{1,6}}"
_STREET_AFTER = re.compile(
    rf"(?<![\w.\-/])(?:(?:{_UNIT}),?\s+)?{_NUM},?\s+(?:(?:{_W}|{_ORD})\s+){{0,3}}"
    rf"(?:{_alt(STREET_TYPES_AFTER)})\.?(?![\w])(?:,?\s+(?:{_UNIT}))?",
    re.IGNORECASE,
)
_UNIT_STREET = re.compile(
    rf"(?<![\w])(?:{_UNIT}),?\s+(?:{_W}\s+){{0,3}}(?:{_alt(STREET_TYPES_AFTER)})\.?(?![\w])",
    re.IGNORECASE,
)
_GERMAN = re.compile(
    rf"(?<![\w]){_W}-?(?:{_alt(GERMAN_STREET_SUFFIXES)})\.?\s+{_NUM}(?![\w])",
    re.IGNORECASE,
)
_STREET_BEFORE = re.compile(
    rf"(?<![\w])(?:{_NUM},?\s+)?(?:{_alt(STREET_TYPES_BEFORE)})\s+"
    rf"(?:(?:{_alt(NAME_CONNECTORS)})\s+){{0,2}}{_W}(?:\s+(?:(?:{_alt(NAME_CONNECTORS)})\s+)?{_W}){{0,3}}"
    rf"(?:,?\s+(?:n[º°o]\.?\s*)?{_NUM}(?![\w]))?",
    re.IGNORECASE,
)
# number, 1-4 capitalised words, comma, capitalised word (case-sensitive on purpose)
_NUM_CAPS_COMMA = re.compile(
    rf"(?<![\w.\-/]){_NUM},?\s+(?:{_CAPW}\s+){{0,3}}{_CAPW}(?=,\s*[A-ZÀ-ÖØ-Þ])"
)

#: What every ``_NUM_CAPS_COMMA`` match is followed by (its look-ahead): an exact pre-filter.
_COMMA_CAPITAL = re.compile(r",\s*[A-ZÀ-ÖØ-Þ]")


_UNIT_LOWER = frozenset(w.rstrip(".") for w in UNIT_WORDS)

# Pre-filters (exact: they only skip a pattern that cannot match). Every street type and
# German ending is matched case-insensitively and ends a run of letters; the street types
# of ``_STREET_AFTER``/``_UNIT_STREET`` and ``_STREET_BEFORE`` also start one. So a pattern
# can only match when the text's letter runs (case-folded) hold one of them.
_LETTER_RUN = re.compile(r"[^\W\d_]+")
_ANY_DIGIT = re.compile(r"\d")
_TYPES_AFTER_FOLDED = frozenset(t.casefold() for t in STREET_TYPES_AFTER)
_TYPES_BEFORE_FOLDED = frozenset(_LETTER_RUN.match(t).group(0).casefold()
                                 for t in STREET_TYPES_BEFORE)
_GERMAN_ENDINGS_FOLDED = tuple({_LETTER_RUN.match(t).group(0).casefold()
                                for t in GERMAN_STREET_SUFFIXES})
#: A letter run of the case-folded text that ends with a German street ending (the endings
#: are letters only, so a match followed by a non-letter ends a run).
_GERMAN_ENDING_AT_RUN_END = re.compile(
    "(?:" + "|".join(re.escape(e) for e in sorted(_GERMAN_ENDINGS_FOLDED, key=len, reverse=True))
    + r")(?![^\W\d_])")
_ROUTE_NUMBER = re.compile(r"\s+\d{1,4}(?![\w])")


class AddressRecognizer(ProjectRecognizer):
    """LOCATION for street addresses and the city after them; places after prepositions."""

    def __init__(
        self,
        supported_language: str = "en",
        place_before: Iterable[str] = (),
        score: float = 0.75,
        place_score: float = 0.6,
    ):
        self.score = score
        self.place_score = place_score
        self.stop = stop_words(supported_language) | stop_words("en") | CALENDAR
        words = sorted({w.lower() for w in place_before}, key=len, reverse=True)
        try:  # the same matches as the plain alternation, faster
            alternation = phrase_alternation(words)
        except ValueError:
            alternation = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words)
        self._place_before = re.compile(
            r"(?<![\w'’])(?:" + alternation + r")\s+", re.IGNORECASE) if words else None
        super().__init__(supported_entities=["LOCATION"], name="AddressRecognizer",
                         supported_language=supported_language)

    def analyze(self, text, entities, nlp_artifacts=None):
        case = text_case(text)
        spans: list[tuple[int, int, float]] = []
        # ``\d`` digits are ``str.isdigit``: the regex answers most texts at C speed
        has_digit = bool(_ANY_DIGIT.search(text)) or any(c.isdigit() for c in text)
        if has_digit:
            for rx in _patterns_for(text):
                for m in rx.finditer(text):
                    if rx is _STREET_BEFORE and not re.search(r"\d", m.group(0)) and (
                            case != "mixed" or not m.group(0)[0].isupper()):
                        # without a number, only a capitalised street type in mixed case
                        # ("Rue de la Paix"), not a preposition homograph ("shipped via UPS")
                        continue
                    if rx in (_STREET_AFTER, _UNIT_STREET) and not self._street_words_ok(m.group(0)):
                        continue
                    end = m.end()
                    if rx is _STREET_AFTER:
                        if not self._has_street_name(text, m):
                            continue
                        numbered = _ROUTE_NUMBER.match(text, end)
                        if numbered:  # "2400 route 9": the route number belongs to the street
                            end = numbered.end()
                    spans.append((m.start(), end, self.score))
            if case == "mixed" and _COMMA_CAPITAL.search(text):
                for m in _NUM_CAPS_COMMA.finditer(text):
                    spans.append((m.start(), m.end(), self.score - 0.1))
        spans = _merge(spans)
        cities = []
        for start, end, _ in spans:
            city = self._words_after_comma(text, end, case)
            if city:
                cities.append((city[0], city[1], self.score))
        out = spans + cities
        if self._place_before is not None:
            for m in self._place_before.finditer(text):
                place = self._place_at(text, m.end(), case)
                if place and not any(s <= place[0] < e for s, e, _ in out):
                    out.append((place[0], place[1], self.place_score))
        return [self._result("LOCATION", s, e, sc) for s, e, sc in out]

    @staticmethod
    def _has_street_name(text: str, m) -> bool:
        """A number and a street type need a name between them (``145 Main Street``), unless
        the street itself is numbered: ``42 5 street`` (house number before) or ``2400 route
        9`` (route number after). ``454 gate B22`` (a boarding gate) is no address."""
        # the last word is the street type; any word before it names the street (street-type
        # words included: "Main", "Green" and "Brook" are both)
        words = [w for w in re.findall(_W, m.group(0)) if w.lower().rstrip(".") not in _UNIT_LOWER]
        if len(words) >= 2:
            return True
        return bool(re.search(r"\d[\s,]+$", text[:m.start()]) or _ROUTE_NUMBER.match(text, m.end()))

    def _street_words_ok(self, surface: str) -> bool:
        """The street's name words are not function words (``4 at port`` is no address)."""
        words = [w.lower().rstrip(".") for w in re.findall(_W, surface)]
        names = [w for w in words if w not in STREET_TYPES_AFTER and w not in _UNIT_LOWER
                 and w not in ("st", "nd", "rd", "th")]
        return not any(w in self.stop for w in names)

    def _name_run(self, text: str, pos: int, case: str, max_words: int = 4):
        """Start/end of a run of place-name words at ``pos`` (connectors allowed inside)."""
        start = end = None
        count = 0
        cursor = pos
        for tm in TOKEN_RE.finditer(text, pos):
            tok = tm.group(0)
            if text[cursor:tm.start()].strip() or "\n" in text[cursor:tm.start()]:
                break
            cursor = tm.end()
            low = tok.lower().rstrip(".")
            if count and low in NAME_CONNECTORS and (case == "mixed" or low in ("de", "da", "do", "dos", "das", "del")):
                continue
            if not tok[0].isalpha() or low in CALENDAR or count >= max_words:
                break
            if case == "mixed":
                if not tok[0].isupper():
                    break
            elif low in self.stop:
                break
            if start is None:
                start = tm.start()
            end = tm.end() - (1 if tok.endswith(".") and len(tok) > 2 else 0)
            count += 1
        return (start, end) if start is not None else None

    def _words_after_comma(self, text: str, pos: int, case: str):
        m = re.match(r"\s*,\s*", text[pos:])
        if not m:
            return None
        return self._name_run(text, pos + m.end(), case, max_words=4)

    def _place_at(self, text: str, pos: int, case: str):
        if case == "mixed":
            run = self._name_run(text, pos, case, max_words=4)
            if run and text[run[0]:run[1]].lower() not in self.stop:
                return run
            return None
        # lower/upper case: only after a toponymic prefix ("at port chelseastad")
        tm = TOKEN_RE.match(text, pos)
        if not tm or tm.group(0).lower() not in PLACE_PREFIXES:
            return None
        run = self._name_run(text, pos, case, max_words=3)
        if run and run[1] > tm.end():
            return run
        return None


def _patterns_for(text: str) -> list:
    """The street patterns that can match ``text``, in their fixed order (pre-filter)."""
    folded = text.casefold()
    words = _LETTER_RUN.findall(folded)
    out = []
    if not _TYPES_AFTER_FOLDED.isdisjoint(words):
        out += (_STREET_AFTER, _UNIT_STREET)
    if _GERMAN_ENDING_AT_RUN_END.search(folded):
        out.append(_GERMAN)
    if not _TYPES_BEFORE_FOLDED.isdisjoint(words):
        out.append(_STREET_BEFORE)
    return out


def _merge(spans):
    spans = sorted(spans)
    merged: list[list] = []
    for s, e, sc in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
            merged[-1][2] = max(merged[-1][2], sc)
        else:
            merged.append([s, e, sc])
    return [tuple(x) for x in merged]
