"""The text detector: our recognizers on Presidio's AnalyzerEngine, spaCy NER batched, offline.

Flow of :meth:`Detector.analyze_batch`:

1. split each text into chunks of at most ``chunk_chars`` (at a whitespace when possible);
2. detect each text's language with lingua (offline, restricted to ``config.languages``);
3. run spaCy's NER only (the small English model's ``ner`` has its own tok2vec, so the
   tagger, parser and lemmatizer are excluded) over all chunks with ``nlp.pipe``, in
   batches bounded by count and characters, skipping chunks that cannot hold a name;
4. hand each chunk and its precomputed :class:`NlpArtifacts` to ``AnalyzerEngine.analyze``
   (recognizers registered per language, so context words follow the text's language);
5. resolve overlaps between types by priority (CPaaS ids > email > IBAN > card > SSN > IP >
   phone > URL > context rules > NER), apply per-entity thresholds and the allow list.

Template cache (A2P traffic): a short text's (at most 1,000 characters, 5+ words) *skeleton* (every word with a digit, every
e-mail address and URL replaced by ``0`` characters, so offsets are kept) maps to the
language and the NER spans found the first time that skeleton was analysed. A text whose
skeleton is cached skips lingua and spaCy NER: it is only tokenized, the cached spans are
laid onto its tokens, and every pattern and context recognizer runs on the real text. A
text whose skeleton is new is analysed exactly as without the cache. When the cached spans
do not fall on token boundaries of the new text, it is analysed in full.
"""

from __future__ import annotations

import bisect
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from pipeline.detection.config import DetectionConfig
from pipeline.detection.language import LanguageDetector
from pipeline.detection.offline import make_email_validation_offline, resolve_model_name
from pipeline.detection.types import EntitySpan

#: spaCy labels -> Presidio entity types (everything else is ignored).
NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
              "FAC": "LOCATION"}
_NON_NER_PIPES = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter",
                  "morphologizer")
_NER_ENTITIES = frozenset(("PERSON", "LOCATION"))

#: Overlap resolution: lower wins. Rule-based PERSON/LOCATION beat NER guesses.
_PRIORITY = {"CPAAS_SID": 0, "SIP_URI": 0, "ICCID": 0, "IMSI": 0, "EMAIL_ADDRESS": 1,
             "IBAN_CODE": 2, "CREDIT_CARD": 3, "US_SSN": 4, "IP_ADDRESS": 5, "PHONE_NUMBER": 6,
             "URL": 7}
_RULE_RECOGNIZERS = {"PersonContextRecognizer": 8, "AddressRecognizer": 8}


#: Longest text the template cache considers (A2P texts are short; long texts rarely repeat).
TEMPLATE_MAX_CHARS = 1000
#: Fewest words (2+ letters) a skeleton needs: in a very short text the masked values sway
#: the NER of their neighbours (``john 5645`` is a PERSON, ``john 4494`` is not).
TEMPLATE_MIN_WORDS = 5
_WORD = re.compile(r"[^\W\d_]{2,}")
#: Values that vary inside a template: e-mail addresses, URLs, any word holding a digit.
_TEMPLATE_VALUES = re.compile(
    r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+|(?:https?://|www\.)\S+|\w*\d\w*", re.IGNORECASE)


def template_skeleton(text: str) -> str:
    """``text`` with its variable values masked by ``0`` characters, same length."""
    return _TEMPLATE_VALUES.sub(_zeros, text)


def _zeros(m: re.Match) -> str:
    return "0" * (m.end() - m.start())


class _Template:
    """What a skeleton remembers: the language and the mapped NER spans (char offsets)."""

    __slots__ = ("lang", "ents")

    def __init__(self, lang: str, ents: tuple[tuple[int, int, str], ...]):
        self.lang = lang
        self.ents = ents


def _ranking(span: EntitySpan) -> tuple:
    prio = _PRIORITY.get(span.type)
    if prio is None:
        prio = _RULE_RECOGNIZERS.get(span.recognizer, 9)
    return (prio, -span.score, -(span.end - span.start), span.start)


class _ArtifactNlpEngine:
    """The minimal NlpEngine Presidio needs when artifacts are precomputed.

    ``NlpArtifacts`` asks it which lemmas are stop words or punctuation to build the
    context keywords; context words themselves are never treated as stop words.
    """

    def __init__(self, languages: Sequence[str], keep: set[str]):
        from pipeline.detection.lexicon import stop_words

        self._languages = list(languages)
        self._stop = {lang: stop_words(lang) - keep for lang in languages}

    # presidio NlpEngine interface -------------------------------------------------------
    def load(self) -> None:
        return None

    def is_loaded(self) -> bool:
        return True

    def process_text(self, text, language):
        raise NotImplementedError("artifacts are computed by Detector")

    def process_batch(self, texts, language, **kwargs):
        raise NotImplementedError("artifacts are computed by Detector")

    def is_stopword(self, word: str, language: str) -> bool:
        return word in self._stop.get(language, ())

    def is_punct(self, word: str, language: str) -> bool:
        return len(word) == 1 and not word.isalnum()

    def get_supported_entities(self) -> list[str]:
        return ["PERSON", "LOCATION"]

    def get_supported_languages(self) -> list[str]:
        return list(self._languages)


class Detector:
    """Find PII entities in free text, a batch at a time.

    Built once per process (loading spaCy and lingua takes about a second);
    ``analyze_batch`` is the hot path. ``model_name`` is a spaCy package name or
    ``"auto"`` (see :func:`resolve_model_name`); ``None`` also means auto. Raises
    :class:`~pipeline.errors.ModelNotInstalledError` when the model is missing (never
    downloads).
    """

    def __init__(self, config: DetectionConfig | None = None, *, model_name: str | None = "auto"):
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

        from pipeline.detection import lexicon
        from pipeline.detection.recognizers import build_recognizers

        self.config = config or DetectionConfig()
        cfg = self.config
        make_email_validation_offline()
        self.model_name = resolve_model_name(model_name)
        # The small English model's NER has its own tok2vec: the rest is not needed.
        nlp = spacy.load(self.model_name, exclude=list(_NON_NER_PIPES))
        if "ner" not in nlp.pipe_names:
            nlp = spacy.load(self.model_name)
        nlp.max_length = cfg.chunk_chars + 1_000
        self._nlp = nlp
        self._languages = LanguageDetector(cfg.languages, default=cfg.default_language)

        keep: set[str] = set()
        for table in (lexicon.PHONE_CONTEXT, lexicon.NUMBER_NEGATIVE_CONTEXT):
            for words in table.values():
                keep.update(words)
        keep.update(("ssn", "imsi", "iccid", "sim"))
        self._nlp_engine = _ArtifactNlpEngine(cfg.languages, keep)
        registry = RecognizerRegistry(supported_languages=list(cfg.languages))
        for lang in cfg.languages:
            for rec in build_recognizers(cfg, lang):
                registry.add_recognizer(rec)
        self._engine = AnalyzerEngine(
            registry=registry,
            nlp_engine=self._nlp_engine,
            supported_languages=list(cfg.languages),
            context_aware_enhancer=LemmaContextAwareEnhancer(
                context_similarity_factor=0.35, min_score_with_context_similarity=0.4,
                context_prefix_count=5, context_suffix_count=0,
                context_matching_mode="whole_word",
            ),
        )
        self._supported = {
            lang: set(self._engine.get_supported_entities(language=lang))
            for lang in cfg.languages
        }
        self._allow = {v.casefold() for v in cfg.allow_list}
        self._min_threshold = min([cfg.score_threshold, *cfg.thresholds.values()])
        _memoize_recognizers(registry)
        self._templates: OrderedDict[str, _Template] = OrderedDict()
        #: Template cache counters (``hits``, ``misses``), for benchmarks and tests.
        self.template_stats = {"hits": 0, "misses": 0}

    # -- public ---------------------------------------------------------------------------
    def analyze_batch(
        self, texts: Sequence[str], *, entities: Sequence[str] | None = None
    ) -> list[list[EntitySpan]]:
        """Entities per text, in input order: ``len(result) == len(texts)``.

        Offsets are code points into each text; spans are sorted by start. Long texts are
        analysed in chunks of at most ``config.chunk_chars`` so memory stays bounded.
        """
        wanted = list(entities) if entities is not None else list(self.config.entities)
        if not texts:
            return []
        need_ner = "ner" in self.config.recognizers and bool(_NER_ENTITIES & set(wanted))
        use_cache = need_ner and self.config.template_cache > 0
        keys: list[str | None] = [None] * len(texts)
        hits: dict[int, _Template] = {}
        if use_cache:
            templates = self._templates
            for i, text in enumerate(texts):
                if len(text) <= TEMPLATE_MAX_CHARS:
                    key = template_skeleton(text)
                    if len(_WORD.findall(key)) < TEMPLATE_MIN_WORDS:
                        continue
                    keys[i] = key
                    entry = templates.get(key)
                    if entry is not None:
                        templates.move_to_end(key)
                        hits[i] = entry
        langs = self._languages_of(texts, hits)
        chunks = [(i, base, chunk) for i, text in enumerate(texts)
                  for base, chunk in self._chunks(text)]
        raw: list[list[EntitySpan]] = [[] for _ in texts]
        limit = self.config.ner_max_chars
        ner_flags = [need_ner and (limit is None or base < limit) for _, base, _ in chunks]
        cached = [hits.get(i) if base == 0 else None for i, base, _ in chunks]
        docs = self._docs([c for _, _, c in chunks], ner_flags, cached)
        for (i, base, chunk), (doc, ents) in zip(chunks, docs):
            lang = langs[i]
            if use_cache and keys[i] is not None and i not in hits and base == 0:
                self._remember(keys[i], lang, ents)
            wanted_here = [e for e in wanted if e in self._supported[lang]]
            if not wanted_here:
                continue
            results = self._engine.analyze(
                text=chunk, language=lang, entities=wanted_here,
                nlp_artifacts=self._artifacts(doc, lang, ents),
                score_threshold=self._min_threshold,
            )
            for r in results:
                raw[i].append(EntitySpan(r.entity_type, base + r.start, base + r.end,
                                         float(r.score), _recognizer_name(r)))
        return [self._resolve(text, spans) for text, spans in zip(texts, raw)]

    def warm_up(self) -> None:
        """Load what loads lazily (lingua's language models, Presidio's recognizers) with a
        few throw-away texts, so the first real batch is not slow. The template cache is
        left empty."""
        samples = ["Hello Maria, call me at +1 415 555 0101 or mail maria@example.com.",
                   "Hola Juan, nos vemos mañana en la calle Mayor 5 de Madrid.",
                   "Hallo Herr Müller, wir treffen uns morgen in der Hauptstraße 4.",
                   "Bonjour Claire, rendez-vous demain au 12 rue de la Paix à Paris.",
                   "Olá João, até amanhã na Rua das Flores, 12, em Lisboa."]
        self.analyze_batch(samples)
        self._templates.clear()
        self.template_stats.update(hits=0, misses=0)

    # -- internals ------------------------------------------------------------------------
    def _chunks(self, text: str) -> Iterator[tuple[int, str]]:
        step = self.config.chunk_chars
        n = len(text)
        pos = 0
        while pos < n:
            end = min(n, pos + step)
            if end < n:
                cut = text.rfind(" ", pos + step // 2, end)
                cut2 = text.rfind("\n", pos + step // 2, end)
                cut = max(cut, cut2)
                if cut > pos:
                    end = cut + 1
            chunk = text[pos:end]
            if chunk.strip():
                yield pos, chunk
            pos = end

    def _languages_of(self, texts: Sequence[str], hits: dict[int, _Template]) -> list[str]:
        """One language per text: the cached one for template hits, lingua for the rest."""
        if not hits:
            return self._languages.detect_batch(texts)
        langs = [""] * len(texts)
        todo = []
        for i in range(len(texts)):
            entry = hits.get(i)
            if entry is None:
                todo.append(i)
            else:
                langs[i] = entry.lang
        if todo:
            for i, lang in zip(todo, self._languages.detect_batch([texts[i] for i in todo])):
                langs[i] = lang
        return langs

    def _remember(self, key: str, lang: str, ents) -> None:
        if ents is None:  # NER did not run on this chunk: nothing to reuse
            return
        templates = self._templates
        templates[key] = _Template(lang, ents)
        self.template_stats["misses"] += 1
        while len(templates) > self.config.template_cache:
            templates.popitem(last=False)

    def _docs(self, chunks: list[str], ner_flags: list[bool],
              cached: list[_Template | None]) -> Iterator[tuple]:
        """``(Doc, ner spans)`` per chunk, in order, in windows bounded by count and characters.

        NER runs only where a name could be (a chunk with a letter) and the template cache
        has no spans for it; the other chunks are only tokenized (Presidio's context
        enhancement needs tokens). NER spans are ``(start_char, end_char, label)`` with
        Presidio labels, or ``None`` when NER was not asked for.
        """
        cfg = self.config
        window: list[int] = []
        size = 0
        for j, chunk in enumerate(chunks):
            window.append(j)
            size += len(chunk)
            if len(window) >= cfg.batch_size or size >= cfg.batch_chars:
                yield from self._window_docs(chunks, window, ner_flags, cached)
                window, size = [], 0
        if window:
            yield from self._window_docs(chunks, window, ner_flags, cached)

    def _window_docs(self, chunks: list[str], window: list[int], flags: list[bool],
                     cached: list[_Template | None]) -> list[tuple]:
        nlp = self._nlp
        out: list = [None] * len(window)
        ner_idx = []
        for k, j in enumerate(window):
            chunk = chunks[j]
            if not flags[j]:
                out[k] = (nlp.make_doc(chunk), None)
                continue
            entry = cached[j]
            if entry is not None:
                doc = nlp.make_doc(chunk)
                if all(doc.char_span(s, e) is not None for s, e, _ in entry.ents):
                    self.template_stats["hits"] += 1
                    out[k] = (doc, entry.ents)
                    continue
            if any(ch.isalpha() for ch in chunk):
                ner_idx.append(k)
            else:
                out[k] = (nlp.make_doc(chunk), ())
        if ner_idx:
            for k, doc in zip(ner_idx, nlp.pipe([chunks[window[k]] for k in ner_idx],
                                                batch_size=len(ner_idx))):
                ents = tuple((e.start_char, e.end_char, NER_LABELS[e.label_])
                             for e in doc.ents if e.label_ in NER_LABELS)
                out[k] = (doc, ents)
        return out

    def _artifacts(self, doc, lang: str, ents):
        from presidio_analyzer.nlp_engine import NlpArtifacts

        entities = []
        for start, end, label in ents or ():
            entities.append(doc.char_span(start, end, label=label))
        return NlpArtifacts(
            entities=entities, tokens=doc, tokens_indices=[t.idx for t in doc],
            lemmas=[t.lower_ for t in doc], nlp_engine=self._nlp_engine, language=lang,
            scores=[0.85] * len(entities),
        )

    def _resolve(self, text: str, spans: list[EntitySpan]) -> list[EntitySpan]:
        """Thresholds, allow list, then non-overlapping spans by priority (O(n log n))."""
        cfg = self.config
        starts: list[int] = []
        kept: list[EntitySpan] = []  # sorted by start, non-overlapping
        for span in sorted(spans, key=_ranking):
            if span.score < cfg.threshold_for(span.type):
                continue
            if self._allow and text[span.start:span.end].casefold() in self._allow:
                continue
            i = bisect.bisect_left(starts, span.start)
            if i > 0 and kept[i - 1].end > span.start:
                continue
            if i < len(kept) and kept[i].start < span.end:
                continue
            starts.insert(i, span.start)
            kept.insert(i, span)
        return kept


def _memoize_recognizers(registry) -> None:
    """Presidio looks the recognizers up on every ``analyze`` call (a scan of the registry
    per entity); ours never change after start-up, so remember the answer per request."""
    lookup = registry.get_recognizers
    memo: dict = {}

    def get_recognizers(language, entities=None, all_fields=False, ad_hoc_recognizers=None):
        if ad_hoc_recognizers:
            return lookup(language=language, entities=entities, all_fields=all_fields,
                          ad_hoc_recognizers=ad_hoc_recognizers)
        key = (language, None if entities is None else tuple(entities), all_fields)
        found = memo.get(key)
        if found is None:
            found = memo[key] = lookup(language=language, entities=entities,
                                       all_fields=all_fields)
        return list(found)

    registry.get_recognizers = get_recognizers


def _recognizer_name(result) -> str:
    meta = getattr(result, "recognition_metadata", None) or {}
    return str(meta.get("recognizer_name", "presidio"))
