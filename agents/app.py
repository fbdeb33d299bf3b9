"""The Faust app: thin wiring between Kafka and ``pipeline.processing.Processor``.

* ``classify`` agent: the three input topics, raw bytes, ``stream.take_events`` batches ->
  :class:`~pipeline.records.SourceRecord` -> ``processor.process_batch`` (in a single-thread
  executor, off the event loop) -> every ``OutputMessage`` produced and awaited before the
  batch is acknowledged. With detector child processes the batch is processed in three steps
  (``classify_stage``, ``detect_stage`` in a thread of its own, ``route_stage``) so that batch
  N+1's detection overlaps batch N's routing (``Settings.detect_in_parallel``).
* ``anonymise`` agent: ``privacy.anonymise.v1`` -> ``processor.anonymise_batch`` ->
  ``privacy.anonymised.v1``.
* ``deleted-accounts`` GlobalTable: account id -> deletion info, written idempotently (set
  once) from results with outcome ``deletion``; its keys go to ``process_batch``.
* ``account-consents`` GlobalTable: account id -> consent flags (``pipeline.consent``), set
  (never incremented: idempotent) from results that changed them; removed on deletion.
  GlobalTables: every worker holds every account, so a record keyed by message id is
  checked against any account (no co-partitioning needed; PITFALLS).
* Key state (``agents.keys``): every worker reads the whole compacted key topic into a
  ``KeyRing`` whose data keys go to ``process_batch``; new keys are delivered before the
  content they seal (``BatchHandler.first_topics``).
* Web views: ``/metrics`` (Prometheus, counters kept in this process), ``/healthz``, ``/readyz``,
  ``/dashboard`` and ``/dashboard/data`` (``agents.dashboard``).

Errors never escape a batch: ``take_events`` acknowledges the batch as a whole when the
block exits (PITFALLS), so failures are caught per record and dead-lettered. A batch whose
records are not safely out (an output and its dead letter both failed, or the worker stops
before it finished) is withheld from the commit and the worker stops so it is redelivered
(at-least-once; see :func:`run_batch`). Agent concurrency is 1 (PITFALLS: faust-streaming #606).

``faust -A agents.app worker`` uses the module-level ``app``, built on first access from
the environment's settings (PEP 562), so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import faust

from agents.produce import BatchSender
from agents.topics import ensure_topics, faust_client_options, topic_names
from pipeline.errors import PipelineError
from pipeline.metrics import CONTENT_TYPE_LATEST, PipelineMetrics
from pipeline.records import OutputMessage, ProcessResult, RecordStats, SourceRecord
from pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)

__all__ = ["BatchHandler", "BatchOutcome", "PreparedBatch", "PrivacyApp", "create_app", "hold", "release",
           "run_batch", "run_pipelined", "source_record", "withhold"]

DELETED_ACCOUNTS_TABLE = "deleted-accounts"
CONSENTS_TABLE = "account-consents"


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
    """A dead-letter result built here when processing or producing failed for ``record``
    (the same record shape as the processor's, ``pipeline.deadletter``).

    ``message`` must not quote record content (it is built from exception types only).
    """
    from pipeline.codec import encode
    from pipeline.deadletter import build_deadletter

    doc = build_deadletter(record, kind, message, max_bytes=max_bytes)
    headers = (("event-id", ("sha256:" + doc["raw_sha256"][:32]).encode()),
               ("deadletter-reason", kind.encode()),
               ("privacy-policy", policy_version.encode()), ("envelope-version", b"1"))
    stats = RecordStats(deadletter_reason=kind, routes=[deadletter_topic])
    return ProcessResult(
        source=record,
        outputs=[OutputMessage(topic=deadletter_topic, key=record.key, value=encode(doc), headers=headers)],
        outcome="deadletter", stats=stats,
    )


# --------------------------------------------------------------------------------------------
# Batch handling
# --------------------------------------------------------------------------------------------


class BatchHandler:
    """Process one batch of records and produce the results; never raises.

    ``process`` is ``processor.process_batch`` or ``processor.anonymise_batch``; ``send``
    schedules one message and returns an awaitable of its delivery; ``send_many`` (optional)
    schedules many at once and returns one awaitable per message, in order
    (:meth:`agents.produce.BatchSender.send_many`: one record batch per topic partition);
    ``deleted`` returns the current deleted-account ids; ``on_deletion`` records one deletion.
    """

    def __init__(
        self,
        *,
        name: str,
        process: Callable[..., list[ProcessResult]],
        send: Callable[[OutputMessage], Any],
        executor: ThreadPoolExecutor,
        send_many: Callable[[Sequence[OutputMessage]], Any] | None = None,
        metrics: PipelineMetrics,
        deadletter_topic: str,
        max_request_size: int,
        policy_version: str = "",
        deleted: Callable[[], frozenset[str]] | None = None,
        on_deletion: Callable[[ProcessResult], None] | None = None,
        stage: str = "classify",
        state: Callable[[], dict[str, Any]] | None = None,
        on_results: Callable[[Sequence[ProcessResult]], None] | None = None,
        first_topics: frozenset[str] = frozenset(),
        stages: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]] | None = None,
        detect_executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.name = name
        self.stage = stage
        self.process = process
        self.send = send
        self.send_many = send_many
        self.executor = executor
        self.metrics = metrics
        self.deadletter_topic = deadletter_topic
        self.max_request_size = max_request_size
        self.policy_version = policy_version
        self.deleted = deleted
        self.on_deletion = on_deletion
        #: issue 7: more ``process`` keyword arguments per batch (consents, data keys), a hook
        #: for delivered results, topics delivered (awaited) before any other output
        self.state = state
        self.on_results = on_results
        self.first_topics = first_topics
        #: ``(classify, detect, route)``: ``process`` in three steps (``Processor.classify_stage``,
        #: ``detect_stage``, ``route_stage``); the detect step runs in ``detect_executor`` so a
        #: batch's detection overlaps the routing of the previous one (:meth:`prepare`).
        self.stages = stages if detect_executor is not None else None
        self.detect_executor = detect_executor

    def _dead(self, record: SourceRecord, kind: str, exc: BaseException) -> ProcessResult:
        return internal_deadletter(
            record, self.deadletter_topic, kind, f"{self.name}: {type(exc).__name__}",
            max_bytes=self.max_request_size, policy_version=self.policy_version,
        )

    def _batch_kwargs(self) -> dict[str, Any]:
        """The batch state ``process`` (or the route step) reads, taken now."""
        kwargs = {}
        if self.deleted is not None:
            kwargs["deleted_accounts"] = self.deleted()
        if self.state is not None:
            kwargs.update(self.state())
        return kwargs

    async def _run(self, records: Sequence[SourceRecord]) -> list[ProcessResult]:
        loop = asyncio.get_running_loop()
        kwargs = self._batch_kwargs()
        return await loop.run_in_executor(self.executor, partial(self.process, list(records), **kwargs))

    async def _classify_staged(self, records: Sequence[SourceRecord], ready: asyncio.Future | None,
                               after: Any) -> list[ProcessResult]:
        """:meth:`classify` in the three ``stages``: classify (executor), detect
        (``detect_executor``, started at once), then, once ``after`` is done (the previous
        batch routed and its state recorded) and ``ready`` set (the caller may classify the
        next batch while this one is in the detector), route with the batch state taken then.
        A failing step gives way to :meth:`classify` (the batch again, then record by record)."""
        loop = asyncio.get_running_loop()
        classify, detect, route = self.stages  # type: ignore[misc]
        staged = detecting = None
        try:
            staged = await loop.run_in_executor(self.executor, classify, list(records))
            detecting = loop.run_in_executor(self.detect_executor, detect, staged)
        except Exception:
            log.exception("%s: classifying a batch of %d records failed", self.name, len(records))
        if after is not None:
            await after
        if ready is not None and not ready.done():
            ready.set_result(None)
        if detecting is not None:
            try:
                await detecting
                kwargs = self._batch_kwargs()
                results = await loop.run_in_executor(self.executor, partial(route, staged, **kwargs))
                if len(results) == len(records):
                    return results
                log.error("%s: %d results for %d records; retrying", self.name, len(results), len(records))
            except Exception:
                log.exception("%s: batch of %d records failed; retrying", self.name, len(records))
        return await self.classify(records)

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
        """Send every output, then await every delivery.

        A record with an output that could not be delivered is dead-lettered once
        (``produce_failed``). Returns how many records are not safely out: an output and its
        dead letter both failed. Their batch must not be acknowledged.
        """
        failed: dict[int, tuple[str, BaseException]] = {}
        first = self.first_topics
        if first:  # data keys are delivered before the content they seal (issue 7)
            await self._deliver(results, failed, lambda topic: topic in first)
        # a record whose key is not out is skipped: its sealed content must not go either
        await self._deliver(results, failed, lambda topic: topic not in first)
        undelivered = 0
        for i, (topic, exc) in failed.items():
            if not await self._deadletter_after_failure(results[i], topic, exc):
                undelivered += 1
        return undelivered

    async def _deliver(self, results: Sequence[ProcessResult], failed: dict,
                       wanted: Callable[[str], bool]) -> None:
        """Send the outputs whose topic is ``wanted`` of every record not yet in ``failed``,
        then await every delivery; failures are recorded in ``failed`` (record index ->
        (topic, error))."""
        pending: list[tuple[int, OutputMessage, Any]] = []
        if self.send_many is not None:
            todo = [(i, out) for i, res in enumerate(results) if i not in failed
                    for out in res.outputs if wanted(out.topic)]
            try:
                futures = await self.send_many([out for _, out in todo]) if todo else []
            except Exception as exc:  # nothing queued is awaited: every message fails
                for i, out in todo:
                    self._failed(failed, i, results[i], out, exc)
                return
            pending = [(i, out, fut) for (i, out), fut in zip(todo, futures)]
        else:
            for i, res in enumerate(results):
                if i in failed:
                    continue
                for out in res.outputs:
                    if not wanted(out.topic):
                        continue
                    try:
                        pending.append((i, out, await self.send(out)))
                    except Exception as exc:
                        self._failed(failed, i, res, out, exc)
        for i, out, fut in pending:
            try:
                await fut
            except Exception as exc:
                self._failed(failed, i, results[i], out, exc)

    def _failed(self, failed: dict, i: int, res: ProcessResult, out: OutputMessage,
                exc: BaseException) -> None:
        src = res.source
        self.metrics.produce_failed(out.topic)
        log.error("%s: producing to %s for %s[%s]@%s failed: %s", self.name, out.topic, src.topic,
                  src.partition, src.offset, type(exc).__name__)
        failed.setdefault(i, (out.topic, exc))

    async def _deadletter_after_failure(self, res: ProcessResult, topic: str, exc: BaseException) -> bool:
        src = res.source
        if topic == self.deadletter_topic:
            return False
        dead = self._dead(src, "produce_failed", exc)
        try:
            await (await self.send(dead.outputs[0]))
            return True
        except Exception as exc2:
            log.error("%s: dead-lettering %s[%s]@%s failed too: %s", self.name, src.topic,
                      src.partition, src.offset, type(exc2).__name__)
            return False

    async def handle(self, messages: Sequence[Any]) -> BatchOutcome:
        """One batch of consumer messages: build records, process, produce, count. Never raises.

        ``outcome.ok`` is false when some record is not safely out (its outputs and its dead
        letter failed, or an unexpected error): the caller must not acknowledge the batch.
        """
        return await self.deliver(await self.prepare(messages))

    async def prepare(self, messages: Sequence[Any], *, ready: asyncio.Future | None = None,
                      after: Any = None) -> PreparedBatch:
        """The first half of :meth:`handle`: build records, process them (in the executor) and
        record the batch's state changes (data keys, consents, deletions), so the next batch
        can be processed while this one is delivered. Never raises.

        With ``stages``: ``after`` (awaitable, never raising) is the previous batch's
        preparation; this batch is routed only once it is done, and ``ready`` (a future) is
        set once this batch is classified and in the detector (:meth:`_classify_staged`)."""
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
            if not records:
                results = []
            elif self.stages is not None:
                results = await self._classify_staged(records, ready, after)
            else:
                results = await self.classify(records)
            seconds = time.perf_counter() - started
            results.extend(dead)
        except Exception:
            log.exception("%s: unexpected error in a batch of %d messages", self.name, len(messages))
            return PreparedBatch([], 0.0, failed=len(messages))
        if self.on_results is not None:
            try:
                self.on_results(results)
            except Exception as exc:
                log.error("%s: recording the state of a batch failed: %s", self.name, type(exc).__name__)
        if self.on_deletion is not None:
            for res in results:
                if res.outcome == "deletion" and res.account_id:
                    try:
                        self.on_deletion(res)
                    except Exception as exc:
                        log.error("%s: recording the deletion of an account failed: %s",
                                  self.name, type(exc).__name__)
        return PreparedBatch(results, seconds)

    async def deliver(self, batch: PreparedBatch) -> BatchOutcome:
        """The second half of :meth:`handle`: produce every output of a prepared batch, await
        the deliveries, count. Never raises."""
        if batch.failed:
            return BatchOutcome([], batch.failed)
        results = batch.results
        try:
            undelivered = await self.produce(results)
        except Exception:
            log.exception("%s: unexpected error delivering a batch of %d results", self.name, len(results))
            return BatchOutcome([], max(1, len(results)))
        try:
            self.metrics.observe(results, batch.seconds, stage=self.stage)
        except Exception:
            log.exception("%s: counting a batch failed", self.name)
        return BatchOutcome(results, undelivered)


@dataclass
class PreparedBatch:
    """What :meth:`BatchHandler.prepare` made: results to deliver, seconds spent processing;
    ``failed`` records when the batch could not be processed at all."""

    results: list[ProcessResult]
    seconds: float
    failed: int = 0


@dataclass
class BatchOutcome:
    """What :meth:`BatchHandler.handle` did: the results and how many records are not out."""

    results: list[ProcessResult]
    undelivered: int = 0

    @property
    def ok(self) -> bool:
        return self.undelivered == 0


async def run_batch(handler: BatchHandler, events: Sequence[Any], *, grace_s: float = 60.0) -> BatchOutcome | None:
    """Handle one ``take_events`` batch so that it is acknowledged only when safely out.

    A cancellation (worker stopping) lets the batch finish for up to ``grace_s`` seconds, so
    its outputs are delivered before ``take_events`` acknowledges it. A batch that did not
    finish, or whose outputs could not be delivered, is withheld: its messages are marked so
    that Faust never records their acks, the committed offset stays before them and they are
    delivered again after a restart (at-least-once). Returns ``None`` when unfinished.
    """
    task = asyncio.ensure_future(handler.handle([ev.message for ev in events]))
    outcome: BatchOutcome | None = None
    try:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=grace_s)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
            raise
    finally:
        if task.done() and not task.cancelled() and task.exception() is None:
            outcome = task.result()
        if outcome is None or not outcome.ok:
            withhold(events)
    return outcome


async def run_pipelined(handler: BatchHandler, batches, *, grace_s: float = 60.0,
                        on_failure: Callable[[], Any] | None = None) -> None:
    """Handle the ``take_events`` batches of ``batches`` so that batch N+1 is processed while
    batch N's outputs are being delivered; every batch is still acknowledged only when safely out.

    Each batch is *held* (an extra reference on its messages, :func:`hold`): the ack that
    ``take_events`` gives when the loop body returns is then not the last one, and the batch's
    delivery task gives the last one once every output is acknowledged by the broker
    (:func:`release`), or withholds the batch (:func:`withhold`). Deliveries run one at a time
    in batch order (a batch's outputs are sent after the previous batch's), and a batch after
    one that failed is withheld too, so no commit passes an undelivered record. A failure calls
    ``on_failure`` (the worker stops and the withheld batches are consumed again after a
    restart). Stopping (cancellation) lets the batch being processed and the delivery in
    flight finish for up to ``grace_s`` seconds, as :func:`run_batch` does.

    With a handler in ``stages`` (:meth:`BatchHandler.prepare`), the next batch is taken once
    this one is classified and in the detector and the one before it routed: batch N+1 is
    classified and detected while batch N is routed, and each batch is routed after the
    previous one's state (keys, consents, deletions) was recorded.
    """
    loop = asyncio.get_running_loop()
    delivering: asyncio.Task | None = None
    failed = False

    staged = getattr(handler, "stages", None) is not None
    routed: asyncio.Future | None = None  # the previous batch's preparation (state recorded)

    async def one(events: Sequence[Any], previous: asyncio.Task | None, prepared: asyncio.Future,
                  after: asyncio.Future | None, done_preparing: asyncio.Future) -> bool:
        ok = False
        try:
            try:
                if staged:
                    batch = await handler.prepare([ev.message for ev in events], ready=prepared, after=after)
                else:
                    batch = await handler.prepare([ev.message for ev in events])
            finally:
                if not prepared.done():
                    prepared.set_result(None)
                if not done_preparing.done():
                    done_preparing.set_result(None)
            if previous is not None and not await previous:
                return False  # an earlier batch is not out: this one must not be committed either
            outcome = await handler.deliver(batch)
            ok = outcome.ok
            return ok
        finally:
            if ok:
                release(events)
            else:
                withhold(events)

    def done(task: asyncio.Task) -> None:
        nonlocal failed
        good = not task.cancelled() and task.exception() is None and task.result()
        if not good and not failed:
            failed = True
            log.error("%s: a batch could not be delivered; stopping so it is redelivered", handler.name)
            if on_failure is not None:
                loop.create_task(on_failure())

    try:
        async for events in batches:
            if failed:
                withhold(events)
                return
            hold(events)
            prepared = loop.create_future()
            done_preparing = loop.create_future()
            task = asyncio.ensure_future(one(events, delivering, prepared, routed, done_preparing))
            routed = done_preparing
            task.add_done_callback(done)
            delivering = task
            # processed and its state recorded (with stages: classified, in the detector, and the
            # batch before it routed): take the next batch
            await asyncio.shield(prepared)
    finally:
        if delivering is not None and not delivering.done():
            # stopping or the stream ended: let the batches in flight finish
            await _drain(delivering, grace_s)


async def _drain(task: asyncio.Task, grace_s: float) -> None:
    """Wait up to ``grace_s`` seconds for ``task``; a cancellation meanwhile does not cut the
    wait short but is raised after it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    cancelled = False
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=remaining)
        except TimeoutError:
            break
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
        except Exception:
            break  # the task's own failure is handled by its done callback
    if cancelled:
        raise asyncio.CancelledError


def hold(events: Sequence[Any]) -> None:
    """Take a reference on these events' messages (Faust's ``Message.incref``): the ack that
    ``take_events`` gives when its loop body returns no longer marks them safe to commit."""
    for ev in events:
        ev.message.incref()


def release(events: Sequence[Any]) -> None:
    """Give back the reference taken by :func:`hold`: the last ack marks the offsets safe to
    commit (Faust's ``Event.ack``)."""
    for ev in events:
        ev.ack()


def withhold(events: Sequence[Any]) -> None:
    """Keep these events' offsets from being committed (``take_events`` acks them on exit).

    Faust's ``Message.ack`` does nothing for a message already marked acked, so the consumer
    never records the offset as safe to commit.
    """
    for ev in events:
        ev.message.acked = True


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


class PrivacyApp(faust.App):
    """A Faust app that creates its topics (with the policy's configs) before it subscribes,
    and whose consumer uses the ``fetch_max_wait_ms`` setting (Faust fixes 1,500 ms)."""

    privacy_settings: Settings
    processor: Any
    metrics: PipelineMetrics

    def _new_consumer(self):
        transport = self.transport
        wait_ms = getattr(getattr(self, "privacy_settings", None), "fetch_max_wait_ms", None)
        if wait_ms and getattr(transport, "Consumer", None) is _aiokafka_driver().Consumer:
            transport.Consumer = _fetch_wait_consumer(int(wait_ms))
        return super()._new_consumer()

    async def on_first_start(self) -> None:
        await super().on_first_start()
        # once Faust has set up logging (the worker command configures none before): keys
        # still at their public development defaults, by variable name only
        self.privacy_settings.check_keys(log)
        if self.key_state is not None and getattr(self.processor, "dev_master_key", False):
            log.warning("crypto-shredding uses the built-in development master key: set "
                        "PRIVACY_PIPELINE_MASTER_KEY (and _MASTER_KEY_ID) in production")
        specs = self.processor.topic_specs()
        loop = asyncio.get_running_loop()
        statuses = await loop.run_in_executor(None, partial(ensure_topics, self.privacy_settings, specs))
        created = [s.name for s in statuses if s.action == "created"]
        altered = [s.name for s in statuses if s.action == "altered"]
        #: every topic exists on the cluster (for /readyz: the consumer's own metadata may lag
        #: behind topics another worker created a moment earlier)
        self.topics_ensured = all(s.action != "missing" for s in statuses)
        log.info("topics: %d checked, created %s, altered %s", len(statuses), created or "none",
                 altered or "none")


class CachedPartitioner:
    """aiokafka's ``DefaultPartitioner`` (murmur2 of the key, as the Java client: the same
    partition for the same key) remembering the hashes of recent keys. aiokafka's murmur2 is
    pure Python, about 10 µs per key, and a record's outputs share its account key."""

    def __init__(self, max_keys: int = 65_536) -> None:
        from aiokafka.partitioner import DefaultPartitioner, murmur2

        self._default = DefaultPartitioner()
        self._murmur2 = murmur2
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            h = self._hashes[key] = self._murmur2(key) & 0x7FFFFFFF
        return all_partitions[h % len(all_partitions)]


def _aiokafka_driver():
    from faust.transport.drivers import aiokafka as driver

    return driver


def _fetch_wait_consumer(wait_ms: int):
    """Faust's aiokafka ``Consumer`` whose aiokafka consumer waits at most ``wait_ms`` for a
    fetch (the broker-side ``fetch.max.wait.ms``; Faust passes a fixed 1,500 ms)."""
    driver = _aiokafka_driver()

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = wait_ms  # read by the Fetcher aiokafka builds in start()
            return consumer

    class Consumer(driver.Consumer):
        fetch_max_wait_ms = wait_ms

        def _new_consumer_thread(self):
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    return Consumer


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_app(settings: Settings | None = None, processor: Any = None, *,
               metrics: PipelineMetrics | None = None, **faust_options: Any) -> PrivacyApp:
    """Build the Faust app. Loads the processor (policy + Presidio, ~2 s) unless one is given.

    ``faust_options`` override Faust ``App`` settings (tests lower timeouts this way).
    """
    settings = settings or load_settings()
    if settings.require_keys:
        settings.check_keys(log)  # ConfigError before anything starts (the warning: on_first_start)
    if processor is None:
        from pipeline.detection.pool import build_worker_detector
        from pipeline.policy import load_policy
        from pipeline.processing import Processor

        policy = load_policy(settings.policy)
        detector = build_worker_detector(policy.detection, model_name=settings.spacy_model,
                                         processes=settings.detector_processes)
        processor = Processor.from_settings(settings, detector=detector, policy=policy)
    metrics = metrics or PipelineMetrics.from_processor(processor)
    partitioner = CachedPartitioner()  # the producer's, and the batch sender's (same choice)
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
        # Batches are awaited in an executor; a large batch may take seconds under Presidio.
        broker_commit_livelock_soft_timeout=120.0,
        producer_partitioner=partitioner,
        producer_max_batch_size=min(settings.producer_batch_size, settings.producer_max_request_size),
    )
    options.update(faust_options)
    app = PrivacyApp(settings.app_id, **options)
    app.privacy_settings = settings
    app.processor = processor
    app.metrics = metrics

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-classify")
    # The anonymise agent gets a thread of its own when the detector is shared safely (the
    # pool serialises its calls): its batches run while a classify batch waits for the
    # detector children. An in-process detector is not thread-safe: one thread for both.
    detector = getattr(getattr(processor, "classifier", None), "detector", None)
    anonymise_executor = executor
    stages: dict[str, Any] = {}
    if _thread_safe(detector):
        anonymise_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-anonymise")
        from pipeline.processing import Processor

        if settings.detect_in_parallel and isinstance(processor, Processor):
            # a batch's detection (in the detector processes) overlaps the previous one's
            # routing; only for the Processor itself: a wrapper's own process_batch stays in use
            stages = {"stages": (processor.classify_stage, processor.detect_stage, processor.route_stage),
                      "detect_executor": ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-detect")}
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
    consents = app.GlobalTable(
        CONSENTS_TABLE, default=None, key_type=str, value_type=bytes, use_partitioner=True,
        partitions=settings.partitions, help="Consent flags: account id -> flags (pipeline.consent)",
    )
    app.consents = consents
    # Key state (issue 7): only with a real Processor (test doubles have no key ring).
    key_state = None
    if getattr(processor, "keyring", None) is not None:
        from agents.keys import KeyState
        from pipeline.shredding import KeyRing

        key_state = KeyState(settings, names.keys, KeyRing(processor.keyring.masters, processor.keyring.current))
    app.key_state = key_state

    started_producer: list = []

    async def send(out: OutputMessage):
        if started_producer:
            producer = started_producer[0]
        else:
            producer = await app.maybe_start_producer()
            started_producer.append(producer)
        return await producer.send(out.topic, out.key, out.value, None, None, list(out.headers) or None)

    batch_senders: list = []

    async def send_many(outs: Sequence[OutputMessage]) -> list:
        """One record batch per topic partition (agents/produce.py); message by message
        when the transport has no batch API."""
        if not batch_senders:
            producer = started_producer[0] if started_producer else await app.maybe_start_producer()
            batch_senders.append(BatchSender.for_producer(producer, partitioner))
        sender = batch_senders[0]
        if sender is None:
            return [await send(out) for out in outs]
        return await sender.send_many(outs)

    def deleted_ids() -> frozenset[str]:
        return frozenset(k.decode() if isinstance(k, bytes) else str(k) for k in deleted)

    def on_deletion(res: ProcessResult) -> None:
        key = res.account_id
        if key not in deleted:  # set once: idempotent under redelivery (BROKER.md)
            deleted[key] = json.dumps({
                "event_id": res.event_id, "deleted_at": _utc_now(),
                "source": {"topic": res.source.topic, "partition": res.source.partition,
                           "offset": res.source.offset},
            }).encode()
        if key in consents:  # consent flags are account data: gone with the account
            del consents[key]

    def batch_state() -> dict[str, Any]:
        from pipeline.consent import ConsentView

        return {"consents": ConsentView(dict(consents.items())), "data_keys": key_state.ring.data_keys}

    def on_results(results: Sequence[ProcessResult]) -> None:
        from pipeline.consent import encode_state

        for res in results:
            key_state.apply(res.outputs)
            if res.consents is not None and res.account_id and res.outcome != "deletion":
                # set, never merged here: the processor merged; idempotent under redelivery
                consents[res.account_id] = encode_state(res.consents, event_id=res.event_id,
                                                        updated_at=_utc_now())

    common = {
        # exactly-once sends go through faust's transactional producers, message by message
        "send": send, "send_many": send_many if settings.producer_batch_api
        and settings.processing_guarantee == "at_least_once" else None,
        "executor": executor, "metrics": metrics, "deadletter_topic": deadletter_topic,
        "max_request_size": settings.producer_max_request_size, "policy_version": policy_version,
    }
    issue7 = {} if key_state is None else {
        "state": batch_state, "on_results": on_results, "first_topics": frozenset([names.keys])}
    classify_handler = BatchHandler(name="classify", process=processor.process_batch,
                                    deleted=deleted_ids, on_deletion=on_deletion, **issue7, **stages,
                                    **common)
    anonymise_handler = BatchHandler(name="anonymise", process=processor.anonymise_batch,
                                     stage="anonymise", **{**common, "executor": anonymise_executor})
    app.handlers = {"classify": classify_handler, "anonymise": anonymise_handler}

    batch_size, within = settings.batch_size, settings.batch_timeout_s

    async def _loop(handler: BatchHandler, stream) -> None:
        async def stop() -> None:
            # Records that are not safely out were withheld (not committed); restart so they
            # are consumed again rather than skipped by the next batches' commits.
            await app.crash(PipelineError(
                f"{handler.name}: a batch could not be delivered; stopping so it is redelivered"))

        await run_pipelined(handler, stream.take_events(batch_size, within=within), on_failure=stop)

    @app.agent(inputs, name="privacy-classify", concurrency=1)
    async def classify(stream):
        if key_state is not None:  # never seal with a partial key state (a second key per account)
            await key_state.ready.wait()
        await _loop(classify_handler, stream)

    @app.agent(anonymise_topic, name="privacy-anonymise", concurrency=1)
    async def anonymise(stream):
        await _loop(anonymise_handler, stream)

    if key_state is not None:
        @app.task
        async def key_topic_reader() -> None:
            """Every worker reads the whole key topic (agents.keys); a failure stops the worker
            (the classify agent would otherwise wait for the key state for ever)."""
            try:
                await key_state.run(send, deleted_ids)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("key state: reading the key topic failed: %s", type(exc).__name__)
                await app.crash(exc)

    lag_topics = frozenset([*input_names, names.anonymise])

    async def refresh_lag() -> None:
        await _update_lag(app, metrics, lag_topics)

    @app.page("/metrics")
    async def metrics_view(web, request):
        await refresh_lag()
        return web.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web, request):
        checks = _readiness(app, lag_topics)
        ready = all(checks.values())
        return web.json({"ready": ready, "checks": checks, "policy": policy_version},
                        status=200 if ready else 503)

    from agents.dashboard import register_dashboard

    register_dashboard(app, metrics, refresh_lag=refresh_lag,
                       ready=lambda: all(_readiness(app, lag_topics).values()))

    app.executor = executor
    app.anonymise_executor = anonymise_executor
    return app


def _thread_safe(detector: Any) -> bool:
    """Whether two threads may call ``detector`` at once (the process pool locks its calls)."""
    from pipeline.detection.pool import PooledDetector

    return isinstance(detector, PooledDetector)


def _readiness(app: faust.App, topics: frozenset[str]) -> dict[str, bool]:
    """``/readyz`` checks: the worker started, every consumed topic exists (it is in the
    consumer's cluster metadata, so ``on_first_start`` created it), partitions are assigned
    (the first rebalance finished; the global table's changelog partitions are assigned to
    every worker, so this holds for a worker without input partitions too), no rebalance is
    in progress, table recovery completed and, with crypto-shredding, the key topic was read."""
    checks = {"started": bool(app.started), "topics": False, "assigned": False,
              "not_rebalancing": not app.rebalancing, "recovered": False}
    try:
        consumer = app.consumer
        checks["topics"] = bool(getattr(app, "topics_ensured", False)) or all(
            consumer.topic_partitions(t) for t in topics)
        checks["assigned"] = bool(consumer.assignment())
    except Exception:
        pass
    try:
        checks["recovered"] = app.tables.recovery.completed.is_set()
    except Exception:
        pass
    key_state = getattr(app, "key_state", None)
    if key_state is not None:  # the classify agent waits for the key topic (issue 7)
        try:
            checks["keys"] = bool(key_state.ready.is_set())
        except Exception:
            checks["keys"] = False
    return checks


def consumer_lag(highwater: int | None, committed: int | None, position: int | None) -> int | None:
    """Records of a partition the consumer group has not processed: the log end offset (the
    highwater of the consumer's last fetch response) minus the committed offset (the next
    offset to process, Kafka's convention), or minus the fetch position before the first
    commit. ``None`` when the highwater is unknown (nothing fetched yet)."""
    if highwater is None or highwater < 0:
        return None
    base = committed if committed is not None and committed >= 0 else position
    if base is None or base < 0:
        return None
    return max(0, highwater - base)


async def _update_lag(app: faust.App, metrics: PipelineMetrics, topics: frozenset[str]) -> None:
    """Set ``privacy_consumer_lag`` for the assigned partitions of ``topics`` (at scrape time).

    The highwater comes from the consumer's own fetch responses (``consumer.highwater``, no
    extra request); the committed offset from Faust's consumer (what this worker committed).
    Partitions no longer assigned are removed. Not ListOffsets: the embedded Tansu broker
    answers it with the last batch's base offset + 1 (README: Metrics and dashboard), while
    its fetch high watermark is right; on Kafka both agree with ``kafka-consumer-groups``.
    """
    try:
        consumer = app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            high = consumer.highwater(tp)
            done = committed.get(tp) if hasattr(committed, "get") else None
            pos = None
            if done is None:
                try:
                    pos = await asyncio.wait_for(consumer.position(tp), timeout=2.0)
                except Exception:
                    pos = None
            lag = consumer_lag(high, done, pos)
            if lag is not None:
                lags[(tp.topic, tp.partition)] = lag
        metrics.set_lags(lags)
    except Exception:  # lag is best effort: never fail a scrape
        log.debug("updating the consumer lag failed", exc_info=True)


def __getattr__(name: str):
    """Module-level ``app`` for ``faust -A agents.app worker``, built on first access."""
    if name == "app":
        app = create_app(load_settings())
        globals()["app"] = app
        return app
    raise AttributeError(name)
