"""Prometheus metrics of the pipeline (names and labels per DESIGN.md, Metrics).

One :class:`PipelineMetrics` per serving process, with its own ``CollectorRegistry`` (no
global registry: tests and several apps in one process stay independent). Counters are
incremented in the process that serves ``/metrics`` (PITFALLS: process pools).

Label values come only from the policy and the code (event types, categories, sources,
entity types, rule names, topic names, dead-letter kinds), never from records. Every label
value goes through a :class:`LabelSet` that maps values outside a bounded set to a fixed
fallback (``unknown`` for event types and dead-letter reasons, ``other`` elsewhere), so a
record can never create a new time series: the sets come from the policy and the topic names
(:meth:`PipelineMetrics.from_processor`), or, unconfigured, from the code's defaults with a
cap on the number of distinct values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pipeline.records import OUTCOMES, ProcessResult

__all__ = ["CONTENT_TYPE_LATEST", "DEADLETTER_REASONS", "LabelSet", "PipelineMetrics"]

log = logging.getLogger(__name__)

_UNKNOWN = "unknown"
_OTHER = "other"
#: Routes label of a record that produced nothing (a skipped tombstone).
ROUTE_NONE = "none"

#: Every dead-letter kind the code writes (``pipeline.codec`` decode errors, ``pipeline.processing``,
#: ``agents.app``). tests/pipeline/test_metrics.py checks the sources name no other kind.
DEADLETTER_REASONS: frozenset[str] = frozenset({
    "empty", "invalid_utf8", "invalid_json", "too_deep", "not_object", "not_envelope", "invalid_envelope",
    "number_out_of_range",
    "output_too_large", "classify_error", "route_error", "anonymise_error", "processing_error",
    "produce_failed", "unreadable_message",
})
#: ``source`` of a field decision (``pipeline.classify.Decision``).
FIELD_SOURCES: frozenset[str] = frozenset({"rule", "name", "detector", "default"})
#: Event families of the default topics (``TopicNames.input_families``).
DEFAULT_EVENT_TYPES: frozenset[str] = frozenset({"message", "call", "account"})
#: Entity types the classifier itself declares (value hints), beyond the policy's.
CODE_ENTITY_TYPES: frozenset[str] = frozenset({"PHONE_NUMBER", "EMAIL_ADDRESS", "URL", "IP_ADDRESS"})
#: Distinct values an unconfigured label takes before further ones become the fallback.
MAX_LABEL_VALUES = 64


class LabelSet:
    """A bounded set of label values: ``value(x)`` is ``x`` when allowed, else ``fallback``.

    ``allowed=None`` admits the first ``cap`` distinct values (the code's own values; a guard
    against a bug turning record content into labels, not a policy).
    """

    __slots__ = ("_lock", "_seen", "allowed", "cap", "fallback")

    def __init__(self, allowed: Iterable[str] | None, fallback: str, cap: int = MAX_LABEL_VALUES) -> None:
        self.allowed = None if allowed is None else frozenset(str(a) for a in allowed)
        self.fallback = fallback
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def value(self, raw: object) -> str:
        if not isinstance(raw, str) or not raw:
            return self.fallback
        if self.allowed is not None:
            return raw if raw in self.allowed else self.fallback
        if raw in self._seen:
            return raw
        with self._lock:
            if len(self._seen) < self.cap and len(raw) <= 120:
                self._seen.add(raw)
                return raw
        return self.fallback


class PipelineMetrics:
    """The pipeline's counters, histograms and gauges in a private registry."""

    __slots__ = (
        "batch_size",
        "classify_seconds",
        "consumer_lag",
        "deadletter",
        "drift",
        "entities",
        "events",
        "fields",
        "labels",
        "outcomes",
        "produce_errors",
        "registry",
        "unknown_fields",
    )

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 event_types: Iterable[str] | None = DEFAULT_EVENT_TYPES,
                 entity_types: Iterable[str] | None = None,
                 rules: Iterable[str] | None = None,
                 routes: Iterable[str] | None = None,
                 topics: Iterable[str] | None = None) -> None:
        """Label values are bounded by these sets (``None``: the first values seen, capped).

        ``routes``: output topics (``none`` is always allowed); ``topics``: the consumed
        topics (``privacy_consumer_lag``, ``privacy_produce_errors_total``).
        """
        from pipeline.policy.model import CATEGORIES

        self.labels = {
            "event_type": LabelSet(event_types, _UNKNOWN),
            "category": LabelSet(CATEGORIES, _UNKNOWN),
            "source": LabelSet(FIELD_SOURCES, _UNKNOWN),
            "entity_type": LabelSet(entity_types, _OTHER),
            "reason": LabelSet(DEADLETTER_REASONS, _UNKNOWN),
            "rule": LabelSet(rules, _OTHER),
            "route": LabelSet(None if routes is None else {*routes, ROUTE_NONE}, _OTHER),
            "topic": LabelSet(topics, _OTHER),
        }
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("privacy_events_total", "Records processed, per event type and output route",
                              ["event_type", "route"], registry=r)
        self.fields = Counter("privacy_fields_total", "Fields tagged, per event type, category and source",
                              ["event_type", "category", "source"], registry=r)
        self.entities = Counter("privacy_entities_total", "Entities found, per entity type",
                                ["entity_type"], registry=r)
        self.deadletter = Counter("privacy_deadletter_total", "Records sent to the dead-letter topic",
                                  ["reason"], registry=r)
        self.unknown_fields = Counter("privacy_unknown_fields_total",
                                      "Fields no rule knew (decided by name hints, detectors or the default)",
                                      ["event_type"], registry=r)
        self.drift = Counter("privacy_drift_total", "Rules whose usage field carried personal data",
                             ["event_type", "rule"], registry=r)
        self.outcomes = Counter("privacy_outcomes_total", "Records processed, per outcome",
                                ["outcome"], registry=r)
        self.classify_seconds = Histogram(
            "privacy_classify_seconds", "Time to classify one batch (seconds)", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
        self.batch_size = Histogram(
            "privacy_batch_size", "Records per batch", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.consumer_lag = Gauge("privacy_consumer_lag", "Records not yet consumed, per input partition",
                                  ["topic", "partition"], registry=r)
        self.produce_errors = Counter("privacy_produce_errors_total",
                                      "Output messages that could not be produced, per topic",
                                      ["topic"], registry=r)

    @classmethod
    def from_processor(cls, processor: object, registry: CollectorRegistry | None = None) -> PipelineMetrics:
        """Metrics whose label sets come from ``processor``'s policy and topic names (families,
        entity types, rule names, output and input topics); anything missing stays capped."""
        policy = getattr(processor, "policy", None)
        event_types = entity_types = rules = routes = topics = None
        if policy is not None:
            try:
                event_types = set(policy.families)
                all_rules = [r for f in policy.families.values() for r in f.rules]
                all_rules += list(policy.common_rules) + list(policy.cloudevents_rules)
                rules = {r.name for r in all_rules}
                entity_types = {r.entity for r in all_rules if r.entity}
                entity_types |= {h.entity for h in policy.name_hints if h.entity}
                entity_types |= set(policy.detection.entities) | CODE_ENTITY_TYPES
                from pipeline.detection.config import DEFAULT_ENTITIES

                entity_types |= set(DEFAULT_ENTITIES)
            except Exception:  # a partial policy (tests): keep what is known, cap the rest
                log.debug("label sets from a partial policy", exc_info=True)
        try:
            routes = {s.name for s in processor.topic_specs()}
        except Exception:
            routes = None
        try:
            topics = set(processor.input_topics)
            if routes is not None:
                topics |= routes
        except Exception:
            topics = None
        return cls(registry, event_types=event_types or DEFAULT_EVENT_TYPES, entity_types=entity_types,
                   rules=rules, routes=routes, topics=topics)

    def observe(self, results: Iterable[ProcessResult], seconds: float, *, stage: str = "classify") -> None:
        """Count one processed batch: its results and the time classification took.

        ``stage="anonymise"`` (the anonymise agent) counts routes and dead letters only, so
        the classification counters and histograms describe classification alone.
        """
        results = list(results)
        classify = stage == "classify"
        lab = self.labels
        event_type, route_of, reason_of = lab["event_type"].value, lab["route"].value, lab["reason"].value
        category_of, source_of = lab["category"].value, lab["source"].value
        entity_of, rule_of = lab["entity_type"].value, lab["rule"].value
        if classify:
            self.classify_seconds.observe(seconds)
            self.batch_size.observe(len(results))
        # per-batch sums first, then one ``labels(...).inc(n)`` per series: the same totals
        # with far fewer lookups (label values are still mapped record by record, in order)
        events: dict[tuple, int] = {}
        deadletter: dict[str, int] = {}
        outcomes: dict[str, int] = {}
        fields: dict[tuple, int] = {}
        entities: dict[str, int] = {}
        unknown: dict[str, int] = {}
        drift: dict[tuple, int] = {}
        for res in results:
            et = event_type(res.event_type)
            st = res.stats
            routes = st.routes or sorted({o.topic for o in res.outputs})
            if routes:
                for route in routes:
                    key = (et, route_of(route))
                    events[key] = events.get(key, 0) + 1
            elif classify:
                events[(et, ROUTE_NONE)] = events.get((et, ROUTE_NONE), 0) + 1
            if res.outcome == "deadletter":
                reason = reason_of(st.deadletter_reason)
                deadletter[reason] = deadletter.get(reason, 0) + 1
            if not classify:
                continue
            outcome = res.outcome if res.outcome in OUTCOMES else _OTHER
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            for (category, source), n in st.fields.items():
                key = (et, category_of(category), source_of(source))
                fields[key] = fields.get(key, 0) + n
            for entity_type, n in st.entities.items():
                key = entity_of(entity_type)
                entities[key] = entities.get(key, 0) + n
            if st.unknown_fields:
                unknown[et] = unknown.get(et, 0) + st.unknown_fields
            for rule, n in st.drift.items():
                key = (et, rule_of(rule))
                drift[key] = drift.get(key, 0) + n
        for metric, sums in ((self.events, events), (self.fields, fields), (self.drift, drift)):
            for key, n in sums.items():
                metric.labels(*key).inc(n)
        for metric, sums in ((self.deadletter, deadletter), (self.outcomes, outcomes),
                             (self.entities, entities), (self.unknown_fields, unknown)):
            for key, n in sums.items():
                metric.labels(key).inc(n)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(self.labels["topic"].value(topic), str(int(partition))).set(max(0, lag))

    def set_lags(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace every ``privacy_consumer_lag`` series by ``lags`` (``(topic, partition) -> lag``):
        partitions no longer assigned to this worker disappear instead of going stale."""
        wanted = {(self.labels["topic"].value(t), str(int(p))): max(0, int(v)) for (t, p), v in lags.items()}
        for labels in list(self._lag_series()):
            if labels not in wanted:
                try:
                    self.consumer_lag.remove(*labels)
                except KeyError:
                    pass
        for (topic, partition), value in wanted.items():
            self.consumer_lag.labels(topic, partition).set(value)

    def _lag_series(self) -> list[tuple[str, str]]:
        return [(s.labels["topic"], s.labels["partition"])
                for fam in self.consumer_lag.collect() for s in fam.samples]

    def produce_failed(self, topic: str) -> None:
        self.produce_errors.labels(self.labels["topic"].value(topic)).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)
