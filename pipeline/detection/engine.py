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

Template cache (A2P traffic): a short text (at most 1,000 characters, 5+ words) has a
*template key* (:func:`template_key`): the text with every value (e-mail address, URL,
number, code, id, amount, date, time, month or weekday name) replaced by one ``0``, so the
texts of one template share a key whatever their values and their lengths. Such a text is
read by lingua and spaCy's NER *as its key*, cached or not, so every text of a template gets
the same language and the same NER spans (moved onto each text through the fixed text
between the values; a span that misses a token boundary of the text is dropped). The
cache remembers both per key: a text whose key is cached skips lingua and NER, and several
texts of a template new to a batch wait for the first one. Every pattern and context
recognizer always runs on the real text. So a cached result equals an uncached one, by
construction (``tests/pipeline/test_template_cache.py``). A template learned by one
detector can be handed to another with the same configuration (:meth:`Detector.take_learned`,
:meth:`Detector.add_templates`): the detector pool shares its children's templates that way.

Step 4 does what ``AnalyzerEngine.analyze`` does, in :meth:`Detector._analyze_chunk`,
without its per-call overhead (spaCy tokens, lemmas and keywords only for results that
need context enhancement; no deep copies).
"""

from __future__ import annotations

import bisect
import logging
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence

from pipeline.detection.config import DetectionConfig
from pipeline.detection.language import LanguageDetector
from pipeline.detection.offline import make_email_validation_offline, resolve_model_name
from pipeline.detection.types import EntitySpan

log = logging.getLogger("privacy_pipeline.detection")

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
#: The value shapes :func:`template_key` turns into one slot each, whatever their length:
#: e-mail addresses; URLs (with a scheme, ``www.`` or a bare domain and a path); numbers,
#: codes, ids, amounts, dates, times and phone numbers (words holding a digit, joined by
#: ``. , : / -`` or by single spaces between digit groups, with ``AM``/``PM`` after them);
#: and (group ``cal``) capitalised words, which are slots only when they name a month or a
#: weekday. Each shape is tried at the start of a run only (look-behinds): a shape that
#: fails there fails inside the run too.
_SLOT_EMAIL = r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"
_SLOT_URL = r"(?i:https?://|www\.)\S+"
_SLOT_DOMAIN_PATH = r"(?<![\w.\-])(?i:[a-z0-9\-]+\.)+(?i:[a-z]{2,})/\S*"
_SLOT_VALUE = r"(?<!\w)\w*\d\w*(?:[.,:/\-]\w*\d\w*| \d\w*)*(?: [AaPp][Mm]\b)?"
_SLOT_CALENDAR = r"(?P<cal>(?<!\w)[A-ZÀ-ÖØ-Þ][^\W\d_]{2,}(?!\w))"
_TEMPLATE_SLOTS = re.compile("|".join(
    (_SLOT_EMAIL, _SLOT_URL, _SLOT_DOMAIN_PATH, _SLOT_VALUE, _SLOT_CALENDAR)))
#: ``_TEMPLATE_SLOTS`` without the alternatives a text cannot match, by ``(has_email,
#: has_domain_path)`` (see :func:`_slot_pattern`): the same matches, found faster. An
#: e-mail address holds ``@``; a bare domain with a path holds two letters and ``/``.
_SLOTS_BY_HINTS = {
    (email, domain): re.compile("|".join(
        ((_SLOT_EMAIL,) if email else ()) + (_SLOT_URL,)
        + ((_SLOT_DOMAIN_PATH,) if domain else ()) + (_SLOT_VALUE, _SLOT_CALENDAR)))
    for email in (False, True) for domain in (False, True)}
_DOMAIN_PATH_HINT = re.compile(r"(?i:[a-z]{2})/")
#: English months and weekdays and their abbreviations, lower case (``May`` only next to a
#: digit: ``May 4``, not ``May I help``).
_CALENDAR_SLOTS = frozenset((
    "january", "february", "march", "april", "june", "july", "august", "september",
    "october", "november", "december", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri",
    "sat", "sun",
))
#: Placeholder of a slot in a template key (never in a key's fixed text: digits are slots).
_SLOT = "0"


def template_skeleton(text: str) -> str:
    """``text`` with its variable values masked by ``0`` characters, same length
    (digits, e-mail addresses and URLs; see :func:`template_key` for what the cache uses)."""
    return _TEMPLATE_VALUES.sub(_zeros, text)


def _zeros(m: re.Match) -> str:
    return "0" * (m.end() - m.start())


def template_key(text: str) -> tuple[str, tuple[int, ...]]:
    """``(key, cuts)``: the template cache key of ``text`` and where its slots are.

    ``key`` is ``text`` with every variable value (see ``_TEMPLATE_SLOTS``: e-mail
    addresses, URLs, numbers, codes, amounts, dates, times, month and weekday names) replaced
    by one ``0``, whatever its length, so texts of one template share a key when their
    values differ in length. ``cuts`` are the value boundaries in ``text``, ``(start0, end0,
    start1, end1, ...)`` in code points: the fixed text between them is the same in every
    text with this key, which is how cached NER spans are moved onto a new text.
    """
    parts: list[str] = []
    cuts: list[int] = []
    pos = 0
    for m in _slot_pattern(text).finditer(text):
        if m.lastgroup == "cal":
            word = m.group(0)
            if not word[0].isupper():
                continue
            low = word.lower()
            if low not in _CALENDAR_SLOTS and not (low == "may" and _next_to_digit(text, m)):
                continue
        start, end = m.span()
        parts.append(text[pos:start])
        parts.append(_SLOT)
        cuts.append(start)
        cuts.append(end)
        pos = end
    parts.append(text[pos:])
    return "".join(parts), tuple(cuts)


def _slot_pattern(text: str) -> re.Pattern:
    """``_TEMPLATE_SLOTS`` for ``text``: the same matches (``finditer``), found faster.

    At each position the pattern tries its alternatives in order and takes the first that
    matches; an alternative that matches nowhere in ``text`` changes no outcome, so it can
    be left out. The e-mail alternative needs an ``@``; the bare-domain one needs two
    letters (``(?i:[a-z]{2,})``) right before a ``/``."""
    domain = "/" in text and _DOMAIN_PATH_HINT.search(text) is not None
    return _SLOTS_BY_HINTS["@" in text, domain]


def cache_key(text: str) -> tuple[str, tuple[int, ...]] | None:
    """:func:`template_key` of ``text`` when the template cache considers it (at most
    ``TEMPLATE_MAX_CHARS`` characters, ``TEMPLATE_MIN_WORDS`` words of 2+ letters in the
    key), else ``None``. The detector and the pool's routing use this one rule."""
    if len(text) > TEMPLATE_MAX_CHARS:
        return None
    key = template_key(text)
    for words, _ in enumerate(_WORD.finditer(key[0]), 1):
        if words >= TEMPLATE_MIN_WORDS:
            return key
    return None


def needs_ner(config: DetectionConfig, wanted: Sequence[str]) -> bool:
    """Whether spaCy NER runs for a request of ``wanted`` entities (only then do texts
    get template keys)."""
    return "ner" in config.recognizers and bool(_NER_ENTITIES.intersection(wanted))


def _key_cuts(key: tuple[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The slot boundaries of the key string itself (each slot one ``0``)."""
    cuts = key[1]
    out: list[int] = []
    shift = 0
    for k in range(0, len(cuts), 2):
        start = cuts[k] - shift
        out += (start, start + 1)
        shift += cuts[k + 1] - cuts[k] - 1
    return tuple(out)


def _next_to_digit(text: str, m: re.Match) -> bool:
    """A digit right before or after the match (one space between allowed): ``May 4``."""
    before = text[max(0, m.start() - 2):m.start()].rstrip()
    after = text[m.end():m.end() + 2].lstrip()
    return bool(before[-1:].isdigit() or after[:1].isdigit())


def _segment_starts(cuts: tuple[int, ...]) -> list[int]:
    """Start offset of each fixed segment (segment ``k`` follows slot ``k - 1``)."""
    return [0, *cuts[1::2]]


class _Template:
    """What a template key remembers: the language and the NER spans, each end as
    ``(segment, offset)`` into the fixed text (see :func:`_relative_spans`)."""

    __slots__ = ("lang", "ents")

    def __init__(self, lang: str, ents: tuple):
        self.lang = lang
        self.ents = ents


class _Hit:
    """A template hit for one text: the cached language and the NER spans moved onto the
    text (absolute ``(start, end, label)``)."""

    __slots__ = ("lang", "ents")

    def __init__(self, lang: str, ents: tuple[tuple[int, int, str], ...]):
        self.lang = lang
        self.ents = ents


def _relative_spans(ents, cuts: tuple[int, ...]) -> tuple:
    """NER spans ``(start, end, label)`` as ``(seg, offset, seg, offset, label)``.

    Fixed segment ``k`` runs from the end of value ``k - 1`` to the start of value ``k``,
    both included, so a span may start or end at a value's edge (``0 Main Street`` tagged
    FAC covers a whole value and moves onto the next text's value there). A span with an
    end strictly inside a value is left out (NER reads keys, whose values are one ``0``:
    that does not happen).
    """
    starts = _segment_starts(cuts)
    last = len(starts) - 1
    out = []
    for s, e, label in ents:
        s_seg = bisect.bisect_right(starts, s) - 1
        e_seg = bisect.bisect_right(starts, e) - 1
        if (s_seg < last and s > cuts[2 * s_seg]) or (e_seg < last and e > cuts[2 * e_seg]):
            continue
        out.append((s_seg, s - starts[s_seg], e_seg, e - starts[e_seg], label))
    return tuple(out)


def _absolute_spans(rel, cuts: tuple[int, ...]) -> tuple[tuple[int, int, str], ...]:
    """:func:`_relative_spans` undone on a text of the same template (its ``cuts``)."""
    starts = _segment_starts(cuts)
    return tuple((starts[s_seg] + s_off, starts[e_seg] + e_off, label)
                 for s_seg, s_off, e_seg, e_off, label in rel)


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

    def stop_words(self, language: str):
        """The words :meth:`is_stopword` answers ``True`` for."""
        return self._stop.get(language, ())

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
        from presidio_analyzer import (
            AnalyzerEngine,
            EntityRecognizer,
            RecognizerRegistry,
            RecognizerResult,
        )
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

        from pipeline.detection import lexicon
        from pipeline.detection.recognizers import build_recognizers

        self.config = config or DetectionConfig()
        cfg = self.config
        make_email_validation_offline()
        self.model_name = resolve_model_name(model_name)
        self._nlp = self._load_model()
        #: lexemes in the vocabulary after loading (see ``config.vocab_limit``)
        self._vocab_base = len(self._nlp.vocab)
        #: times the model was reloaded to drop the lexemes it had learned
        self.model_reloads = 0
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
        self._registry = registry
        self._enhancer = self._engine.context_aware_enhancer
        _check_presidio_contract(self._enhancer, registry)
        self._by_request: dict[tuple, tuple[list, dict, dict]] = {}
        # what the analysis loop needs from Presidio, looked up once (not per chunk)
        self._remove_duplicates = EntityRecognizer.remove_duplicates
        self._name_key = RecognizerResult.RECOGNIZER_NAME_KEY
        self._boosted_key = RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY
        #: ``Token.lower_`` is ``str.lower`` of the token's text (spaCy's default lexeme
        #: attribute), which the pre-filter :func:`_may_be_boosted` relies on
        self._lower_is_str_lower = _lower_is_str_lower(self._nlp)
        self._templates: OrderedDict[str, _Template] = OrderedDict()
        #: Template cache counters (``hits``, ``misses``), for benchmarks and tests.
        self.template_stats = {"hits": 0, "misses": 0}
        #: Templates learned since the last :meth:`take_learned` (``None``: not kept).
        self._learned: list[tuple[str, str, tuple]] | None = None

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
        limit = self.config.vocab_limit
        if limit and len(self._nlp.vocab) - self._vocab_base > limit:
            self._reload_model()
        need_ner = needs_ner(self.config, wanted)
        keys: list[tuple[str, tuple[int, ...]] | None] = [None] * len(texts)
        if need_ner:
            keys = [cache_key(text) for text in texts]
        if self.config.template_cache > 0:
            templates = self._templates
            later: list[int] = []
            new: set[str] = set()
            for i, key in enumerate(keys):
                if key is not None and key[0] not in templates:
                    if key[0] in new:
                        later.append(i)  # same new template as an earlier text
                    else:
                        new.add(key[0])
            if later:
                # Texts of a template first seen in this batch wait for the first text of
                # it to be analysed, then reuse its language and NER spans.
                skip = set(later)
                first = [i for i in range(len(texts)) if i not in skip]
                out: list[list[EntitySpan]] = [[] for _ in texts]
                for group in (first, later):
                    done = self._analyze([texts[i] for i in group], wanted, need_ner,
                                         [keys[i] for i in group])
                    for i, spans in zip(group, done):
                        out[i] = spans
                return out
        return self._analyze(texts, wanted, need_ner, keys)

    def _analyze(self, texts: Sequence[str], wanted: list[str], need_ner: bool,
                 keys: list) -> list[list[EntitySpan]]:
        """:meth:`analyze_batch` for ``texts`` with their template ``keys`` (``None`` for a
        text that has none)."""
        hits: dict[int, _Hit] = {}
        use_cache = self.config.template_cache > 0
        if use_cache:
            templates = self._templates
            for i, key in enumerate(keys):
                if key is None:
                    continue
                entry = templates.get(key[0])
                if entry is not None:
                    templates.move_to_end(key[0])
                    hits[i] = _Hit(entry.lang, _absolute_spans(entry.ents, key[1]))
                    self.template_stats["hits"] += 1
        langs = self._languages_of(
            [text if key is None else key[0] for text, key in zip(texts, keys)], hits)
        chunks = [(i, base, chunk) for i, text in enumerate(texts)
                  for base, chunk in self._chunks(text)]
        raw: list[list[EntitySpan]] = [[] for _ in texts]
        limit = self.config.ner_max_chars
        ner_flags = [need_ner and (limit is None or base < limit) for _, base, _ in chunks]
        # A text with a template key is read by NER as its key (values replaced by ``0``),
        # so every text of one template gets the same NER spans, cached or not.
        ner_texts = [chunk if keys[i] is None else keys[i][0] for i, _, chunk in chunks]
        cached = [hits.get(i) if base == 0 else None for i, base, _ in chunks]
        docs = self._docs(ner_texts, ner_flags, cached)
        wanted_by_lang: dict[str, list[str]] = {}
        for (i, base, chunk), (doc, ents) in zip(chunks, docs):
            lang = langs[i]
            key = keys[i]
            if key is not None and i not in hits and ents is not None:
                rel = _relative_spans(ents, _key_cuts(key))
                if use_cache:
                    self._remember(key[0], lang, rel)
                doc, ents = None, _absolute_spans(rel, key[1])
            wanted_here = wanted_by_lang.get(lang)
            if wanted_here is None:
                wanted_here = wanted_by_lang[lang] = [
                    e for e in wanted if e in self._supported[lang]]
            if not wanted_here:
                continue
            for r in self._analyze_chunk(chunk, lang, wanted_here, doc, ents):
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
    def _load_model(self):
        """spaCy's pipeline for ``model_name``: NER only (the small English model's NER has
        its own tok2vec), the whole pipeline when it has no separate NER."""
        import spacy

        nlp = spacy.load(self.model_name, exclude=list(_NON_NER_PIPES))
        if "ner" not in nlp.pipe_names:
            nlp = spacy.load(self.model_name)
        nlp.max_length = self.config.chunk_chars + 1_000
        return nlp

    def _reload_model(self) -> None:
        """Load the model again, dropping the lexemes the vocabulary gained since it was
        loaded (``config.vocab_limit``). Template-cache entries hold offsets, not docs, so
        they stay valid."""
        grown = len(self._nlp.vocab) - self._vocab_base
        self._nlp = self._load_model()
        self._vocab_base = len(self._nlp.vocab)
        self.model_reloads += 1
        log.info("spaCy vocabulary grew by %d lexemes: model reloaded (%d reloads)",
                 grown, self.model_reloads)

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

    def _languages_of(self, texts: Sequence[str], hits: dict[int, _Hit]) -> list[str]:
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

    def keep_learned(self) -> None:
        """Start keeping the templates this detector learns, for :meth:`take_learned`
        (a detector process of :class:`~pipeline.detection.pool.PooledDetector` shares them
        with the other processes)."""
        if self._learned is None:
            self._learned = []

    def take_learned(self) -> list[tuple[str, str, tuple]]:
        """The templates learned (a template cache miss each) since the last call, as
        ``(key, language, spans)`` entries for :meth:`add_templates` of another detector
        with the same configuration; ``[]`` unless :meth:`keep_learned` was called. At
        most ``config.template_cache`` entries (the newest)."""
        out = self._learned or []
        if self._learned is not None:
            self._learned = []
        return out

    def add_templates(self, entries) -> None:
        """Remember templates learned by another detector with the same configuration
        (entries of its :meth:`take_learned`), as if learned here: the language and NER
        spans of a key are a function of the key, so results stay exactly the same. Not
        counted as misses. No-op when the cache is off."""
        limit = self.config.template_cache
        if limit <= 0:
            return
        templates = self._templates
        for key, lang, rel in entries:
            templates[key] = _Template(lang, rel)
            templates.move_to_end(key)
        while len(templates) > limit:
            templates.popitem(last=False)

    def _remember(self, key: str, lang: str, rel: tuple) -> None:
        templates = self._templates
        self.template_stats["misses"] += 1
        templates[key] = _Template(lang, rel)
        while len(templates) > self.config.template_cache:
            templates.popitem(last=False)
        learned = self._learned
        if learned is not None:
            learned.append((key, lang, rel))
            if len(learned) > self.config.template_cache:
                del learned[0]

    def _docs(self, chunks: list[str], ner_flags: list[bool],
              cached: list[_Hit | None]) -> Iterator[tuple]:
        """``(Doc, ner spans)`` per chunk, in order, in windows bounded by count and characters.

        NER runs only where a name could be (a chunk with a letter) and the template cache
        has no spans for it; the ``Doc`` of the other chunks is ``None`` (tokenized later,
        only if context enhancement or cached spans need tokens). NER spans are
        ``(start_char, end_char, label)`` with Presidio labels, or ``None`` when NER was not
        asked for.
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
                     cached: list[_Hit | None]) -> list[tuple]:
        nlp = self._nlp
        out: list = [None] * len(window)
        ner_idx = []
        for k, j in enumerate(window):
            chunk = chunks[j]
            if not flags[j]:
                out[k] = (None, None)
                continue
            entry = cached[j]
            if entry is not None:
                out[k] = (None, entry.ents)
                continue
            if any(ch.isalpha() for ch in chunk):
                ner_idx.append(k)
            else:
                out[k] = (None, ())
        if ner_idx:
            for k, doc in zip(ner_idx, nlp.pipe([chunks[window[k]] for k in ner_idx],
                                                batch_size=len(ner_idx))):
                ents = tuple((e.start_char, e.end_char, NER_LABELS[e.label_])
                             for e in doc.ents if e.label_ in NER_LABELS)
                out[k] = (doc, ents)
        return out

    def _analyze_chunk(self, chunk: str, lang: str, wanted: list[str], doc, ents) -> list:
        """What ``AnalyzerEngine.analyze(chunk, lang, wanted, nlp_artifacts=...,
        score_threshold=<lowest threshold>)`` returns, without its per-call overhead.

        Same steps and order as Presidio: the recognizers of the request in registry order
        (missing recognizer ids added to the metadata), the engine's context enhancer, low
        scores removed, then ``EntityRecognizer.remove_duplicates``. What is skipped costs
        and changes nothing here: only results whose recognizer has context words (and
        no boost yet), and that one of them may boost (:func:`_may_be_boosted`), are handed
        to the enhancer, and the spaCy tokens, lemmas and keywords are built only then;
        ``doc`` may be ``None`` (made on demand).
        ``ents`` are ``(start, end, label)`` NER spans or ``None``/empty.
        """
        key = (lang, tuple(wanted))
        request = self._by_request.get(key)
        if request is None:
            recs = self._registry.get_recognizers(language=lang, entities=wanted,
                                                  all_fields=False)
            request = self._by_request[key] = (
                recs, {r.id: r for r in recs},
                {r.id: tuple(w.lower() for w in r.context or ()) for r in recs})
        recognizers, by_id, context_words = request
        spans = _NO_SPANS
        if ents:
            if doc is None:
                doc = self._nlp.make_doc(chunk)
            # spans moved from a template key that miss a token boundary of this text
            # are dropped (the same with and without the cache)
            found = [doc.char_span(s, e, label=label) for s, e, label in ents]
            spans = _NerSpans([sp for sp in found if sp is not None])
        id_key = _ID_KEY
        name_key = self._name_key
        results: list = []
        for rec in recognizers:
            if not rec.is_loaded:
                rec.load()
                rec.is_loaded = True
            found = rec.analyze(text=chunk, entities=wanted, nlp_artifacts=spans)
            if found:
                for r in found:
                    meta = r.recognition_metadata
                    if not meta:
                        meta = r.recognition_metadata = {}
                    if id_key not in meta:
                        meta[id_key] = rec.id
                    if name_key not in meta:
                        meta[name_key] = rec.name
                results.extend(found)
        if not results:
            return results
        boosted_key = self._boosted_key
        todo = []
        for r in results:
            rec = by_id.get(r.recognition_metadata.get(id_key))
            if rec is not None and rec.context and not r.recognition_metadata.get(boosted_key):
                todo.append(r)
        if todo and self._lower_is_str_lower:
            todo = _may_be_boosted(chunk, todo, context_words)
        if todo:
            if doc is None:
                doc = self._nlp.make_doc(chunk)
            self._enhance(chunk, todo, by_id,
                          self._artifacts(doc, lang, spans.entities))
        threshold = self._min_threshold
        results = [r for r in results if r.score >= threshold]
        return self._remove_duplicates(results)

    def _enhance(self, text: str, results: list, by_id: dict, artifacts) -> None:
        """``LemmaContextAwareEnhancer.enhance_using_context`` on ``results`` (each from a
        recognizer with context words, not boosted yet), in place: the results are this
        call's own objects, so Presidio's deep copy of them is not needed. Same steps: the
        lemmas of the words before the match, a whole-word context match, then the score
        raised by the similarity factor, at least the minimum, at most 1."""
        enhancer = self._enhancer
        id_key = _ID_KEY
        for r in results:
            rec = by_id[r.recognition_metadata[id_key]]
            words = enhancer._extract_surrounding_words(
                nlp_artifacts=artifacts, word=text[r.start:r.end], start=r.start)
            found = enhancer._find_supportive_word_in_context(
                words, rec.context, enhancer.context_matching_mode)
            if found != "":
                r.score += enhancer.context_similarity_factor
                r.score = max(r.score, enhancer.min_score_with_context_similarity)
                r.score = min(r.score, _MAX_SCORE)
                if r.analysis_explanation is not None:
                    r.analysis_explanation.set_supportive_context_word(found)
                    r.analysis_explanation.set_improved_score(r.score)

    def _artifacts(self, doc, lang: str, entities: list):
        """Presidio's :class:`NlpArtifacts` for ``doc`` (token texts, offsets, lemmas,
        keywords) with the given NER ``entities`` (spaCy spans)."""
        from presidio_analyzer.nlp_engine import NlpArtifacts

        # The enhancer walks ``tokens`` once per result (``len`` of each): token texts in a
        # list answer that as the Doc does, without making a Token object per step.
        toks: list[str] = []
        idx: list[int] = []
        lemmas: list[str] = []
        keywords: list[str] = []
        stop = self._nlp_engine.stop_words(lang)
        for t in doc:
            toks.append(t.text)
            idx.append(t.idx)
            lemma = t.lower_
            lemmas.append(lemma)
            # NlpArtifacts.set_keywords, inline: no stop words, punctuation, "-PRON-" or
            # "be"; lower-cased and split at ":"
            if (lemma in stop or (len(lemma) == 1 and not lemma.isalnum())
                    or lemma == "-PRON-" or lemma == "be"):
                continue
            keywords.extend(lemma.lower().split(":"))
        arts = NlpArtifacts.__new__(NlpArtifacts)
        arts.entities = list(entities)
        arts.tokens = toks
        arts.lemmas = lemmas
        arts.tokens_indices = idx
        arts.keywords = keywords
        arts.nlp_engine = self._nlp_engine
        arts.scores = [0.85] * len(entities)
        return arts

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


_ID_KEY = "recognizer_identifier"  # RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
#: What ``NlpArtifacts.__init__`` sets (:meth:`Detector._artifacts` sets them itself).
_ARTIFACT_FIELDS = frozenset(("entities", "tokens", "lemmas", "tokens_indices", "keywords",
                              "nlp_engine", "scores"))
_MAX_SCORE = 1.0  # ContextAwareEnhancer.MAX_SCORE


def _may_be_boosted(text: str, results: list, context_words: dict) -> list:
    """The ``results`` the context enhancer may boost in ``text`` (exact pre-filter, so
    most texts need no spaCy tokens, lemmas or keywords for it).

    The enhancer boosts a result when one of its recognizer's context words, lower-cased,
    equals the lower-cased lemma (``Token.lower_``: the token's text, lower-cased) of a token
    at or before it. In an ASCII text ``str.lower`` maps each character on its own, so such a
    lemma is a substring of ``text.lower()``: a result none of whose context words occurs
    there is never boosted. Non-ASCII texts, and results that do not start before the
    text's trailing whitespace (the enhancer finds no token for them), keep all results.
    ``context_words`` maps a recognizer id to its lower-cased context words.
    """
    if not text.isascii():
        return results
    low = text.lower()
    last = len(text.rstrip())
    return [r for r in results
            if r.start >= last
            or any(w in low for w in context_words[r.recognition_metadata[_ID_KEY]])]


def _lower_is_str_lower(nlp) -> bool:
    """Whether ``nlp``'s lexemes get their ``lower`` attribute from spaCy's default getter
    (``str.lower`` of the token text)."""
    from spacy.attrs import LOWER
    from spacy.lang import lex_attrs

    return nlp.vocab.lex_attr_getters.get(LOWER) is lex_attrs.lower


class _NerSpans:
    """The part of the NLP artifacts the recognizers read (``NerRecognizer``: the NER
    spans); the tokens, lemmas and keywords are built only for context enhancement."""

    __slots__ = ("entities",)

    def __init__(self, entities):
        self.entities = entities


_NO_SPANS = _NerSpans(())


def _check_presidio_contract(enhancer, registry) -> None:
    """:meth:`Detector._analyze_chunk` re-implements ``AnalyzerEngine.analyze`` for this
    setup: the lemma enhancer, no recognizer-level context logic, ``NlpArtifacts`` fields.
    Raises ``RuntimeError`` (at start-up) if a Presidio upgrade or a new recognizer breaks
    that."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.context_aware_enhancers import (
        ContextAwareEnhancer,
        LemmaContextAwareEnhancer,
    )

    from presidio_analyzer.nlp_engine import NlpArtifacts

    probe = NlpArtifacts(entities=[], tokens=[], tokens_indices=[], lemmas=[], nlp_engine=None,
                         language="en")
    base = EntityRecognizer.enhance_using_context
    if (type(enhancer) is not LemmaContextAwareEnhancer
            or set(vars(probe)) != _ARTIFACT_FIELDS
            or RecognizerResult.RECOGNIZER_IDENTIFIER_KEY != _ID_KEY
            or ContextAwareEnhancer.MAX_SCORE != _MAX_SCORE
            or any(type(r).enhance_using_context is not base for r in registry.recognizers)):
        raise RuntimeError("the detector's analysis loop does not match this Presidio setup")


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
