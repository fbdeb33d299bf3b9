"""Per-text language detection with lingua (model shipped in the wheel: offline)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

_ISO = {"ENGLISH": "en", "SPANISH": "es", "GERMAN": "de", "FRENCH": "fr", "PORTUGUESE": "pt",
        "ITALIAN": "it", "DUTCH": "nl"}
_LETTERS = re.compile(r"[^\W\d_]{2,}")


class LanguageDetector:
    """Detect the language of each text among ``languages`` (ISO 639-1 codes).

    Texts with fewer than ``min_letters`` letters, or where lingua is unsure, get
    ``default``. Only the first ``max_chars`` characters are looked at.

    ``parallel``: use lingua's rayon thread pool for a batch (``None``: unless
    ``RAYON_NUM_THREADS`` is ``1``, as in the detector children). Without it no thread is
    ever started, so a process that loaded the models may fork children that share them
    (:mod:`pipeline.detection.pool`); a rayon pool does not survive a fork. Results are the
    same either way (lingua's batch call maps its one-text call).
    """

    def __init__(self, languages: Sequence[str], default: str = "en",
                 min_letters: int = 8, max_chars: int = 1000, parallel: bool | None = None):
        from lingua import Language, LanguageDetectorBuilder

        by_iso = {v: k for k, v in _ISO.items()}
        langs = [getattr(Language, by_iso[c]) for c in languages if c in by_iso]
        self.default = default
        self.min_letters = min_letters
        self.max_chars = max_chars
        self.single = len(langs) < 2
        if parallel is None:
            parallel = os.environ.get("RAYON_NUM_THREADS", "").strip() != "1"
        self.parallel = parallel
        self._detector = None if self.single else (
            LanguageDetectorBuilder.from_languages(*langs).build()
        )

    def detect_batch(self, texts: Sequence[str]) -> list[str]:
        """One ISO code per text."""
        if self._detector is None:
            return [self.default] * len(texts)
        sample = [t[: self.max_chars] for t in texts]
        todo = [i for i, t in enumerate(sample)
                if sum(len(w) for w in _LETTERS.findall(t)) >= self.min_letters]
        out = [self.default] * len(texts)
        if todo:
            if self.parallel:
                found = self._detector.detect_languages_in_parallel_of([sample[i] for i in todo])
            else:
                one = self._detector.detect_language_of
                found = [one(sample[i]) for i in todo]
            for i, lang in zip(todo, found):
                if lang is not None:
                    out[i] = _ISO.get(lang.name, self.default)
        return out
