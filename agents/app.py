"""The Faust app: thin wiring between Kafka and ``pipeline.processing.Processor``.

* ``classify`` agent: the three input topics, raw bytes, ``stream.take_events`` batches ->
  :class:`~pipeline.records.SourceRecord` -> ``processor.process_batch`` (in a single-thread
  executor, off the event loop) -> every ``OutputMessage`` produced and awaited before the
  batch is acknowledged.
* ``anonymise`` agent: ``privacy.anonymise.v1`` -> ``processor.anonymise_batch`` ->
  ``privacy.anonymised.v1``.
* ``deleted-accounts`` GlobalTable: account id -> deletion info, written idempotently (set
  once) from results with outcome ``deletion``; its keys go to ``process_batch``.
* Web views: ``/metrics`` (Prometheus, counters kept in this process), ``/healthz``, ``/readyz``.

Errors never escape a batch: ``take_events`` acknowledges the batch as a whole when the
block exits (PITFALLS), so failures are caught per record and dead-lettered. Agent
concurrency is 1 (PITFALLS: faust-streaming #606).

``faust -A agents.app worker`` uses the module-level ``app``, built on first access from
the environment's settings (PEP 562), so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from typing import Any

import faust

from agents.topics import ensure_topics, faust_client_options, topic_names
from pipeline.metrics import CONTENT_TYPE_LATEST, PipelineMetrics
from pipeline.records import OutputMessage, ProcessResult, RecordStats, SourceRecord
from pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)

__all__ = ["BatchHandler", "PrivacyApp", "create_app", "source_record"]

DELETED_ACCOUNTS_TABLE = "deleted-accounts"


# --------------------------------------------------------------------------------------------
# Pure helpers (tested without a broker)
# --------------------------------------------------------------------------------------------


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    if not raw:
        return ()
    items = raw.items() if isinstance(raw, Mapping) else raw
    out = []
    for k, v in items:
        k = k.decode("utf-8", "replace") if isinstance(k, bytes | bytearray) else str(k)
        out.append((k, bytes(v) if v is not None else b""))
    return tuple(out)


def source_record(message: Any) -> SourceRecord:
    """A :class:`SourceRecord` from a Faust/aiokafka consumer message (raw bytes, no decoding)."""
    ts = getattr(message, "timestamp", None)
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=bytes(message.key) if message.key is not None else None,
        value=bytes(message.value) if message.value is not None else None,
        timestamp_ms=int(ts * 1000) if ts is not None else None,
        headers=_headers(getattr(message, "headers", None)),
    )


def internal_deadletter(record: SourceRecord, deadletter_topic: str, kind: str, message: str,
                        *, max_bytes: int, policy_version: str = "") -> ProcessResult:
    """A dead-letter result built here when processing or producing failed for ``record``.

    ``message`` must not quote record content (it is built from exception types only).
    """
    raw = record.value or b""
    doc: dict[str, Any] = {
        "envelope_version": 1,
        "error": {"kind": kind, "message": message},
        "source": {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key_base64": base64.b64encode(record.key).decode() if record.key is not None else None,
            "timestamp": record.timestamp_ms,
        },
        "raw_base64": base64.b64encode(raw).decode(),
    }
    value = json.dumps(doc, separators=(",", ":")).encode()
    if len(value) > max_bytes - 1024:
        doc.pop("raw_base64")
        doc["raw_size"] = len(raw)
        doc["raw_sha256"] = hashlib.sha256(raw).hexdigest()
        value = json.dumps(doc, separators=(",", ":")).encode()
    event_id = "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
    headers = (("event-id", event_id.encode()), ("privacy-categories", b""),
               ("privacy-entities", b""), ("privacy-policy", policy_version.encode()),
               ("envelope-version", b"1"))
    stats = RecordStats(deadletter_reason=kind, routes=[deadletter_topic])
    return ProcessResult(
        source=record,
        outputs=[OutputMessage(topic=deadletter_topic, key=record.key, value=value, headers=headers)],
        outcome="deadletter", event_id=event_id, stats=stats,
    )


# --------------------------------------------------------------------------------------------
# Batch handling
# --------------------------------------------------------------------------------------------


class BatchHandler:
    """Process one batch of records and produce the results; never raises.

    ``process`` is ``processor.process_batch`` or ``processor.anonymise_batch``; ``send``
    schedules one message and returns an awaitable of its delivery; ``deleted`` returns the
    current deleted-account ids; ``on_deletion`` records one deletion.
    """

    def __init__(
        self,
        *,
        name: str,
        process: Callable[..., list[ProcessResult]],
        send: Callable[[OutputMessage], Any],
        executor: ThreadPoolExecutor,
        metrics: PipelineMetrics,
        deadletter_topic: str,
        max_request_size: int,
        policy_version: str = "",
        deleted: Callable[[], frozenset[str]] | None = None,
        on_deletion: Callable[[ProcessResult], None] | None = None,
    ) -> None:
        self.name = name
        self.process = process
        self.send = send
        self.executor = executor
        self.metrics = metrics
        self.deadletter_topic = deadletter_topic
        self.max_request_size = max_request_size
        self.policy_version = policy_version
        self.deleted = deleted
        self.on_deletion = on_deletion

    def _dead(self, record: SourceRecord, kind: str, exc: BaseException) -> ProcessResult:
        return internal_deadletter(
            record, self.deadletter_topic, kind, f"{self.name}: {type(exc).__name__}",
            max_bytes=self.max_request_size, policy_version=self.policy_version,
        )

    async def _run(self, records: Sequence[SourceRecord]) -> list[ProcessResult]:
        loop = asyncio.get_running_loop()
        kwargs = {}
        if self.deleted is not None:
            kwargs["deleted_accounts"] = self.deleted()
        return await loop.run_in_executor(self.executor, partial(self.process, list(records), **kwargs))

    async def classify(self, records: Sequence[SourceRecord]) -> list[ProcessResult]:
        """Results for ``records``; a failing batch is retried record by record."""
        try:
            results = await self._run(records)
            if len(results) == len(records):
                return results
            log.error("%s: %d results for %d records; retrying one by one",
                      self.name, len(results), len(records))
        except Exception:
            log.exception("%s: batch of %d records failed; retrying one by one", self.name, len(records))
        results = []
        for rec in records:
            try:
                results.extend(await self._run([rec]))
            except Exception as exc:
                log.error("%s: record %s[%s]@%s failed: %s", self.name, rec.topic, rec.partition,
                          rec.offset, type(exc).__name__)
                results.append(self._dead(rec, "processing_error", exc))
        return results

    async def produce(self, results: Sequence[ProcessResult]) -> int:
        """Send every output, then await every delivery. Returns the number of failures."""
        pending: list[tuple[ProcessResult, OutputMessage, Any]] = []
        failures = 0
        for res in results:
            for out in res.outputs:
                try:
                    pending.append((res, out, await self.send(out)))
                except Exception as exc:
                    failures += 1
                    await self._send_failed(res, out, exc)
        for res, out, fut in pending:
            try:
                await fut
            except Exception as exc:
                failures += 1
                await self._send_failed(res, out, exc)
        return failures

    async def _send_failed(self, res: ProcessResult, out: OutputMessage, exc: BaseException) -> None:
        src = res.source
        self.metrics.produce_failed(out.topic)
        log.error("%s: producing to %s for %s[%s]@%s failed: %s", self.name, out.topic, src.topic,
                  src.partition, src.offset, type(exc).__name__)
        if out.topic == self.deadletter_topic:
            return
        dead = self._dead(src, "produce_failed", exc)
        try:
            await (await self.send(dead.outputs[0]))
        except Exception as exc2:
            log.error("%s: dead-lettering %s[%s]@%s failed too: %s", self.name, src.topic,
                      src.partition, src.offset, type(exc2).__name__)

    async def handle(self, messages: Sequence[Any]) -> list[ProcessResult]:
        """One batch of consumer messages: build records, process, produce, count. Never raises."""
        try:
            started = time.perf_counter()
            records: list[SourceRecord] = []
            dead: list[ProcessResult] = []
            for msg in messages:
                try:
                    records.append(source_record(msg))
                except Exception as exc:
                    log.error("%s: cannot read %s[%s]@%s: %s", self.name, getattr(msg, "topic", "?"),
                              getattr(msg, "partition", "?"), getattr(msg, "offset", "?"),
                              type(exc).__name__)
                    rec = SourceRecord(getattr(msg, "topic", "?"), getattr(msg, "partition", None),
                                       getattr(msg, "offset", None), None, None)
                    dead.append(self._dead(rec, "unreadable_message", exc))
            results = (await self.classify(records)) if records else []
            seconds = time.perf_counter() - started
            results.extend(dead)
            await self.produce(results)
            if self.on_deletion is not None:
                for res in results:
                    if res.outcome == "deletion" and res.account_id:
                        try:
                            self.on_deletion(res)
                        except Exception as exc:
                            log.error("%s: recording the deletion of an account failed: %s",
                                      self.name, type(exc).__name__)
            self.metrics.observe(results, seconds)
            return results
        except Exception:
            log.exception("%s: unexpected error in a batch of %d messages", self.name, len(messages))
            return []


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


class PrivacyApp(faust.App):
    """A Faust app that creates its topics (with the policy's configs) before it subscribes."""

    privacy_settings: Settings
    processor: Any
    metrics: PipelineMetrics

    async def on_first_start(self) -> None:
        await super().on_first_start()
        specs = self.processor.topic_specs()
        loop = asyncio.get_running_loop()
        statuses = await loop.run_in_executor(None, partial(ensure_topics, self.privacy_settings, specs))
        created = [s.name for s in statuses if s.action == "created"]
        altered = [s.name for s in statuses if s.action == "altered"]
        log.info("topics: %d checked, created %s, altered %s", len(statuses), created or "none",
                 altered or "none")


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_app(settings: Settings | None = None, processor: Any = None, *,
               metrics: PipelineMetrics | None = None, **faust_options: Any) -> PrivacyApp:
    """Build the Faust app. Loads the processor (policy + Presidio, ~2 s) unless one is given.

    ``faust_options`` override Faust ``App`` settings (tests lower timeouts this way).
    """
    settings = settings or load_settings()
    if processor is None:
        from pipeline.processing import Processor

        processor = Processor.from_settings(settings)
    metrics = metrics or PipelineMetrics()
    options = dict(
        faust_client_options(settings),
        autodiscover=False,
        store="memory://",
        datadir=str(settings.data_dir),
        web_enabled=True,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_in_thread=False,
        key_serializer="raw",
        value_serializer="raw",
        stream_wait_empty=False,
        # Batches are awaited in an executor; a large batch may take seconds under Presidio.
        broker_commit_livelock_soft_timeout=120.0,
    )
    options.update(faust_options)
    app = PrivacyApp(settings.app_id, **options)
    app.privacy_settings = settings
    app.processor = processor
    app.metrics = metrics

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-classify")
    names = topic_names(settings)
    deadletter_topic = names.deadletter
    policy_version = str(getattr(getattr(processor, "policy", None), "version", ""))

    input_names = list(processor.input_topics)
    inputs = app.topic(*input_names, key_serializer="raw", value_serializer="raw",
                       allow_empty=True)
    anonymise_topic = app.topic(names.anonymise, key_serializer="raw",
                                value_serializer="raw", allow_empty=True)

    deleted = app.GlobalTable(
        DELETED_ACCOUNTS_TABLE, default=None, key_type=str, value_type=bytes, use_partitioner=True,
        partitions=settings.partitions, help="Deleted accounts: account id -> deletion info",
    )
    app.deleted_accounts = deleted

    async def send(out: OutputMessage):
        producer = await app.maybe_start_producer()
        return await producer.send(out.topic, out.key, out.value, None, None, list(out.headers) or None)

    def deleted_ids() -> frozenset[str]:
        return frozenset(k.decode() if isinstance(k, bytes) else str(k) for k in deleted.keys())

    def on_deletion(res: ProcessResult) -> None:
        key = res.account_id
        if key not in deleted:  # set once: idempotent under redelivery (BROKER.md)
            deleted[key] = json.dumps({
                "event_id": res.event_id, "deleted_at": _utc_now(),
                "source": {"topic": res.source.topic, "partition": res.source.partition,
                           "offset": res.source.offset},
            }).encode()

    common = dict(send=send, executor=executor, metrics=metrics, deadletter_topic=deadletter_topic,
                  max_request_size=settings.producer_max_request_size, policy_version=policy_version)
    classify_handler = BatchHandler(name="classify", process=processor.process_batch,
                                    deleted=deleted_ids, on_deletion=on_deletion, **common)
    anonymise_handler = BatchHandler(name="anonymise", process=processor.anonymise_batch, **common)
    app.handlers = {"classify": classify_handler, "anonymise": anonymise_handler}

    batch_size, within = settings.batch_size, settings.batch_timeout_s

    async def _loop(handler: BatchHandler, stream) -> None:
        async for events in stream.take_events(batch_size, within=within):
            try:
                await handler.handle([ev.message for ev in events])
            except Exception:  # handle() never raises; belt and braces for the batch ack
                log.exception("%s: batch failed", handler.name)

    @app.agent(inputs, name="privacy-classify", concurrency=1)
    async def classify(stream):
        await _loop(classify_handler, stream)

    @app.agent(anonymise_topic, name="privacy-anonymise", concurrency=1)
    async def anonymise(stream):
        await _loop(anonymise_handler, stream)

    @app.page("/metrics")
    async def metrics_view(web, request):
        await _update_lag(app, metrics)
        return web.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web, request):
        ready = _is_ready(app)
        return web.json({"ready": ready, "policy": policy_version},
                        status=200 if ready else 503)

    app.executor = executor
    return app


def _is_ready(app: faust.App) -> bool:
    try:
        recovered = app.tables.recovery.completed.is_set()
    except Exception:
        recovered = False
    return bool(recovered and not app.rebalancing and app.started)


async def _update_lag(app: faust.App, metrics: PipelineMetrics) -> None:
    try:
        consumer = app.consumer
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            pos = await consumer.position(tp)
            if high is not None and pos is not None:
                metrics.set_lag(tp.topic, tp.partition, high - pos)
    except Exception:  # lag is best effort: never fail a scrape
        pass


def __getattr__(name: str):
    """Module-level ``app`` for ``faust -A agents.app worker``, built on first access."""
    if name == "app":
        app = create_app(load_settings())
        globals()["app"] = app
        return app
    raise AttributeError(name)
