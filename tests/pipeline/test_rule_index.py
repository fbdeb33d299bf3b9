"""The rule index of the field decider finds the same rule as trying every pattern."""

import itertools

import pytest

from pipeline.classify import FieldDecider, _first_rule
from pipeline.policy import load_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def _rule_lists(policy):
    yield "common", policy.common_rules
    yield "cloudevents", policy.cloudevents_rules
    for name, fam in policy.families.items():
        yield name, fam.rules


def _norms(policy):
    """Paths built from every segment the policy's patterns name, plus odd ones."""
    segs = {seg for _n, rules in _rule_lists(policy) for r in rules for p in r.compiled for seg in p
            if seg not in ("*", "**")}
    segs |= {"#", "data", "16175550168", "x_routing", "note", ""}
    segs = sorted(segs)
    yield ()
    for seg in segs:
        yield (seg,)
    for a, b in itertools.product(segs[:40], segs):
        yield (a, b)
    for a, b, c in itertools.product(("data", "callflow", "variables", "#", "to"), segs[:30], segs):
        yield (a, b, c)


def test_index_finds_the_same_rule(policy):
    decider = FieldDecider(policy)
    checked = 0
    for _name, rules in _rule_lists(policy):
        for norm in _norms(policy):
            assert decider._first_rule(rules, norm) is _first_rule(rules, norm), norm
            checked += 1
    assert checked > 10_000


def test_index_follows_a_changed_rule_list(policy):
    decider = FieldDecider(policy)
    rules = list(policy.common_rules)
    assert decider._first_rule(rules, ("status",)) is _first_rule(rules, ("status",))
    rules.reverse()
    assert decider._first_rule(rules, ("status",)) is _first_rule(rules, ("status",))
    assert decider._first_rule([], ("status",)) is None
