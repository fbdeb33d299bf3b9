"""The detector's exact shortcuts give what the slow paths give, on ordinary and adversarial
texts: the template key's pattern choice (:func:`pipeline.detection.engine._slot_pattern`),
the phone recognizer's short-candidate skip and bare-run scoring, the address and IP
recognizers' pattern pre-filters, the hints of the SSN, card and CPaaS patterns, the phone
candidate scan and the context enhancer's pre-filter
(:func:`pipeline.detection.engine._may_be_boosted`)."""

from __future__ import annotations

import random
import re

import phonenumbers
import pytest

from pipeline.benchmark import a2p_bodies
from pipeline.detection import DetectionConfig, Detector
from pipeline.detection import engine
from pipeline.detection.recognizers import (
    address,
    cpaas,
    credit_card,
    ip_address,
    phone,
    us_ssn,
)

#: Values next to fixed text, unicode digits, numbers split across slots, no digits, e-mail
#: and URL look-alikes, context words glued or in other cases, non-ASCII, long texts.
ADVERSARIAL = [
    "",
    " ",
    "no digits at all in this text, just words and words",
    "Call 5551234 now",
    "call:5551234",
    "CALL ME AT 415 555 0142 PLEASE",
    "tel.+44 20 7946 0164.",
    "Phone number 555-0142, ext 12",
    "Your code is 12 34 56 78 and the phone 415 555 0142",
    "Ring +1 (415) 555-0101 or 00 44 20 7946 0958 today",
    "Your code: 123456. Questions? Call us: (415) 555-0169",
    "ref 1234567 order 7654321 number 5551234567",
    "٠١٢٣٤٥٦٧٨٩ is your code, call ٤١٥٥٥٥٠١٤٢",
    "Your code is １２３４５６７, call ４１５５５５０１４２",
    "Σ call 5551234 ΣΑΣ",
    "İstanbul office: call 0212 555 01 42",
    "Zoë here, bel me op 06 12345678 graag",
    "Llame al 91 123 45 67, teléfono de la oficina",
    "Ruf mich an: 030 1234567 (Handy)",
    "mail ana.silva@example.com or visit www.example.com/x?y=1",
    "user@host",
    "x@y.z a@b.cd e-mail: first.last+tag@sub.example.co.uk",
    "https://example.com/t/4KEHU?ref=sms and example.org/path and 3/18/2026",
    "website link url: http://a.io/b",
    "Go to ab/cd 12/24 AB/ CD/ 1/2",
    "Xwww.foo.com/bar is not a url, HTTPS://EXAMPLE.COM is",
    "ſip:alice@example.com and SIP:bob@example.com; call +15551234567",
    "Kelvin K/ ſt/ straße/ 10:30 AM on Monday, May 4, pay $1,234.56",
    "May I help? May 4 at 9 am, Sunday",
    "Your order 0P68M89R of EUR 944,08 ships Jun 19.   ",
    "Call 415 555 0142\n\n",
    "call 415\n555\t0142",
    "Reply STOP to 55555 or call 1-800-555-0199 ext. 4",
    "tel 12345678901234567890 and 1234567 and +12345",
    "Hi Maria, call me back at +1 415 555 0142 when you can.",
    "Dr. Priya Raman will see you at 221B Baker Street, London on Monday.",
    "ssn 464-72-7630, imsi 310150123456789, sip:alice@example.com",
    "My card is 4111 1111 1111 1111 and my IBAN DE89 3704 0044 0532 0130 00",
    ("Your Stark Clinic login code is 46521133. If you did not request it, call us at "
     "+44 20 7946 0164. ") * 8,
    "word " * 150 + "call 415 555 0142",
]


def _generated(n: int, seed: int) -> list[str]:
    """Random texts mixing digits (ASCII and not), separators, context words and values."""
    rng = random.Random(seed)
    pieces = ["call", "Call", "CALL", "tel:", "phone", "Ph.", "order", "code", "ref", "url",
              "link", "website", "at", "us", "me", ",", ".", ":", "-", "(", ")", "+", "00",
              "555", "0142", "415", "7946", "20", "+44", "1-800", "é", "Σ", "İ", "٤١٥", "１２",
              "www.x.com/p", "a@b.io", "3/18/2026", "10:30", "AM", "May", "Monday", "\n"]
    out = []
    for _ in range(n):
        words = [rng.choice(pieces) for _ in range(rng.randint(1, 14))]
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))
        words.insert(rng.randint(0, len(words)), digits)
        out.append(rng.choice([" ", "", " ", "  "]).join(words))
    return out


def _texts() -> list[str]:
    return (ADVERSARIAL + a2p_bodies(300, seed=5) + _generated(300, seed=9))


@pytest.mark.parametrize("text", _texts())
def test_slot_pattern_matches_like_the_full_pattern(text):
    fast = [(m.span(), m.lastgroup) for m in engine._slot_pattern(text).finditer(text)]
    slow = [(m.span(), m.lastgroup) for m in engine._TEMPLATE_SLOTS.finditer(text)]
    assert fast == slow


def test_slot_pattern_with_every_hint_is_the_full_pattern():
    assert engine._SLOTS_BY_HINTS[True, True].pattern == engine._TEMPLATE_SLOTS.pattern


@pytest.fixture(scope="module")
def phone_recognizer():
    det = Detector(DetectionConfig(template_cache=0))
    recs = det._registry.get_recognizers(language="en", entities=["PHONE_NUMBER"])
    return next(r for r in recs if isinstance(r, phone.PhoneNumberRecognizer))


def _phone_rows(rec, text):
    return [(r.start, r.end, r.score) for r in rec.analyze(text, ["PHONE_NUMBER"])]


@pytest.mark.parametrize("text", _texts())
def test_phone_short_candidate_skip_changes_nothing(phone_recognizer, text, monkeypatch):
    fast = _phone_rows(phone_recognizer, text)
    monkeypatch.setattr(phone, "_MIN_CANDIDATE_CHARS", 0)
    assert _phone_rows(phone_recognizer, text) == fast


def _reference_score(rec, raw: str, digits: str) -> float:
    """``PhoneNumberRecognizer._score`` of a national candidate, without the bare-run
    shortcut: every region parsed."""
    groups = len(re.findall(r"\d+", raw))
    valid = False
    for region in rec.regions:
        try:
            parsed = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            valid = True
            break
    if groups >= 2 or "(" in raw:
        return rec.scores["valid"] if valid else rec.scores["grouped"]
    if valid and len(digits) >= 10:
        return rec.scores["bare_valid"]
    return rec.scores["bare"]


_NATIONAL = ["5551234", "21333066", "415555014", "4155550142", "2079460164", "0612345678",
             "912345678", "030 1234567", "(415) 5550142", "415-555-0142", "٤١٥٥٥٥٠١٤٢",
             "１２３４５６７８", "0212 555 01 42", "98765432109", "2125550147", "8005550199",
             "06 12345678", "(0) 3012345", "123456789", "7946016"]


@pytest.mark.parametrize("raw", _NATIONAL + [c for t in _texts()[:120]
                                            for c in re.findall(r"\d[\d \-()]{5,}\d", t)])
def test_phone_bare_run_score_shortcut_changes_nothing(phone_recognizer, raw):
    digits = re.sub(r"\D", "", raw)
    assert phone_recognizer._score(raw, digits, False) == _reference_score(
        phone_recognizer, raw, digits)


@pytest.fixture(scope="module")
def address_recognizer():
    det = Detector(DetectionConfig(template_cache=0))
    recs = det._registry.get_recognizers(language="en", entities=["LOCATION"])
    return next(r for r in recs if isinstance(r, address.AddressRecognizer))


_ADDRESSES = [
    "Deliver to 145 Main Street, Springfield, today",
    "Ship to 12 Market Street,Springfield or 221B Baker Street,  London",
    "454, Joshi Path, Pune. 15/629, Cheema Road, Delhi",
    "12 Rue Mayor, Éibar and 5 Calle Sol, Ñuñoa",
    "at 12 Harbor View,lisbon then 9 Oak Lane, ",
    "Meet at 10 Downing Street, London SW1A 2AA, UK",
    "42 Wallaby Way Sydney, no comma capital here, 7 Elm Road",
    "Reisinggasse 30, Wien; Langerstr. 4/1, München",
]


@pytest.mark.parametrize("text", _ADDRESSES + _texts())
def test_address_comma_prefilter_changes_nothing(address_recognizer, text, monkeypatch):
    def rows():
        return [(r.start, r.end, r.score) for r in address_recognizer.analyze(text, ["LOCATION"])]

    fast = rows()
    monkeypatch.setattr(address, "_COMMA_CAPITAL", re.compile(""))
    assert rows() == fast


_IPS = ["server 10.0.0.1 down", "1.2.3.4", "v 1.2.3", "fe80::1%eth0 and ::1", "at 12:30:45",
        "::ffff:192.168.0.1", "2001:db8::ff00:42:8329", "a:b:c", "12:30 and 1:2:3:4:5:6:7:8",
        "x.y.z 999.1.1.1 8.8.8.8.", "ratio 1:2 then 3:4", "https://[2001:db8::1]/x"]


@pytest.mark.parametrize("text", _IPS + _texts())
def test_ip_prefilters_change_nothing(text, monkeypatch):
    rec = ip_address.IpAddressRecognizer()

    def rows():
        return [(r.start, r.end, r.score) for r in rec.analyze(text, ["IP_ADDRESS"])]

    fast = rows()
    slow = ([(m.start(), m.end()) for m in ip_address._V4.finditer(text)],
            [(m.start(), m.end()) for m in ip_address._V6.finditer(text)])
    if text.count(".") < 3:
        assert not slow[0]
    if not ip_address._V6_HINT.search(text):
        assert not slow[1]
    monkeypatch.setattr(ip_address, "_V6_HINT", re.compile(""))
    assert rows() == fast


def _rows(results):
    return [[(s.type, s.start, s.end, s.score, s.recognizer) for s in spans]
            for spans in results]


@pytest.fixture(scope="module")
def detectors():
    return Detector(DetectionConfig(template_cache=0)), Detector(DetectionConfig(template_cache=64))


def test_context_prefilter_is_on_for_the_model(detectors):
    # ``Token.lower_`` is ``str.lower`` of the token text, which the pre-filter relies on
    assert all(det._lower_is_str_lower for det in detectors)


@pytest.mark.parametrize("cached", [False, True])
def test_context_prefilter_changes_nothing(detectors, cached, monkeypatch):
    det = detectors[cached]
    texts = _texts()
    fast = []
    for i in range(0, len(texts), 64):
        fast.extend(_rows(det.analyze_batch(texts[i:i + 64])))
    monkeypatch.setattr(engine, "_may_be_boosted", lambda text, results, words: results)
    slow = []
    for i in range(0, len(texts), 64):
        slow.extend(_rows(det.analyze_batch(texts[i:i + 64])))
    diffs = [texts[i] for i, (f, s) in enumerate(zip(fast, slow)) if f != s]
    assert not diffs, f"{len(diffs)} texts differ"


def test_context_prefilter_keeps_results_that_may_be_boosted():
    class R:
        def __init__(self, start):
            self.start = start
            self.recognition_metadata = {engine._ID_KEY: "p"}

    words = {"p": ("call", "tel")}
    near, far, tail = R(0), R(5), R(14)
    text = "Ring 5551234  "
    assert engine._may_be_boosted(text, [near, far, tail], words) == [tail]  # no "call"
    assert engine._may_be_boosted("CALL 5551234", [near], words) == [near]
    assert engine._may_be_boosted("ring 5551234 İ", [near], words) == [near]  # not ASCII


_NUMBERS = ["ssn 464-72-7630 or 464 72 7630 or 464727630", "464-72 7630 and 464 72-7630",
            "card 4111 1111 1111 1111, 4111-1111-1111-1111, 4111111111111111",
            "٤١١١١١١١١١١١١١١١ and ４１１１１１１１１１１１１１１１",
            "imsi 310150123456789 and 3101501234567890 and x310150123456789",
            "iccid 8944110063141234567 and 89 44 11 00 63 14 12 34 56 7F",
            "sid AC0123456789abcdef0123456789ABCDEF and xAC0123456789abcdef0123456789ABCDEF",
            "SIP:alice@example.com, sips:bob@example.com;transport=tls, ſip:x@y.z",
            "+1 (415) 555-0101, (0) 30 1234567, 0044 20 7946 0958, ++44 20 7946 0958",
            "12345678901234567890123456789012345 and 1.234.567,89 and 555-0142.5"]

_HINTS = [(us_ssn, "_HINT", us_ssn._CANDIDATE), (credit_card, "_HINT", credit_card._CANDIDATE),
          (cpaas, "_SID_HINT", cpaas._SID), (cpaas, "_ICCID_HINT", cpaas._ICCID),
          (cpaas, "_IMSI_HINT", cpaas._IMSI)]


@pytest.mark.parametrize("text", _NUMBERS + ADVERSARIAL + _generated(300, seed=13))
def test_pattern_hints_are_necessary(text):
    for module, name, pattern in _HINTS:
        if pattern.search(text):
            assert getattr(module, name).search(text), (module.__name__, name)
    if cpaas._SIP.search(text) and text.isascii():
        assert "sip" in text.lower()


@pytest.mark.parametrize("text", _NUMBERS + _texts())
def test_number_recognizers_with_hints_give_the_same(text, monkeypatch):
    recs = [us_ssn.SsnRecognizer(), credit_card.CardNumberRecognizer(),
            cpaas.CpaasIdRecognizer()]

    def rows():
        return [[(r.entity_type, r.start, r.end, r.score) for r in rec.analyze(text, None)]
                for rec in recs]

    fast = rows()
    for module, name, _ in _HINTS:
        monkeypatch.setattr(module, name, re.compile(""))
    slow = rows()
    assert fast == slow


@pytest.mark.parametrize("text", _NUMBERS + _texts())
def test_phone_candidates_are_the_pattern_matches(text):
    fast = [(m.span(), m.group(0)) for m in phone._candidates(text)]
    slow = [(m.span(), m.group(0)) for m in phone._CANDIDATE.finditer(text)]
    assert fast == slow
