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
"""

from __future__ import annotations

import bisect
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
        langs = self._languages.detect_batch(texts)
        chunks = [(i, base, chunk) for i, text in enumerate(texts)
                  for base, chunk in self._chunks(text)]
        need_ner = "ner" in self.config.recognizers and bool(_NER_ENTITIES & set(wanted))
        raw: list[list[EntitySpan]] = [[] for _ in texts]
        limit = self.config.ner_max_chars
        ner_flags = [need_ner and (limit is None or base < limit) for _, base, _ in chunks]
        docs = self._docs([c for _, _, c in chunks], ner_flags)
        for (i, base, chunk), doc in zip(chunks, docs):
            lang = langs[i]
            ents = [e for e in wanted if e in self._supported[lang]]
            if not ents:
                continue
            results = self._engine.analyze(
                text=chunk, language=lang, entities=ents,
                nlp_artifacts=self._artifacts(doc, lang),
                score_threshold=self._min_threshold,
            )
            for r in results:
                raw[i].append(EntitySpan(r.entity_type, base + r.start, base + r.end,
                                         float(r.score), _recognizer_name(r)))
        return [self._resolve(text, spans) for text, spans in zip(texts, raw)]

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

    def _docs(self, chunks: list[str], ner_flags: list[bool]) -> Iterator:
        """One spaCy Doc per chunk, in order, in windows bounded by count and characters.

        NER runs only where a name could be (a chunk with a letter); the other
        chunks are only tokenized (Presidio's context enhancement needs tokens).
        """
        cfg = self.config
        window: list[str] = []
        flags: list[bool] = []
        size = 0
        for chunk, flag in zip(chunks, ner_flags):
            window.append(chunk)
            flags.append(flag)
            size += len(chunk)
            if len(window) >= cfg.batch_size or size >= cfg.batch_chars:
                yield from self._window_docs(window, flags)
                window, flags, size = [], [], 0
        if window:
            yield from self._window_docs(window, flags)

    def _window_docs(self, window: list[str], flags: list[bool]) -> list:
        nlp = self._nlp
        ner_idx = [j for j, c in enumerate(window)
                   if flags[j] and any(ch.isalpha() for ch in c)]
        docs: list = [None] * len(window)
        if ner_idx:
            for j, doc in zip(ner_idx, nlp.pipe([window[j] for j in ner_idx],
                                                batch_size=len(ner_idx))):
                docs[j] = doc
        for j, doc in enumerate(docs):
            if doc is None:
                docs[j] = nlp.make_doc(window[j])
        return docs

    def _artifacts(self, doc, lang: str):
        from presidio_analyzer.nlp_engine import NlpArtifacts
        from spacy.tokens import Span

        entities = []
        for ent in doc.ents:
            label = NER_LABELS.get(ent.label_)
            if label:
                entities.append(Span(doc, ent.start, ent.end, label=label))
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


def _recognizer_name(result) -> str:
    meta = getattr(result, "recognition_metadata", None) or {}
    return str(meta.get("recognizer_name", "presidio"))
