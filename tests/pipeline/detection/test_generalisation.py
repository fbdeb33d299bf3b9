"""Kinds of error found on texts written after the dev set was fitted (one case per line).

- a trigger or greeting word is never part of the name it introduces;
- a house number and a street type need a street name between them unless the street is
  numbered (``42 5 street``, ``route 9``): boarding gates, dates (``1 st``), order lines
  (``2 green stripe``) and car models are no addresses;
- ``via`` introduces a carrier or a means ("shipped via UPS"), not a place.
"""

from __future__ import annotations

import pytest

from tests.pipeline.detection.conftest import found


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, I'm Priya Raman and my card is 5425 2334 3010 9903",
         [("PERSON", "Priya Raman"), ("CREDIT_CARD", "5425 2334 3010 9903")]),
        ("Oi, aqui é o Rafael Costa, meu email é rafa.costa@exemplo.com.br", [("PERSON", "Rafael Costa")]),
        ("Flight LH 454 gate B22 boards 14:35, seat 23C", []),
        ("Order #A-77812 shipped via UPS 1Z999AA10123456784, track online", []),
        ("i need 2 green stripe and 1 meat eater please", []),
        ("yep 1 st september", []),
        ("my 2010 ford ranger needs a service", []),
        ("my address is 42 5 street", [("LOCATION", "5 street")]),
        ("address 2400 route 9 fishkill", [("LOCATION", "2400 route 9")]),
        ("it's dave. new addr 4417 Maple Avenue Apt 5, Springfield IL 62704",
         [("LOCATION", "4417 Maple Avenue Apt 5"), ("LOCATION", "Springfield IL")]),
        ("123 main st apt 568", [("LOCATION", "123 main st apt 568")]),
    ],
)
def test_generalisation_kinds(detector, text, expected):
    got = [(t, s) for t, s in found(detector, text) if t in {"PERSON", "LOCATION", "CREDIT_CARD"}]
    assert got == expected
