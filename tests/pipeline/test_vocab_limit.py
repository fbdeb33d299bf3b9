"""spaCy's vocabulary keeps every distinct token it reads; the detector reloads its model once
``vocab_limit`` new lexemes were added, so a long-running worker's memory stays bounded, and
the spans it finds do not change."""

from __future__ import annotations

import pytest

from pipeline.benchmark import a2p_bodies
from pipeline.detection import DetectionConfig, Detector


@pytest.fixture(scope="module")
def texts() -> list[str]:
    # templated texts with fresh values: every code, number and address adds lexemes
    return a2p_bodies(2400, seed=17)


@pytest.fixture(scope="module")
def unbounded(texts) -> tuple[Detector, list]:
    det = Detector(DetectionConfig(vocab_limit=0))
    base = len(det._nlp.vocab)
    spans = []
    for i in range(0, len(texts), 200):
        spans.extend(det.analyze_batch(texts[i:i + 200]))
    assert det.model_reloads == 0
    assert len(det._nlp.vocab) - base > 1500  # the growth the limit exists for
    return det, spans


@pytest.mark.parametrize("limit, min_reloads", [(500, 2), (1000, 1), (10**9, 0)])
def test_vocab_limit_reloads_the_model_and_keeps_results(texts, unbounded, limit, min_reloads):
    _, expected = unbounded
    det = Detector(DetectionConfig(vocab_limit=limit))
    base = len(det._nlp.vocab)
    got, peak = [], 0
    for i in range(0, len(texts), 200):
        got.extend(det.analyze_batch(texts[i:i + 200]))
        peak = max(peak, len(det._nlp.vocab) - base)
    assert got == expected
    assert det.model_reloads >= min_reloads
    if min_reloads:
        # a batch may add what it adds before the check at the next batch
        assert peak <= limit + 500
    else:
        assert det.model_reloads == 0


def test_vocab_limit_must_not_be_negative():
    with pytest.raises(ValueError):
        DetectionConfig(vocab_limit=-1)
