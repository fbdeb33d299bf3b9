"""The project's recognizers, built by name from :class:`DetectionConfig` (one per language)."""

from __future__ import annotations

import re

import regex
from presidio_analyzer import EntityRecognizer, PatternRecognizer, RecognizerResult

from pipeline.detection import lexicon
from pipeline.detection.config import DetectionConfig
from pipeline.detection.recognizers.address import AddressRecognizer
from pipeline.detection.recognizers.cpaas import CpaasIdRecognizer
from pipeline.detection.recognizers.credit_card import CardNumberRecognizer
from pipeline.detection.recognizers.iban import IbanGroupsRecognizer
from pipeline.detection.recognizers.ip_address import IpAddressRecognizer
from pipeline.detection.recognizers.ner import NerRecognizer
from pipeline.detection.recognizers.person_context import PersonContextRecognizer
from pipeline.detection.recognizers.phone import PhoneNumberRecognizer
from pipeline.detection.recognizers.us_ssn import SsnRecognizer

__all__ = ["build_recognizers"]

_SSN_CONTEXT = ("ssn", "social", "security", "ss#", "seguro", "sécurité", "sozialversicherung")
_CPAAS_CONTEXT = ("imsi", "iccid", "sim", "subscriber")


def _words(config: DetectionConfig, table: dict, kind: str, language: str,
           with_english: bool = True) -> list[str]:
    words = list(table.get(language, ()))
    if with_english and language != "en":
        words += table.get("en", ())
    words += config.context.get(language, {}).get(kind, [])
    return list(dict.fromkeys(words))


class _RequiresChar:
    """Mixin: skip a recognizer when none of ``_required`` is in the text (cheap pre-filter)."""

    _required: str = ""

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        if not any(c in text for c in self._required):
            return []
        return super().analyze(text, entities, nlp_artifacts, regex_flags)


def _email(language: str) -> EntityRecognizer:
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    class _Email(_RequiresChar, EmailRecognizer):
        _required = "@"

    return _Email(supported_language=language)


#: Every pattern of Presidio's UrlRecognizer needs a dot and a letter (the top-level domain).
_URL_HINT = re.compile(r"\.[^\W\d_]")


#: A run of non-space characters: no URL pattern matches a space, nor looks around.
_NON_SPACE_RUN = re.compile(r"\S+")


def _url(language: str) -> EntityRecognizer:
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    class _Url(UrlRecognizer):
        def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
            """Presidio's patterns on each run of non-space characters holding a dot and a
            letter (the top-level domain), offsets moved back onto ``text``. Every match
            lies in one such run and the patterns have no anchors or look-arounds, so the
            results are those of the whole text; the 1,500-way alternation only reads the
            runs that can hold a URL."""
            if not _URL_HINT.search(text):
                return []
            out = []
            for run in _NON_SPACE_RUN.finditer(text):
                if not _URL_HINT.search(run.group(0)):
                    continue
                found = self._analyze_run(run.group(0), regex_flags)
                base = run.start()
                for r in found:
                    r.start += base
                    r.end += base
                out.extend(found)
            return out

        def _analyze_run(self, run: str, regex_flags=None) -> list:
            """``PatternRecognizer.analyze(run)``: the same steps (each pattern in order,
            empty matches skipped, ``validate_result``/``invalidate_result``, scores at the
            minimum dropped, ``remove_duplicates``), without its per-pattern timing, debug
            logging and match timeout (60 s by default; a run is one chunk's non-space
            characters at most, far below it)."""
            flags = regex_flags if regex_flags else self.global_regex_flags
            entity = self.supported_entities[0]
            results = []
            for pattern in self.patterns:
                rx = pattern.compiled_regex
                if not rx or pattern.compiled_with_flags != flags:
                    pattern.compiled_with_flags = flags
                    rx = pattern.compiled_regex = regex.compile(pattern.regex, flags=flags)
                for match in rx.finditer(run):
                    start, end = match.span()
                    current = run[start:end]
                    if current == "":
                        continue
                    validation = self.validate_result(current)
                    explanation = self.build_regex_explanation(
                        self.name, pattern.name, pattern.regex, pattern.score, validation, flags)
                    result = RecognizerResult(
                        entity_type=entity, start=start, end=end, score=pattern.score,
                        analysis_explanation=explanation,
                        recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                              RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
                    if validation is not None:
                        result.score = (EntityRecognizer.MAX_SCORE if validation
                                        else EntityRecognizer.MIN_SCORE)
                    invalid = self.invalidate_result(current)
                    if invalid is not None and invalid:
                        result.score = EntityRecognizer.MIN_SCORE
                    if result.score > EntityRecognizer.MIN_SCORE:
                        results.append(result)
                    explanation.score = result.score
            return EntityRecognizer.remove_duplicates(results)

    return _Url(supported_language=language)


def build_recognizers(config: DetectionConfig, language: str) -> list[EntityRecognizer]:
    """Recognizers enabled in ``config`` for texts in ``language`` (context words applied)."""
    L = lexicon
    enabled = set(config.recognizers)
    out: list[EntityRecognizer] = []
    if "phone" in enabled:
        out.append(PhoneNumberRecognizer(
            supported_language=language,
            context=_words(config, L.PHONE_CONTEXT, "phone", language),
            negative_context=_words(config, L.NUMBER_NEGATIVE_CONTEXT, "negative", language),
            regions=config.phone_regions,
        ))
    if "credit_card" in enabled:
        out.append(CardNumberRecognizer(supported_language=language))
    if "iban" in enabled:
        out.append(IbanGroupsRecognizer(supported_language=language))
    if "us_ssn" in enabled:
        ctx = list(_SSN_CONTEXT) + config.context.get(language, {}).get("ssn", [])
        out.append(SsnRecognizer(supported_language=language, context=ctx))
    if "ip_address" in enabled:
        out.append(IpAddressRecognizer(supported_language=language))
    if "email" in enabled:
        out.append(_email(language))
    if "url" in enabled:
        out.append(_url(language))
    if "cpaas_ids" in enabled:
        out.append(CpaasIdRecognizer(supported_language=language, context=_CPAAS_CONTEXT))
    if "person_context" in enabled:
        out.append(PersonContextRecognizer(
            supported_language=language,
            before=_words(config, L.PERSON_BEFORE, "person_before", language),
            after=_words(config, L.PERSON_AFTER, "person_after", language),
        ))
    if "address" in enabled:
        out.append(AddressRecognizer(
            supported_language=language,
            place_before=_words(config, L.PLACE_BEFORE, "place_before", language,
                                with_english=False),
        ))
    if "ner" in enabled:
        out.append(NerRecognizer(supported_language=language))
    for entity, values in config.deny_list.items():
        if values:
            out.append(PatternRecognizer(supported_entity=entity, deny_list=list(values),
                                         supported_language=language,
                                         name=f"DenyList_{entity}"))
    return out
