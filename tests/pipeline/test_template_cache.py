"""The template cache (A2P traffic) and the detector's own analysis loop give exactly what a
plain analysis gives: same entity types, offsets, scores and recognizers."""

from __future__ import annotations

import random

import pytest

from pipeline.benchmark import a2p_bodies, default_sms_path
from pipeline.detection import DetectionConfig, Detector
from pipeline.detection.engine import _absolute_spans, _relative_spans, template_key
from pipeline.samples import load_sms_bodies

_MIXED = [
    "Hi Maria, call me back at +1 415 555 0142 when you can.",
    "Order #48213 shipped to 12 Market Street, Springfield. Questions? ana.silva@example.com",
    "Hola Juan, nos vemos mañana en la calle Mayor 5 de Madrid.",
    "My card is 4111 1111 1111 1111 and my IBAN DE89 3704 0044 0532 0130 00",
    "ssn 464-72-7630, imsi 310150123456789, sip:alice@example.com",
    "Dr. Priya Raman will see you at 221B Baker Street, London on Monday.",
]


def _realistic_a2p(n: int, seed: int) -> list[str]:
    """A2P texts with values the benchmark generator does not use (other senders, e-mail
    addresses, places, greetings with names, values glued to punctuation)."""
    rng = random.Random(seed)
    names = ["Maria", "John", "Priya", "Luis", "Anne Marie", "Oluwaseun", "Chen", "Zoë"]
    cities = ["Lisbon", "Austin", "Leeds", "Pune"]
    out = []
    for _ in range(n):
        code = str(rng.randint(10 ** 3, 10 ** rng.randint(4, 8)))
        amount = f"{rng.randint(1, 5000):,}.{rng.randint(0, 99):02d}"
        day = rng.choice(["Monday", "Fri", "Mar 3", "12/24", "2026-01-09", "Sunday, May 4"])
        out.append(rng.choice([
            f"Hi {rng.choice(names)}, your Contoso code is {code}. Reply STOP to opt out.",
            (f"Contoso Pharmacy: your prescription #{code} is ready for pickup in "
             f"{rng.choice(cities)} on {day}. Questions? help+{code}@contoso.example"),
            (f"Payment of EUR {amount} to Contoso received ({day}). Receipt: "
             f"https://pay.contoso.example/r/{code}?u={rng.randint(1, 99)}"),
            (f"Dear {rng.choice(names)}, your Contoso visit is booked for {day} at "
             f"{rng.randint(1, 12)}:{rng.choice(['00', '30'])}. Call {rng.choice(['+', ''])}"
             f"1{rng.randint(2000000000, 9999999999)} to change it."),
        ]))
    return out


@pytest.fixture(scope="module")
def plain() -> Detector:
    return Detector(DetectionConfig(template_cache=0))


@pytest.fixture(scope="module")
def sms_texts() -> list[str]:
    bodies = load_sms_bodies(default_sms_path())
    return (bodies[:150] if len(bodies) >= 150 else []) + _MIXED


def _as_rows(results):
    return [[(s.type, s.start, s.end, round(s.score, 6), s.recognizer) for s in spans]
            for spans in results]


@pytest.mark.parametrize("texts", ["bench", "realistic"])
def test_cached_results_equal_uncached(plain, texts):
    batch = a2p_bodies(400, seed=21) if texts == "bench" else _realistic_a2p(400, seed=4)
    expected = _as_rows(plain.analyze_batch(batch))
    cached = Detector(DetectionConfig(template_cache=512))
    got = []
    for i in range(0, len(batch), 48):
        got.extend(_as_rows(cached.analyze_batch(batch[i:i + 48])))
    diffs = [(i, e, g) for i, (e, g) in enumerate(zip(expected, got)) if e != g]
    assert not diffs, f"{len(diffs)} texts differ, first at index {diffs[0][0]}"
    stats = cached.template_stats
    assert stats["hits"] >= len(batch) // 2, stats


def test_same_template_in_one_batch_runs_ner_once():
    det = Detector(DetectionConfig(template_cache=64))
    texts = a2p_bodies(200, seed=8)
    det.analyze_batch(texts)
    distinct = {template_key(t)[0] for t in texts}
    assert det.template_stats["misses"] <= len(distinct)
    assert det.template_stats["hits"] + det.template_stats["misses"] == len(texts)


def test_own_analysis_loop_equals_presidio(plain, sms_texts):
    """``Detector._analyze_chunk`` re-implements ``AnalyzerEngine.analyze``: same results."""
    from presidio_analyzer.nlp_engine import NlpArtifacts

    det = plain
    texts = sms_texts + a2p_bodies(60, seed=2) + _realistic_a2p(60, seed=5)
    langs = det._languages.detect_batch(texts)
    for text, lang in zip(texts, langs):
        wanted = [e for e in det.config.entities if e in det._supported[lang]]
        doc = det._nlp(text)
        ents = tuple((e.start_char, e.end_char, {"PERSON": "PERSON"}.get(e.label_, "LOCATION"))
                     for e in doc.ents if e.label_ in ("PERSON", "GPE", "LOC", "FAC"))
        mine = det._artifacts(doc, lang, [])
        assert mine.keywords == NlpArtifacts.set_keywords(det._nlp_engine, mine.lemmas, lang)
        assert mine.tokens == [t.text for t in doc]
        ours = det._analyze_chunk(text, lang, wanted, None, ents)
        theirs = det._engine.analyze(text=text, language=lang, entities=wanted,
                                     nlp_artifacts=det._artifacts(
                                         doc, lang, [doc.char_span(s, e, label=lb)
                                                     for s, e, lb in ents]),
                                     score_threshold=det._min_threshold)
        key = lambda r: (r.entity_type, r.start, r.end, r.score)
        assert sorted(map(key, ours)) == sorted(map(key, theirs)), "analysis loops differ"


@pytest.mark.parametrize("a, b", [
    ("Your code is 1234. Do not share it with anyone.",
     "Your code is 98765432. Do not share it with anyone."),
    ("Paid $5.00 on Mar 4 at 9am, ref ORD-12 https://x.example/a",
     "Paid $1,234.56 on December 24 at 10:30 PM, ref ORD-123456 https://x.example/abcdef?q=1"),
    ("Mail a@b.example or call +1 415 555 0101 today",
     "Mail someone.else+tag@mail.example.org or call +44 20 7946 0958 today"),
])
def test_values_of_any_length_share_a_key(a, b):
    assert template_key(a)[0] == template_key(b)[0]


def test_template_key_keeps_words_and_marks_values():
    key, cuts = template_key("Hi Ana, code 0042 expires Monday. Track bit.ly/x9")
    assert key == "Hi Ana, code 0 expires 0. Track 0"
    assert len(cuts) == 6


def test_spans_move_onto_a_text_of_the_same_template():
    a = "Dear Customer, ORD-77 for Lisbon ships Monday from Porto."
    b = "Dear Customer, ORD-123456 for Lisbon ships Wednesday from Porto."
    ka, kb = template_key(a), template_key(b)
    assert ka[0] == kb[0]
    spans = ((a.index("Lisbon"), a.index("Lisbon") + 6, "LOCATION"),
             (a.index("Porto"), a.index("Porto") + 5, "LOCATION"),
             (a.index("77"), a.index("77") + 2, "PERSON"))  # a whole value: moves too
    moved = _absolute_spans(_relative_spans(spans, ka[1]), kb[1])
    assert [b[s:e] for s, e, _ in moved] == ["Lisbon", "Porto", "123456"]
    # an end inside a value cannot be moved: left out
    assert _relative_spans(((a.index("77"), a.index("77") + 1, "PERSON"),), ka[1]) == ()


def test_url_recognizer_on_runs_equals_presidio(sms_texts):
    """The URL recognizer reads only the non-space runs that can hold a URL: same results
    as Presidio's on the whole text."""
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    from pipeline.detection.recognizers import build_recognizers

    ours = next(r for r in build_recognizers(DetectionConfig(recognizers=["url"]), "en"))
    stock = UrlRecognizer()
    texts = sms_texts + a2p_bodies(80, seed=6) + _realistic_a2p(40, seed=7) + [
        "see https://example.com/a?b=c, www.test.org and 'http://quoted.net/x' or \"foo.io\"",
        "mail.example.com.\\nnext line example.co.uk/path(1) end.",
        "no url here. Just sentences. Even e.g. this",
    ]
    key = lambda r: (r.entity_type, r.start, r.end, r.score)
    for text in texts:
        assert sorted(map(key, ours.analyze(text, ["URL"]))) == \
            sorted(map(key, stock.analyze(text, ["URL"])))
