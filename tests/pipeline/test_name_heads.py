"""Compound names whose head noun stands before a preposition (``price_per_message``)."""

from __future__ import annotations

import pytest

from pipeline.classify import Classifier, ClassifyInput
from pipeline.policy import load_policy


@pytest.fixture(scope="module")
def classifier():
    return Classifier(load_policy())


@pytest.mark.parametrize(
    "record, pointer, category",
    [
        ({"price": {"pricePerMessage": 0.01}}, "/price/pricePerMessage", "usage"),
        ({"number_of_segments": 2}, "/number_of_segments", "usage"),
        ({"count_of_messages": 7}, "/count_of_messages", "usage"),
        ({"cost_per_minute": "0.013"}, "/cost_per_minute", "usage"),
        ({"message_body": "see you at the station"}, "/message_body", "content"),
    ],
)
def test_head_noun_before_preposition(classifier, record, pointer, category):
    env = classifier.classify_batch([ClassifyInput(record, "auto")])[0]
    assert env["fields"][pointer]["category"] == category
