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
from pipeline.values import value_kind

log = logging.getLogger("privacy_pipeline.drift")

# An email in text; not the user part of a SIP URI or a channel name (``sip:1001@host``,
# ``sofia/internal/1001@host``).
_EMAIL = re.compile(r"(?<![\w.+/:-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
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
    kind = value_kind(value)[0] if len(value) <= 64 else "free_text"
    if "email" in checks and skip != "EMAIL_ADDRESS" and "@" in value and _EMAIL.search(value):
        found.append("email")
    if "phone" in checks and skip != "PHONE_NUMBER" and (
            kind == "phone" or (kind in ("free_text", "other") and _PHONE_IN_TEXT.search(value))):
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

    __slots__ = ("spec", "_windows", "_entities", "_counter")

    def __init__(self, spec: DriftSpec, rule_entities: dict[str, str | None] | None = None):
        self.spec = spec
        self._windows: dict[str, _Window] = {}
        self._entities = rule_entities or {}
        self._counter = 0

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
        spec = self.spec
        win = self._windows.get(rule)
        if win is None:
            win = self._windows[rule] = _Window(spec.window)
        checks = spec.checks
        exempt = spec.exempt.get(rule)
        if exempt:
            checks = [c for c in checks if c not in exempt]
        hit = bool(pii_kinds(value, checks, self._entities.get(rule)))
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

    def check_envelope(self, env: dict) -> Counter:
        """Sample an envelope's usage fields decided by a rule; ``Counter(rule -> flagged
        fields)`` for ``RecordStats.drift``. Every ``sample_every``-th envelope is looked at."""
        flagged: Counter = Counter()
        spec = self.spec
        if not spec.enabled:
            return flagged
        self._counter += 1
        if self._counter % spec.sample_every:
            return flagged
        record = env.get("record")
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
