"""The classify handler in three steps (``BatchHandler(stages=...)``), without a broker: a
batch's detection overlaps the previous batch's routing, batches are routed in order with the
state the batches before them recorded, delivered in order and acknowledged only once out;
a failing step falls back to the whole ``process``."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from agents.app import BatchHandler, run_pipelined
from pipeline.metrics import PipelineMetrics
from pipeline.records import OutputMessage, ProcessResult, RecordStats

DL = "privacy.deadletter.v1"


class _Message:
    def __init__(self, offset: int) -> None:
        self.topic, self.partition, self.offset = "cpaas.messages.v1", 0, offset
        self.key, self.value, self.timestamp, self.headers = b"AC1", b"{}", 1.0, []
        self.refcount, self.acked = 1, False

    def incref(self, n: int = 1) -> None:
        self.refcount += n

    def ack(self) -> bool:
        if not self.acked:
            self.refcount -= 1
            if not self.refcount:
                self.acked = True
                return True
        return False


class _Event:
    def __init__(self, offset: int) -> None:
        self.message = _Message(offset)

    def ack(self) -> bool:
        return self.message.ack()


async def _take(batches):
    for batch in batches:
        try:
            yield batch
        finally:
            for ev in batch:
                ev.ack()


def _ok(rec, tag: str) -> ProcessResult:
    out = OutputMessage("privacy.retention.usage.v1", rec.key, b"%d" % rec.offset, (("by", tag.encode()),))
    return ProcessResult(rec, [out], "classified", "message", f"E{rec.offset}", "AC1",
                         RecordStats(fields=Counter(), routes=[out.topic]))


class _Steps:
    """Fake ``Processor`` steps that log when they run; the state is the batches recorded."""

    def __init__(self, detect_s=0.1, route_s=0.1, fail_detect=frozenset()):
        self.detect_s, self.route_s, self.fail_detect = detect_s, route_s, fail_detect
        self.log: list[tuple[str, int, float, float]] = []
        self.recorded = 0
        self.seen_state: dict[int, int] = {}
        self.lock = threading.Lock()

    def _span(self, name, first, t0):
        with self.lock:
            self.log.append((name, first, t0, time.monotonic()))

    def classify(self, records):
        self._span("classify", records[0].offset, time.monotonic())
        return SimpleNamespace(records=records)

    def detect(self, staged):
        t0 = time.monotonic()
        time.sleep(self.detect_s)
        self._span("detect", staged.records[0].offset, t0)
        if staged.records[0].offset in self.fail_detect:
            raise RuntimeError("child died twice")

    def route(self, staged, *, deleted_accounts, batches_recorded):
        t0 = time.monotonic()
        first = staged.records[0].offset
        self.seen_state[first] = batches_recorded
        time.sleep(self.route_s)
        self._span("route", first, t0)
        return [_ok(r, "staged") for r in staged.records]

    def process(self, records, *, deleted_accounts, batches_recorded):
        self.seen_state[records[0].offset] = batches_recorded
        return [_ok(r, "whole") for r in records]

    def span(self, name, first):
        return next((t0, t1) for n, f, t0, t1 in self.log if n == name and f == first)


def _run(steps: _Steps, n_batches=4, size=3):
    sent = []

    async def send(out):
        fut = asyncio.get_running_loop().create_future()
        sent.append(out)
        fut.set_result(None)
        return fut

    def on_results(results):
        steps.recorded += 1

    executor = ThreadPoolExecutor(max_workers=1)
    detect_executor = ThreadPoolExecutor(max_workers=1)
    handler = BatchHandler(name="classify", process=steps.process, send=send, executor=executor,
                           metrics=PipelineMetrics(), deadletter_topic=DL, max_request_size=1_048_576,
                           deleted=lambda: frozenset(), state=lambda: {"batches_recorded": steps.recorded},
                           on_results=on_results,
                           stages=(steps.classify, steps.detect, steps.route), detect_executor=detect_executor)
    batches = [[_Event(b * size + i) for i in range(size)] for b in range(n_batches)]
    try:
        asyncio.run(run_pipelined(handler, _take(batches)))
    finally:
        executor.shutdown()
        detect_executor.shutdown()
    return batches, sent


def test_detection_overlaps_the_previous_routing_and_order_and_state_hold():
    steps = _Steps()
    batches, sent = _run(steps)
    assert [int(o.value) for o in sent] == list(range(12))  # delivered in order
    assert all(ev.message.acked for b in batches for ev in b)  # all safe to commit
    # each batch routed with the state of every batch before it recorded
    assert steps.seen_state == {0: 0, 3: 1, 6: 2, 9: 3}
    # batch N+1 was in the detector while batch N was routed
    assert steps.span("detect", 3)[0] < steps.span("route", 0)[1]
    routes = [steps.span("route", f) for f in (0, 3, 6, 9)]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(routes))  # routed one after the other


def test_a_failing_detection_falls_back_to_the_whole_process():
    steps = _Steps(detect_s=0.01, route_s=0.01, fail_detect=frozenset({3}))
    batches, sent = _run(steps)
    assert [int(o.value) for o in sent] == list(range(12))
    assert [dict(o.headers)["by"] for o in sent] == [b"staged"] * 3 + [b"whole"] * 3 + [b"staged"] * 6
    assert steps.seen_state == {0: 0, 3: 1, 6: 2, 9: 3}
    assert all(ev.message.acked for b in batches for ev in b)


def _app(detector, **overrides):
    from agents.app import create_app
    from pipeline.policy import load_policy
    from pipeline.processing import Processor
    from pipeline.settings import Settings

    settings = Settings(kafka_broker="127.0.0.1:9", topic_prefix="staged.", **overrides)
    return create_app(settings, Processor(load_policy(None), settings, detector))


def _close(app):
    for h in app.handlers.values():
        if h.detect_executor is not None:
            h.detect_executor.shutdown(wait=False)
    app.executor.shutdown(wait=False)
    app.anonymise_executor.shutdown(wait=False)


def test_the_worker_uses_steps_only_with_a_pool_of_detector_processes():
    from pipeline.detection.pool import PooledDetector

    pool = PooledDetector.__new__(PooledDetector)  # no children: only its type matters here
    app = _app(pool)
    try:
        handler = app.handlers["classify"]
        assert handler.stages is not None and handler.detect_executor is not None
        assert app.handlers["anonymise"].stages is None
        assert app.conf.producer_max_batch_size == 262_144
    finally:
        _close(app)
    for app in (_app(None), _app(pool, detect_in_parallel=False)):
        try:
            assert app.handlers["classify"].stages is None  # in-process detector: not thread-safe
        finally:
            _close(app)
    app = _app(None, producer_batch_size=4_000_000)
    try:
        assert app.conf.producer_max_batch_size == 1_048_576  # capped at the request size
    finally:
        _close(app)
