"""Phrase lists compiled as a trie (:func:`phrase_alternation`) match exactly what the plain
longest-first alternation matches, for every word list the recognizers use."""

from __future__ import annotations

import random
import re

import pytest

from pipeline.benchmark import a2p_bodies
from pipeline.detection import DetectionConfig
from pipeline.detection import lexicon as L
from pipeline.detection.recognizers import _words
from pipeline.detection.recognizers._base import phrase_alternation

_SEPARATORS = [" ", "  ", "\t", "\n", ",", ", ", ".", ":", "'", "’", "-", "", "x", "1", "–",
               " \u00a0"]


def _plain(parts: list[str]) -> str:
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in parts)


def _fuzz(words: list[str], n: int, seed: int) -> list[str]:
    """Texts of whole and cut phrases, mixed case, look-alike letters, odd separators."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 6)):
            w = rng.choice(words)
            if rng.random() < 0.5:
                w = w[:rng.randint(1, len(w))]
            w = "".join(c.upper() if rng.random() < 0.3 else c for c in w)
            if rng.random() < 0.15:
                w = w.replace("s", "ſ").replace("i", "ı").replace("k", "\u212a")
            parts.append(w + rng.choice(_SEPARATORS))
        out.append("".join(parts))
    return out


_LISTS = [
    (L.PERSON_BEFORE, "person_before", True, r"(?<![\w'’])(?:", r")(?![\w'’])[\s,:;!\-–—.]*"),
    (L.PERSON_AFTER, "person_after", True, r"[\s,]+(?:", r")(?![\w'’])"),
    (L.PLACE_BEFORE, "place_before", False, r"(?<![\w'’])(?:", r")\s+"),
]


@pytest.mark.parametrize("language", DetectionConfig().languages)
@pytest.mark.parametrize("table, kind, english, head, tail", _LISTS)
def test_trie_matches_the_plain_alternation(language, table, kind, english, head, tail):
    words = _words(DetectionConfig(), table, kind, language, with_english=english)
    if not words:
        pytest.skip("no phrases for this language")
    parts = sorted({p.lower() for p in words}, key=len, reverse=True)
    plain = re.compile(head + _plain(parts) + tail, re.IGNORECASE)
    trie = re.compile(head + phrase_alternation(parts) + tail, re.IGNORECASE)
    texts = a2p_bodies(200, seed=2) + _fuzz(parts, 1500, seed=len(parts))
    for text in texts:
        assert [m.span() for m in trie.finditer(text)] == \
            [m.span() for m in plain.finditer(text)], text


def test_trie_prefers_the_longer_phrase():
    rx = re.compile(r"(?:" + phrase_alternation(["mr", "mrs", "mr.", "good", "good morning"])
                    + r")(?!\w)", re.IGNORECASE)
    assert [m.group(0) for m in rx.finditer("Good  Morning mrs. MR. mr")] == \
        ["Good  Morning", "mrs", "MR.", "mr"]


@pytest.mark.parametrize("phrases", [["sa", "ſb"], ["ia", "ıb"], ["a\tb"]])
def test_ambiguous_phrase_lists_are_refused(phrases):
    with pytest.raises(ValueError):
        phrase_alternation(phrases)


def test_no_phrases_match_nothing():
    assert re.search(phrase_alternation([]), "anything") is None
