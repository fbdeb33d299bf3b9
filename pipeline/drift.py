"""Drift watch (issue 5): usage fields that start carrying personal data.

A rule calls a field usage because of what it held when the rule was written; traffic
changes (an ``error_message`` that starts quoting the customer's email, a ``tags`` list
that starts holding names). :class:`DriftMonitor` keeps, per rule, a sliding window of
sampled observations of usage fields decided by that rule and flags the rule while more
than the policy's ``drift.threshold`` share of the window carried PII (cheap checks only:
email, phone, person name; no Presidio).

Flags go into ``RecordStats.drift[rule]`` (``privacy_drift_total{event_type,rule}``); a
log line names the rule and the masked pointer (:func:`pipeline.pointers.mask_pointer`),
never the value. Not thread-safe: one monitor per processor, as the processor is used.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, deque

from pipeline import pointers
from pipeline.policy.model import DriftSpec, Policy
from pipeline.values import could_be_phone, value_kind

log = logging.getLogger("privacy_pipeline.drift")

# An email in text; not the user part of a SIP URI or a channel name (``sip:1001@host``,
# ``sofia/internal/1001@host``).
_EMAIL = re.compile(r"(?<![\w.+/:-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
_ANY_DIGIT = re.compile(r"\d")
_PHONE_IN_TEXT = re.compile(r"(?<![\w+])(?:\+\d[\d ().-]{7,16}\d|\(\d{3}\) ?\d{3}-\d{4})(?![\w.])")
# Two or three capitalised words, each 2-20 letters ("Grace Haddad", "Ana de la Cruz" misses
# are acceptable: the check is a cheap alarm, not a detector).
_PERSON = re.compile(r"^(?:[A-Z][a-z]{1,19}|[A-Z]{2,20})(?: (?:[A-Z][a-z]{1,19}|[A-Z]{2,20})){1,2}$")
_NOT_NAMES = frozenset(
    "no answer busy failed completed canceled cancelled queued sent delivered undelivered "
    "unknown error ok not found bad request internal server gateway timeout service unavailable "
    "inbound outbound api call message normal clearing user originator the and of for to in".split())


def pii_kinds(value, checks=("email", "phone", "person"), skip: str | None = None) -> list[str]:
    """The cheap PII kinds a value shows (``email``, ``phone``, ``person``); ``skip`` is the
    entity a rule declares for the field (``PHONE_NUMBER`` on ``/to`` is not drift)."""
    if not isinstance(value, str) or len(value) < 5:
        return []
    found = []
    if "email" in checks and skip != "EMAIL_ADDRESS" and "@" in value and _EMAIL.search(value):
        found.append("email")
    # a phone (by value kind or in text) needs a digit, or a %-escape that may decode to one
    if "phone" in checks and skip != "PHONE_NUMBER" and ("%" in value or _ANY_DIGIT.search(value)):
        # the pattern needs a "+" or a "(": two C-speed tests spare most values the search
        in_text = _PHONE_IN_TEXT.search(value) if "+" in value or "(" in value else None
        if in_text is not None or could_be_phone(value):  # else neither test below can hold
            kind = value_kind(value)[0] if len(value) <= 64 else "free_text"
            if kind == "phone" or (kind in ("free_text", "other") and in_text is not None):
                found.append("phone")
    if "person" in checks and skip != "PERSON" and len(value) <= 60 and _PERSON.match(value.strip()):
        words = value.strip().lower().split()
        if not any(w in _NOT_NAMES for w in words):
            found.append("person")
    return found


class _Window:
    __slots__ = ("samples", "hits", "seen", "drifting")

    def __init__(self, size: int):
        self.samples: deque[bool] = deque(maxlen=size)
        self.hits = 0
        self.seen = 0
        self.drifting = False

    def add(self, hit: bool) -> None:
        if len(self.samples) == self.samples.maxlen and self.samples[0]:
            self.hits -= 1
        self.samples.append(hit)
        self.hits += hit


class DriftMonitor:
    """Per-rule sliding windows of sampled usage-field observations (see module doc)."""

    __slots__ = ("spec", "_windows", "_entities", "_counter", "_rules")

    def __init__(self, spec: DriftSpec, rule_entities: dict[str, str | None] | None = None):
        self.spec = spec
        self._windows: dict[str, _Window] = {}
        self._entities = rule_entities or {}
        self._counter = 0
        #: rule -> (its window, its checks, the entity it declares), worked out once
        self._rules: dict[str, tuple] = {}

    @classmethod
    def from_policy(cls, policy: Policy) -> "DriftMonitor":
        """A monitor configured by the policy's ``drift:`` section; rules' declared
        entities are not drift for their own fields."""
        entities = {}
        for fam in policy.families.values():
            for rule in fam.rules:
                entities[rule.name] = rule.entity
        for rule in policy.common_rules + policy.cloudevents_rules:
            entities[rule.name] = rule.entity
        return cls(policy.drift, entities)

    def observe(self, rule: str, value, pointer: str = "") -> bool:
        """Record one (already sampled) observation of a usage field decided by ``rule``.
        Returns ``True`` when the value carries PII while the rule is drifting (its window
        holds PII in more than ``threshold`` of at least ``min_samples`` samples)."""
        return self._observe(self._rule(rule), rule, value, pointer)

    def _rule(self, rule: str) -> tuple:
        """``(window, checks, declared entity)`` of ``rule``, worked out once."""
        known = self._rules.get(rule)
        if known is None:
            spec = self.spec
            win = self._windows.get(rule)
            if win is None:
                win = self._windows[rule] = _Window(spec.window)
            checks = spec.checks
            exempt = spec.exempt.get(rule)
            if exempt:
                checks = [c for c in checks if c not in exempt]
            known = self._rules[rule] = (win, checks, self._entities.get(rule))
        return known

    def _observe(self, known: tuple, rule: str, value, pointer: str) -> bool:
        """:meth:`observe` with the rule's :meth:`_rule` entry at hand."""
        spec = self.spec
        win, checks, skip = known
        hit = bool(pii_kinds(value, checks, skip))
        win.add(hit)
        win.seen += 1
        drifting = len(win.samples) >= spec.min_samples and win.hits / len(win.samples) > spec.threshold
        if drifting and not win.drifting:
            log.warning("drift: rule %s calls usage a field carrying personal data in %d of the last %d "
                        "samples (pointer %s)", rule, win.hits, len(win.samples), pointers.mask_pointer(pointer))
        elif win.drifting and not drifting:
            log.info("drift: rule %s back under the threshold", rule)
        win.drifting = drifting
        return drifting and hit

    def check_envelope(self, env: dict, layout=None) -> Counter:
        """Sample an envelope's usage fields decided by a rule; ``Counter(rule -> flagged
        fields)`` for ``RecordStats.drift``. Every ``sample_every``-th envelope is looked at.
        ``layout``: the envelope's :class:`~pipeline.plans.Layout` when it has one (which
        fields are sampled is then read from it; same result)."""
        flagged = self.sample(env, layout)
        return Counter.__new__(Counter) if flagged is None else flagged  # empty, without __init__

    def sample(self, env: dict, layout=None) -> Counter | None:
        """:meth:`check_envelope` for the serving path: ``None`` (no counter built) when the
        envelope is not sampled or drift is off, else the ``Counter(rule -> flagged fields)``
        (empty when nothing was flagged). Most envelopes are not sampled (one in
        ``sample_every``)."""
        spec = self.spec
        if not spec.enabled:
            return None
        self._counter += 1
        if self._counter % spec.sample_every:
            return None
        flagged: Counter = Counter.__new__(Counter)  # empty, without the Python-level __init__
        record = env.get("record")
        if layout is not None:
            kept = layout.drift
            if kept is None or kept[0] is not self:
                kept = layout.drift = (self, tuple((rule, ptr, path, self._rule(rule))
                                                   for rule, ptr, path in _sampled_fields(layout)))
            observe = self._observe
            for rule, ptr, path, known in kept[1]:
                node = record
                for seg in path:
                    node = node[seg]
                if observe(known, rule, node, ptr):
                    flagged[rule] += 1
            return flagged
        for ptr, f in env.get("fields", {}).items():
            if f.get("category") != "usage" or f.get("source") != "rule" or f.get("secret"):
                continue
            value = resolve(record, ptr)
            if self.observe(f["rule"], value, ptr):
                flagged[f["rule"]] += 1
        return flagged

    def status(self) -> dict[str, dict]:
        """Per rule: ``samples``, ``pii`` (samples with PII in the window), ``share``,
        ``drifting``."""
        return {rule: {"samples": len(w.samples), "pii": w.hits,
                       "share": round(w.hits / len(w.samples), 4) if w.samples else 0.0,
                       "drifting": w.drifting}
                for rule, w in sorted(self._windows.items())}


def _sampled_fields(layout) -> tuple:
    """``(rule, pointer, key path)`` of the fields :meth:`DriftMonitor.check_envelope` looks
    at in envelopes of ``layout``: usage, decided by a rule, not secret; document order.
    The monitor keeps them in ``layout.drift`` as ``(monitor, ((rule, pointer, key path,
    the rule's window entry), ...))`` (a layout seen by another monitor is worked out again
    for it: the windows are the monitor's)."""
    shape = layout.plan.shape
    return tuple((d.rule, ptr, path) for ptr, path, d in zip(shape.ptrs, shape.paths, layout.decisions)
                 if d.category == "usage" and d.source == "rule" and not d.secret)


def resolve(record, pointer: str):
    """The value at a JSON Pointer, or ``None`` when absent."""
    node = record
    for seg in pointers.split(pointer):
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list):
            try:
                node = node[int(seg)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return node
