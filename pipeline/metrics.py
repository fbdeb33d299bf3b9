"""Prometheus metrics of the pipeline (names and labels per DESIGN.md, Metrics).

One :class:`PipelineMetrics` per serving process, with its own ``CollectorRegistry`` (no
global registry: tests and several apps in one process stay independent). Counters are
incremented in the process that serves ``/metrics`` (PITFALLS: process pools).

Label values come only from the policy and the code (event types, categories, sources,
entity types, rule names, topic names, dead-letter kinds), never from records.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pipeline.records import ProcessResult

__all__ = ["CONTENT_TYPE_LATEST", "PipelineMetrics"]

_UNKNOWN = "unknown"
#: Routes label of a record that produced nothing (a skipped tombstone).
ROUTE_NONE = "none"


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
        "outcomes",
        "produce_errors",
        "registry",
        "unknown_fields",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
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

    def observe(self, results: Iterable[ProcessResult], seconds: float, *, stage: str = "classify") -> None:
        """Count one processed batch: its results and the time classification took.

        ``stage="anonymise"`` (the anonymise agent) counts routes and dead letters only, so
        the classification counters and histograms describe classification alone.
        """
        results = list(results)
        classify = stage == "classify"
        if classify:
            self.classify_seconds.observe(seconds)
            self.batch_size.observe(len(results))
        for res in results:
            et = res.event_type or _UNKNOWN
            st = res.stats
            routes = st.routes or sorted({o.topic for o in res.outputs})
            if routes:
                for route in routes:
                    self.events.labels(et, route).inc()
            elif classify:
                self.events.labels(et, ROUTE_NONE).inc()
            if res.outcome == "deadletter":
                self.deadletter.labels(st.deadletter_reason or _UNKNOWN).inc()
            if not classify:
                continue
            self.outcomes.labels(res.outcome).inc()
            for (category, source), n in st.fields.items():
                self.fields.labels(et, category, source).inc(n)
            for entity_type, n in st.entities.items():
                self.entities.labels(entity_type).inc(n)
            if st.unknown_fields:
                self.unknown_fields.labels(et).inc(st.unknown_fields)
            for rule, n in st.drift.items():
                self.drift.labels(et, rule).inc(n)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(max(0, lag))

    def produce_failed(self, topic: str) -> None:
        self.produce_errors.labels(topic).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
        return generate_latest(self.registry)
