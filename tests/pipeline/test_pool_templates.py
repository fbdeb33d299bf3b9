"""Template sharing in the detector pool: a template is analysed about once in the whole pool
(not once per child), texts are routed by a cheap hint, and results stay exactly those of a
plain in-process analysis."""

from __future__ import annotations

import contextlib

import pytest

from pipeline.benchmark import a2p_bodies
from pipeline.detection import DetectionConfig, Detector
from pipeline.detection.engine import cache_key
from pipeline.detection.pool import PooledDetector, _route_hint

_MIXED = [
    "Hi Maria, call me back at +1 415 555 0142 when you can.",
    "Order #48213 shipped to 12 Market Street, Springfield. Questions? ana.silva@example.com",
    "Hola Juan, nos vemos mañana en la calle Mayor 5 de Madrid.",
    "ok see you at 5",
    "My card is 4111 1111 1111 1111 and my IBAN DE89 3704 0044 0532 0130 00",
]


def _rows(results):
    return [[(s.type, s.start, s.end, round(s.score, 6), s.recognizer) for s in spans]
            for spans in results]


@pytest.fixture(scope="module")
def plain() -> Detector:
    return Detector(DetectionConfig(template_cache=0))


def test_learned_templates_move_between_detectors(plain):
    texts = a2p_bodies(120, seed=5)
    first = Detector(DetectionConfig(template_cache=256))
    first.keep_learned()
    first.analyze_batch(texts[:60])
    learned = first.take_learned()
    assert learned and first.take_learned() == []
    assert len(learned) == first.template_stats["misses"]
    second = Detector(DetectionConfig(template_cache=256))
    second.add_templates(learned)
    got = second.analyze_batch(texts[:60])
    keyed = sum(cache_key(t) is not None for t in texts[:60])
    assert second.template_stats == {"hits": keyed, "misses": 0}
    assert _rows(got) == _rows(plain.analyze_batch(texts[:60]))


def test_take_learned_is_empty_unless_kept():
    det = Detector(DetectionConfig(template_cache=16))
    det.analyze_batch(a2p_bodies(5, seed=1))
    assert det.take_learned() == []


@contextlib.contextmanager
def _counting_pool(template_cache: int, learned: list[int]):
    """A two-process pool whose templates learned per child reply are appended to ``learned``."""
    with PooledDetector(DetectionConfig(template_cache=template_cache), processes=2) as pool:
        learn = pool._learn

        def counting(k, entries):
            learned.append(len(entries))
            return learn(k, entries)

        pool._learn = counting
        yield pool


def test_pool_shares_templates_and_matches_plain_analysis(plain):
    texts = a2p_bodies(600, seed=17) + _MIXED * 3
    expected = _rows(plain.analyze_batch(texts))
    keys = {k[0] for t in texts if (k := cache_key(t)) is not None}
    learned: list[int] = []
    with _counting_pool(512, learned) as pool:
        got = []
        for i in range(0, len(texts), 96):
            got.extend(_rows(pool.analyze_batch(texts[i:i + 96])))
    assert got == expected
    # once per template in the pool (a few more when templates share no hint), not per child
    assert sum(learned) <= len(keys) + len(keys) // 5


@pytest.mark.parametrize("entities", [None, ["PHONE_NUMBER", "EMAIL_ADDRESS"]])
def test_pool_results_keep_input_order(plain, entities):
    texts = (a2p_bodies(80, seed=3) + _MIXED) * 2
    with PooledDetector(DetectionConfig(template_cache=64), processes=2) as pool:
        got = _rows(pool.analyze_batch(texts, entities=entities))
        again = _rows(pool.analyze_batch(texts, entities=entities))
    expected = _rows(plain.analyze_batch(texts, entities=entities))
    assert got == expected
    assert again == expected


class _Routing:
    """The routing part of :class:`PooledDetector` without child processes."""

    _route = PooledDetector._route
    _learn = PooledDetector._learn
    _take_pending = PooledDetector._take_pending

    def __init__(self, children: int = 2, cache: int = 64):
        from collections import OrderedDict

        self.config = DetectionConfig(template_cache=cache)
        self._children = [object()] * children
        self._hints = OrderedDict()
        self._pending = [[] for _ in range(children)]


def test_route_sends_a_new_template_to_one_child_and_spreads_known_ones():
    r = _Routing()
    texts = [f"Your Globex login code is {1000 + i}. Do not share it." for i in range(100)]
    hints = [_route_hint(t) for t in texts]
    first = r._route(texts, hints)
    assert sorted(map(len, first)) == [0, 100]  # new: all on one child
    second = r._route(texts, hints)
    assert [len(g) for g in second] == [50, 50]  # known: spread
    for groups in (first, second):
        assert sorted(i for g in groups for i in g) == list(range(100))
        assert all(g == sorted(g) for g in groups)


def test_route_keeps_small_batches_on_one_child():
    r = _Routing()
    assert r._route(["short text"] * 3, [None] * 3) == [[0, 1, 2], []]


def test_route_balances_characters_of_free_texts():
    r = _Routing()
    texts = ["x" * 3000, "y" * 10, "z" * 10, "w" * 3000]
    groups = r._route(texts, [None] * 4)
    loads = [sum(len(texts[i]) for i in g) for g in groups]
    assert max(loads) <= 3100


def test_learned_templates_are_queued_for_the_other_children_bounded():
    r = _Routing(children=3, cache=4)
    r._learn(0, [("k1", "en", ()), ("k2", "en", ())])
    assert r._take_pending(0) == []
    assert [e[0] for e in r._take_pending(1)] == ["k1", "k2"]
    assert r._take_pending(1) == []
    r._learn(1, [(f"k{i}", "en", ()) for i in range(10)])
    assert [e[0] for e in r._take_pending(2)] == ["k6", "k7", "k8", "k9"]


@pytest.mark.parametrize("text, hint", [
    ("Soylent: 2814 is your verification code.", "is your verification"),
    ("Soylent: 59123456 is your verification code.", "is your verification"),
    ("12345 67890", None),
    ("x" * 1001, None),
])
def test_route_hint_skips_values(text, hint):
    assert _route_hint(text) == hint


def test_a_child_left_out_of_a_batch_still_gets_the_templates(plain):
    texts = a2p_bodies(200, seed=23)
    keys = {k[0] for t in texts if (k := cache_key(t)) is not None}
    learned: list[int] = []
    with _counting_pool(256, learned) as pool:
        small = [pool.analyze_batch([t]) for t in texts[:30]]  # one child each time
        big = pool.analyze_batch(texts)
    assert [row for b in small for row in _rows(b)] == _rows(plain.analyze_batch(texts[:30]))
    assert _rows(big) == _rows(plain.analyze_batch(texts))
    assert sum(learned) <= len(keys) + len(keys) // 5
